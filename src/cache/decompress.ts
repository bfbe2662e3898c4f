import { createReadStream } from "node:fs";
import { Duplex, PassThrough, Readable, Transform, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { createBrotliDecompress, createGunzip } from "node:zlib";
import { Decompress as ZstdDecompress } from "fzstd";
import xzDecompress from "xz-decompress";
import { type Hash, HashSink } from "./hash.js";

// A CommonJS module (webpack UMD): its export is a property of the default import.
const { XzReadableStream } = xzDecompress;

/**
 * Compressions whose nars this node can read, each as a stream with bounded memory:
 * none; gzip and br with node:zlib; zstd with fzstd (pure JS; its window is what the frame
 * declares, 8 MiB at Nix's default level); xz with xz-decompress (xz-embedded compiled to
 * WebAssembly, dictionary at most 64 MiB; one decompression at a time per process, the
 * others wait their turn). bzip2 is not read: unbzip2-stream, the streaming decoder on npm,
 * holds a whole block's output in a JS array (a 900 kB block of zeros is 45 MB of it).
 * See docs/architecture.md for why these.
 */
export const DECOMPRESSIBLE = ["none", "gzip", "br", "zstd", "xz"] as const;

export function canDecompress(compression: string | undefined): boolean {
  return (DECOMPRESSIBLE as readonly (string | undefined)[]).includes(compression);
}

/** A decompressor gave more than its limit of bytes (the nar is larger than declared). */
export class PastLimit extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} bytes decompressed`);
    this.name = "PastLimit";
  }
}

/**
 * A stream that takes the compressed bytes and gives the nar; undefined when unknown. The
 * decoder that decodes a whole input chunk at once (zstd: a few kilobytes can hold
 * gigabytes) fail with `PastLimit` as soon as they have given more than `limit` bytes,
 * before buffering any more.
 */
export function narDecompressor(
  compression: string | undefined,
  limit = Number.POSITIVE_INFINITY,
): Duplex | undefined {
  switch (compression) {
    case "none":
      return new PassThrough();
    case "gzip":
      return createGunzip();
    case "br":
      return createBrotliDecompress();
    case "zstd":
      return zstdStream(limit);
    case "xz":
      return xzStream();
    default:
      return undefined;
  }
}

/** Counts what a synchronous decoder gives and stops it (by throwing) past `limit`. */
function outputCounter(limit: number, push: (data: Buffer) => void): (data: Uint8Array) => void {
  let given = 0;
  return (data) => {
    given += data.length;
    if (given > limit) throw new PastLimit(limit);
    push(Buffer.from(data));
  };
}

function zstdStream(limit: number): Transform {
  let decoder: ZstdDecompress | undefined;
  const out: Transform = new Transform({
    transform(chunk: Buffer, _enc, done) {
      decoder ??= new ZstdDecompress(outputCounter(limit, (d) => out.push(d)));
      try {
        decoder.push(chunk);
        done();
      } catch (err) {
        done(asError(err, "zstd"));
      }
    },
    flush(done) {
      try {
        (decoder ?? new ZstdDecompress(() => {})).push(new Uint8Array(0), true);
        done();
      } catch (err) {
        done(asError(err, "zstd"));
      }
    },
  });
  return out;
}

function xzStream(): Duplex {
  const input = new PassThrough();
  const web = Readable.toWeb(input) as unknown as ReadableStream<Uint8Array>;
  const output = Readable.fromWeb(
    new XzReadableStream(web) as unknown as WebReadableStream<Uint8Array>,
  );
  return Duplex.from({ writable: input, readable: output });
}

function asError(err: unknown, compression: string): Error {
  return err instanceof Error ? err : new Error(`${compression}: ${String(err)}`);
}

/** What reading a nar file through its decompressor found. */
export type NarRead =
  | { kind: "read"; hash: Hash; size: number }
  /** More than `limit` bytes came out: reading stopped there (a lying NarSize, a bomb). */
  | { kind: "too_large"; limit: number; read: number }
  | { kind: "unreadable"; message: string }
  | { kind: "unknown_compression" };

/**
 * Decompress the file at `path` and hash the nar inside, reading no more than `limit`
 * bytes of nar (the NarSize the narinfo declares) plus one decompressed chunk.
 */
export async function readNarFile(
  path: string,
  compression: string | undefined,
  limit: number,
): Promise<NarRead> {
  const decompress = narDecompressor(compression, limit);
  if (decompress === undefined) return { kind: "unknown_compression" };
  const nar = new HashSink("sha256");
  let read = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      read += chunk.length;
      if (read > limit) return done(new PastLimit(limit));
      nar.update(chunk);
      done();
    },
  });
  try {
    await pipeline(createReadStream(path), decompress, sink);
  } catch (err) {
    if (err instanceof PastLimit) return { kind: "too_large", limit, read };
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && read === 0) throw err;
    return { kind: "unreadable", message: `${compression}: ${(err as Error).message}` };
  }
  const done = nar.finish();
  return { kind: "read", hash: done.hash, size: done.size };
}
