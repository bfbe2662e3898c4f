import { spawn } from "node:child_process";
import { accessSync, createReadStream, constants as fsConstants } from "node:fs";
import { delimiter, join } from "node:path";
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
 * others wait their turn). bzip2 and lzip (Guix's) have no such decoder on npm
 * (unbzip2-stream holds a whole block's output in a JS array: a 900 kB block of zeros is
 * 45 MB of it), so they are read by the `bzip2` and `lzip` tools when they are installed
 * (EXTERNAL_DECODERS). See docs/architecture.md for why these.
 */
export const DECOMPRESSIBLE = ["none", "gzip", "br", "zstd", "xz"] as const;

/**
 * Compressions read by a command-line decoder, one child process per nar, its address
 * space capped (`ulimit -v`) so that a header declaring a huge dictionary (lzip allows 512
 * MiB) fails the read instead of taking the memory: bzip2 needs under 4 MiB, lzip its
 * dictionary (32 MiB at `lzip -9`).
 */
export const EXTERNAL_DECODERS: Readonly<Record<string, { command: string; args: string[] }>> = {
  bzip2: { command: "bzip2", args: ["-dc"] },
  lzip: { command: "lzip", args: ["-dc"] },
};

/** The address space a command-line decoder may use (KiB, for `ulimit -v`). */
export const EXTERNAL_DECODER_MEMORY_KIB = 160 * 1024;

const found = new Map<string, string | undefined>();

/** The executable `command` on PATH (looked up once per process), or undefined. */
function onPath(command: string): string | undefined {
  if (found.has(command)) return found.get(command);
  let path: string | undefined;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, command), fsConstants.X_OK);
      path = join(dir, command);
      break;
    } catch {
      // not here
    }
  }
  found.set(command, path);
  return path;
}

/** Every compression this process can read: DECOMPRESSIBLE and the installed external ones. */
export function readableCompressions(): string[] {
  return [
    ...DECOMPRESSIBLE,
    ...Object.entries(EXTERNAL_DECODERS)
      .filter(([, d]) => onPath(d.command) !== undefined)
      .map(([name]) => name),
  ];
}

export function canDecompress(compression: string | undefined): boolean {
  if ((DECOMPRESSIBLE as readonly (string | undefined)[]).includes(compression)) return true;
  const external = compression === undefined ? undefined : EXTERNAL_DECODERS[compression];
  return external !== undefined && onPath(external.command) !== undefined;
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
    default: {
      const external = compression === undefined ? undefined : EXTERNAL_DECODERS[compression];
      const path = external === undefined ? undefined : onPath(external.command);
      if (external === undefined || path === undefined) return undefined;
      return externalStream(compression as string, path, external.args);
    }
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

/**
 * A decoder in a child process: the compressed bytes go to its stdin, the nar comes from
 * its stdout. The output ends only once the process exited 0; a failure (corrupt data,
 * the memory cap) is an error carrying what the tool wrote to stderr. Destroying the
 * stream (the reader stopped: past the NarSize, an error) kills the process.
 */
function externalStream(name: string, path: string, args: readonly string[]): Duplex {
  const quoted = [path, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const child = spawn(
    "/bin/sh",
    ["-c", `ulimit -v ${EXTERNAL_DECODER_MEMORY_KIB} && exec ${quoted}`],
    {
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  let settled = false;
  let failure: Error | undefined;
  const closed = new Promise<Error | undefined>((resolve) => {
    const settle = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      failure = err;
      resolve(err);
    };
    child.once("error", (err) => settle(new Error(`${name} decoder: ${err.message}`)));
    child.once("close", (code, signal) => {
      const why = stderr.trim().split("\n").slice(-2).join("; ");
      settle(
        code === 0
          ? undefined
          : new Error(
              why ||
                `${name} decoder ${signal !== null ? `killed by ${signal}` : `exit code ${code}`}`,
            ),
      );
    });
  });
  // stdin fails with EPIPE when the tool stops reading (corrupt input): its exit says why.
  child.stdin.on("error", () => undefined);
  const stream = new Duplex({
    write(chunk: Buffer, _enc, done) {
      if (settled) return done(failure ?? new Error(`${name}: the decoder exited early`));
      child.stdin.write(chunk, (err) => {
        if (err == null) return done();
        void closed.then((e) => done(e ?? err));
      });
    },
    final(done) {
      child.stdin.end(() => done());
    },
    read() {
      child.stdout.resume();
    },
    // Before both sides have ended (the reader stopped, an error): the tool is killed.
    destroy(err, done) {
      if (!settled) child.kill("SIGKILL");
      done(err);
    },
  });
  child.stdout.on("data", (d: Buffer) => {
    if (!stream.push(d)) child.stdout.pause();
  });
  child.stdout.once("end", () => {
    void closed.then((err) => {
      if (err === undefined) stream.push(null);
      else stream.destroy(err);
    });
  });
  return stream;
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
