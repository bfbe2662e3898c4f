import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { type NarFacts, narDigester } from "./nar-digest.js";

/** The compression a nar's URL implies (`nar/<hash>.nar.xz`, Guix's `nar/<compression>/...`). */
export function compressionOfNarPath(path: string): string | undefined {
  const segments = path.split("/");
  if (segments.length === 3) return segments[1];
  const ext = /\.nar(?:\.([a-z0-9]+))?$/.exec(path);
  if (ext === null) return undefined;
  const byExt: Record<string, string> = {
    xz: "xz",
    zst: "zstd",
    bz2: "bzip2",
    gz: "gzip",
    br: "br",
    lz4: "lz4",
    lz: "lzip",
  };
  return ext[1] === undefined ? "none" : byExt[ext[1]];
}

export interface StagedNar {
  readonly path: string;
  /** The staged file, fsynced, to be moved into the store or deleted. */
  readonly file: string;
  readonly facts: NarFacts;
  /** The compression the facts were computed for (from the URL). */
  readonly compression: string | undefined;
  readonly stagedAt: number;
}

export type StageResult = { kind: "staged"; nar: StagedNar } | { kind: "too_large"; limit: number };

/**
 * Nars uploaded before their narinfo wait here, node-local and never replicated: written
 * to a temporary file while hashed (FileHash, FileSize, and NarHash/NarSize where the
 * compression is readable), fsynced, and kept until the narinfo that names them arrives
 * (`take`) or `sweep` finds them older than the bound. Starting empties the directory.
 */
export class NarStaging {
  private readonly staged = new Map<string, StagedNar>();
  /** Puts still streaming, by path: a narinfo pipelined right behind its nar waits for it. */
  private readonly inFlight = new Map<string, Promise<unknown>>();

  private constructor(
    readonly dir: string,
    private readonly maxBytes: number,
    private readonly clock: () => number,
  ) {}

  static async open(
    dir: string,
    options: { maxBytes: number; clock?: () => number },
  ): Promise<NarStaging> {
    await mkdir(dir, { recursive: true });
    for (const f of await readdir(dir)) await rm(join(dir, f), { force: true, recursive: true });
    return new NarStaging(dir, options.maxBytes, options.clock ?? Date.now);
  }

  /** Stream `body` into the staging area as the nar at `path`; replaces one staged before. */
  put(path: string, body: Readable): Promise<StageResult> {
    const done = this.write(path, body);
    const settled = done.catch(() => undefined);
    this.inFlight.set(path, settled);
    void settled.then(() => {
      if (this.inFlight.get(path) === settled) this.inFlight.delete(path);
    });
    return done;
  }

  /** Wait until no upload of `path` is still streaming. */
  async settled(path: string): Promise<void> {
    await this.inFlight.get(path);
  }

  private async write(path: string, body: Readable): Promise<StageResult> {
    const compression = compressionOfNarPath(path);
    const { sink, facts } = narDigester(compression);
    const file = join(
      this.dir,
      `${createHash("sha256").update(path).digest("hex").slice(0, 32)}-${randomBytes(4).toString("hex")}`,
    );
    const handle = await open(file, "wx", 0o600);
    let size = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > this.maxBytes) {
          body.destroy();
          await handle.close();
          await rm(file, { force: true });
          return { kind: "too_large", limit: this.maxBytes };
        }
        await handle.write(chunk);
        if (!sink.write(chunk)) await new Promise((r) => sink.once("drain", r));
      }
      sink.end();
      await handle.sync();
      await handle.close();
    } catch (err) {
      await handle.close().catch(() => {});
      await rm(file, { force: true });
      throw err;
    }
    const nar: StagedNar = { path, file, facts: await facts, compression, stagedAt: this.clock() };
    const previous = this.staged.get(path);
    this.staged.set(path, nar);
    if (previous !== undefined) await rm(previous.file, { force: true });
    return { kind: "staged", nar };
  }

  get(path: string): StagedNar | undefined {
    return this.staged.get(path);
  }

  /** Hand a staged nar to the caller, who moves or deletes its file. */
  take(path: string): StagedNar | undefined {
    const nar = this.staged.get(path);
    this.staged.delete(path);
    return nar;
  }

  /** Forget a staged nar and delete its file. */
  async discard(path: string): Promise<void> {
    const nar = this.take(path);
    if (nar !== undefined) await rm(nar.file, { force: true });
  }

  /** Drop nars staged longer than `maxAgeMs` ago; returns them (their files are gone). */
  async sweep(maxAgeMs: number): Promise<StagedNar[]> {
    const now = this.clock();
    const old = [...this.staged.values()].filter((n) => now - n.stagedAt > maxAgeMs);
    for (const n of old) {
      this.staged.delete(n.path);
      await rm(n.file, { force: true });
    }
    return old;
  }
}

/** Move a staged file into place durably (rename, then fsync the directory). */
export async function moveInto(file: string, target: string): Promise<void> {
  await rename(file, target);
  const dir = await open(join(target, ".."), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
