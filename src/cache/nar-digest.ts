import { Writable } from "node:stream";
import { createBrotliDecompress, createGunzip } from "node:zlib";
import { canDecompress, readNarFile } from "./decompress.js";
import type { Hash } from "./hash.js";
import { HashSink } from "./hash.js";

/** What streaming a (compressed) nar file through `narDigester` found. */
export interface NarFacts {
  /** sha256 and size of the file as stored (FileHash, FileSize). */
  readonly fileHash: Hash;
  readonly fileSize: number;
  /**
   * sha256 and size of the uncompressed nar (NarHash, NarSize), when this node can read
   * the compression (none, gzip, br); undefined for the others until `completeNarFacts`.
   */
  readonly nar: { hash: Hash; size: number } | undefined;
  /** Why the nar could not be read although its compression is known (corrupt gzip). */
  readonly narError: string | undefined;
  /**
   * Reading the nar stopped past this many bytes (the NarSize declared): it is larger than
   * its narinfo says, or a decompression bomb. `nar` is then undefined.
   */
  readonly narPastSize?: { limit: number; read: number };
}

/**
 * Compressions the upload digester reads inline, as the upload streams in (node:zlib).
 * The others that `decompress.ts` reads (zstd, xz, bzip2, lzip) are read from the nar's file
 * once its narinfo says how large the nar is (`completeNarFacts`).
 */
export const READABLE_COMPRESSIONS = ["none", "gzip", "br"] as const;

/**
 * Fill in NarHash/NarSize of a nar that the digester could not read inline (zstd, xz,
 * bzip2, lzip) from its file, reading at most `narSize` bytes of nar (plus one chunk): a nar
 * larger than its narinfo declares, or a decompression bomb, is stopped there. Facts that
 * already hold the nar's hash (or an error), and unknown compressions, come back as they are.
 */
export async function completeNarFacts(
  facts: NarFacts,
  file: string,
  compression: string | undefined,
  narSize: number,
): Promise<NarFacts> {
  if (facts.nar !== undefined || facts.narError !== undefined) return facts;
  if (!canDecompress(compression)) return facts;
  const read = await readNarFile(file, compression, narSize);
  switch (read.kind) {
    case "read":
      return { ...facts, nar: { hash: read.hash, size: read.size } };
    case "too_large":
      return { ...facts, narPastSize: { limit: read.limit, read: read.read } };
    case "unreadable":
      return { ...facts, narError: read.message };
    case "unknown_compression":
      return facts;
  }
}

/**
 * A writable that hashes a nar file as it streams past (write the upload into it, or tee
 * it beside the disk write), and, where the compression is readable, decompresses it to
 * hash the nar itself. `facts` resolves once the writable has finished.
 */
export function narDigester(compression: string | undefined): {
  sink: Writable;
  facts: Promise<NarFacts>;
} {
  const file = new HashSink("sha256");
  const nar = new HashSink("sha256");
  const inflate =
    compression === "gzip"
      ? createGunzip()
      : compression === "br"
        ? createBrotliDecompress()
        : undefined;
  const readable = compression === "none" || inflate !== undefined;
  let narError: string | undefined;
  const inflated = new Promise<void>((resolve) => {
    if (inflate === undefined) return resolve();
    inflate.on("data", (chunk: Buffer) => nar.update(chunk));
    inflate.on("end", resolve);
    inflate.on("error", (err) => {
      narError = `${compression}: ${err.message}`;
      resolve();
    });
  });
  let resolveFacts!: (facts: NarFacts) => void;
  const facts = new Promise<NarFacts>((resolve) => {
    resolveFacts = resolve;
  });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      file.update(chunk);
      if (compression === "none") nar.update(chunk);
      if (inflate === undefined || narError !== undefined) return done();
      if (inflate.write(chunk)) done();
      else inflate.once("drain", () => done());
    },
    final(done) {
      inflate?.end();
      inflated.then(() => {
        const f = file.finish();
        const n = nar.finish();
        resolveFacts({
          fileHash: f.hash,
          fileSize: f.size,
          nar: readable && narError === undefined ? { hash: n.hash, size: n.size } : undefined,
          narError,
        });
        done();
      }, done);
    },
  });
  return { sink, facts };
}
