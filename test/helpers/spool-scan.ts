import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { payloadIsWhole, sha256 } from "./spool-payload.js";

/** Where one entry name was found: a queue directory or its .checkout. */
export interface Location {
  queue: string;
  checkedOut: boolean;
}

/** Every file of a spool directory, read straight from the disk (no spool code involved). */
export interface SpoolSnapshot {
  registry: Set<string>;
  data: Set<string>;
  tmp: string[];
  /** Entry name → every queue or checkout directory holding a metadata file of that name. */
  locations: Map<string, Location[]>;
}

async function names(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n !== ".checkout").sort();
}

export async function scanSpool(dir: string, queues: readonly string[]): Promise<SpoolSnapshot> {
  const locations = new Map<string, Location[]>();
  const add = (name: string, loc: Location) => {
    const list = locations.get(name);
    if (list) list.push(loc);
    else locations.set(name, [loc]);
  };
  for (const queue of queues) {
    for (const n of await names(join(dir, queue))) add(n, { queue, checkedOut: false });
    // `<name>~<tag>` is a finish under way (or interrupted): it still holds the entry.
    for (const n of await names(join(dir, queue, ".checkout"))) {
      add(n.split("~")[0] as string, { queue, checkedOut: true });
    }
  }
  return {
    registry: new Set(await names(join(dir, ".registry"))),
    data: new Set(await names(join(dir, ".data"))),
    tmp: await names(join(dir, ".tmp")),
    locations,
  };
}

/** The files left in a snapshot, one string each, for an "is empty" assertion. */
export function leftovers(s: SpoolSnapshot): string[] {
  const out: string[] = [];
  for (const n of s.registry) out.push(`.registry/${n}`);
  for (const n of s.data) out.push(`.data/${n}`);
  for (const n of s.tmp) out.push(`.tmp/${n}`);
  for (const [n, locs] of s.locations) {
    for (const l of locs) out.push(l.checkedOut ? `${l.queue}/.checkout/${n}` : `${l.queue}/${n}`);
  }
  return out.sort();
}

export function readDataFile(dir: string, name: string): Promise<Buffer> {
  return readFile(join(dir, ".data", name));
}

/** What a data file holds: its sha256, and whether it is a whole self-verifying payload. */
export interface DataDigest {
  sha256: string;
  whole: boolean;
}

/**
 * Digests of a spool's data files, read again only when a file may have changed: a file
 * whose inode, size, mtime and ctime are those it had when it was read holds the same
 * bytes (any write, truncation or replacement changes its ctime or inode). For tests that
 * check every entry's data after every one of hundreds of crashes.
 */
export class DataDigests {
  private readonly known = new Map<string, { identity: string; digest: DataDigest }>();

  constructor(private readonly spoolDir: string) {}

  async of(name: string): Promise<DataDigest> {
    const path = join(this.spoolDir, ".data", name);
    const st = await stat(path, { bigint: true });
    const identity = `${st.ino} ${st.size} ${st.mtimeNs} ${st.ctimeNs}`;
    const seen = this.known.get(name);
    if (seen?.identity === identity) return seen.digest;
    const bytes = await readFile(path);
    const digest = { sha256: sha256(bytes), whole: payloadIsWhole(bytes) };
    this.known.set(name, { identity, digest });
    return digest;
  }
}

/**
 * Every file of the spool with its size, inode, mtime and content digest: two equal
 * fingerprints mean nothing in the spool changed.
 */
export async function fingerprintSpool(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    for (const d of await readdir(join(dir, rel), { withFileTypes: true })) {
      const path = rel === "" ? d.name : `${rel}/${d.name}`;
      if (d.isDirectory()) {
        await walk(path);
        continue;
      }
      const full = join(dir, path);
      const st = await stat(full);
      const digest = createHash("sha256")
        .update(await readFile(full))
        .digest("hex");
      out.push(`${path} size=${st.size} ino=${st.ino} mtime=${st.mtimeMs} sha256=${digest}`);
    }
  }
  await walk("");
  return out.sort();
}
