import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { accessSync, createReadStream, constants as fsConstants } from "node:fs";
import { delimiter, join } from "node:path";
import { Duplex, finished, PassThrough, Readable, Transform, Writable } from "node:stream";
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
const DECOMPRESSIBLE = ["none", "gzip", "br", "zstd", "xz"] as const;

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
const EXTERNAL_DECODER_MEMORY_KIB = 160 * 1024;

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

/** Command-line decoders running at once in this process (each up to its memory cap). */
const EXTERNAL_DECODERS_AT_ONCE = 2;

let decodersRunning = 0;
const decoderWaiters: Array<() => void> = [];

/** A turn to run a command-line decoder; call the returned function when it is over. */
async function decoderTurn(): Promise<() => void> {
  if (decodersRunning >= EXTERNAL_DECODERS_AT_ONCE) {
    await new Promise<void>((resolve) => decoderWaiters.push(resolve));
  } else {
    decodersRunning++;
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const next = decoderWaiters.shift();
    if (next)
      next(); // the turn passes on: decodersRunning stays
    else decodersRunning--;
  };
}

/**
 * A decoder in a child process: the compressed bytes go to its stdin, the nar comes from
 * its stdout. At most EXTERNAL_DECODERS_AT_ONCE run at once; the others wait (their input
 * waits with them). The output ends only once the process exited 0; a failure (corrupt
 * data, the memory cap) is an error carrying what the tool wrote to stderr. Input left
 * after the tool exited 0 (trailing bytes after a complete stream, which bzip2 and lzip
 * ignore, as the clients' decoders do) is read and dropped, so a file gets the same
 * verdict whatever the timing. Destroying the stream before both sides ended (the reader
 * stopped: past the NarSize, an error) kills the process; the stream closes once it exited.
 */
function externalStream(name: string, path: string, args: readonly string[]): Duplex {
  let child: ChildProcessWithoutNullStreams | undefined;
  let cancelled = false;
  let settled = false;
  let release: () => void = () => undefined;
  let settle: (err: Error | undefined) => void = () => undefined;
  /** Resolves once the tool is gone (or will not start): its error, or undefined on exit 0. */
  const closed = new Promise<Error | undefined>((resolve) => {
    settle = (err) => {
      if (settled) return;
      settled = true;
      release();
      resolve(err);
    };
  });
  const started: Promise<ChildProcessWithoutNullStreams | undefined> = decoderTurn().then(
    (done) => {
      release = done;
      if (cancelled) {
        settle(new Error(`${name} decoder not started: the read was stopped`));
        return undefined;
      }
      const quoted = [path, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
      const c = spawn(
        "/bin/sh",
        ["-c", `ulimit -v ${EXTERNAL_DECODER_MEMORY_KIB} && exec ${quoted}`],
        {
          stdio: "pipe",
        },
      );
      child = c;
      let stderr = "";
      c.stderr.setEncoding("utf8");
      c.stderr.on("data", (d: string) => {
        if (stderr.length < 4096) stderr += d;
      });
      c.once("error", (err) => settle(new Error(`${name} decoder: ${err.message}`)));
      c.once("close", (code, signal) => {
        const why = stderr
          .trim()
          .replace(/\s*\n\s*/g, "; ")
          .slice(0, 500);
        const how = signal !== null ? `killed by ${signal}` : `exit code ${code}`;
        settle(code === 0 ? undefined : new Error(why || `${name} decoder ${how}`));
      });
      // stdin fails with EPIPE when the tool stops reading: its exit says what that means.
      c.stdin.on("error", () => undefined);
      c.stdout.on("data", (d: Buffer) => {
        if (!stream.push(d)) c.stdout.pause();
      });
      c.stdout.once("end", () => {
        void closed.then((err) => {
          if (err === undefined) stream.push(null);
          else stream.destroy(err);
        });
      });
      return c;
    },
  );
  /** After the tool exited: its error, or nothing (input after a complete stream is dropped). */
  const afterExit = (done: (err?: Error | null) => void) => void closed.then((e) => done(e));
  const stream = new Duplex({
    write(chunk: Buffer, _enc, done) {
      void started.then((c) => {
        if (c === undefined || settled || c.stdin.destroyed) return afterExit(done);
        c.stdin.write(chunk, (err) => (err == null ? done() : afterExit(done)));
      });
    },
    final(done) {
      void started.then((c) => {
        if (c === undefined || c.stdin.destroyed) return done();
        // Not end's callback: it is never called once the stdin is destroyed (the tool exited).
        finished(c.stdin, () => done());
        c.stdin.end();
      });
    },
    read() {
      child?.stdout.resume();
    },
    destroy(err, done) {
      cancelled = true;
      if (child !== undefined && !settled) {
        child.kill("SIGKILL");
        // The child's "close" waits for its pipes too: a paused stdout would hold it.
        child.stdout.destroy();
        child.stdin.destroy();
      }
      void closed.then(() => done(err));
    },
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
    // pipeline settles as soon as one stream failed; a decoder in a child process is over
    // only once the process is gone (its stream's close).
    if (!decompress.closed) await new Promise((resolve) => decompress.once("close", resolve));
    if (err instanceof PastLimit) return { kind: "too_large", limit, read };
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && read === 0) throw err;
    return { kind: "unreadable", message: `${compression}: ${(err as Error).message}` };
  }
  const done = nar.finish();
  return { kind: "read", hash: done.hash, size: done.size };
}
