import { CTIME_QUIET_MS, type SpoolCore } from "./core.js";
import { decodeEnvelope } from "./envelope.js";
import { validateName } from "./names.js";
import { inspectReplica, type ReplicaInspection } from "./replica.js";
import { SpoolThread } from "./spool-thread.js";

/** What `inspectReplicas` found of one entry: as `inspectReplica`, and its data if asked. */
export interface ReplicaLook<Q extends string> {
  seen: ReplicaInspection<Q>;
  /** The entry's data, when asked for, present, and at most the size asked. */
  data?: Buffer;
}

/** One name's first look, as the reader thread made it. */
type Raw =
  | { kind: "absent" }
  | { kind: "in_flux" }
  /** The registry file changed during the look, or a file could not be read: look again. */
  | { kind: "again" }
  | {
      kind: "present";
      queue: number;
      checkedOut: boolean;
      mtimeMs: number;
      ctimeMs: number;
      bytes: Uint8Array;
      data?: Uint8Array;
    };

interface Request {
  id: number;
  registry: string;
  dataDir: string;
  /** Per queue: its directory and its .checkout directory. */
  dirs: Array<[string, string]>;
  names: string[];
  /** Per name: read the data when it is at most this many bytes (-1: not at all). */
  dataMax: number[];
}

/*
 * The thread's code (plain JavaScript, run with `eval`). Per name, the first pass of
 * replica.ts's `scan` with synchronous calls: the registry file's stat (none: absent), the
 * metadata file in each queue and checkout in turn (read through one descriptor, with its
 * times), and when none is found the registry's stat again (unchanged: in flux; changed:
 * "again"). Any error but ENOENT is "again" too: the caller's own scan reports it.
 */
const THREAD_SOURCE = `
const { join } = require("node:path");
const statOrUndefined = (p) => fs.statSync(p, { throwIfNoEntry: false });
const look = (req, name, dataMax) => {
  const reg = join(req.registry, name);
  const before = statOrUndefined(reg);
  if (before === undefined) return { kind: "absent" };
  for (let q = 0; q < req.dirs.length; q++) {
    for (const checkedOut of [false, true]) {
      const got = readWhole(join(req.dirs[q][checkedOut ? 1 : 0], name));
      if (got === undefined) continue;
      const out = { kind: "present", queue: q, checkedOut, mtimeMs: got.st.mtimeMs, ctimeMs: got.st.ctimeMs, bytes: got.bytes };
      if (dataMax >= 0) {
        const d = readWhole(join(req.dataDir, name), dataMax);
        if (d !== undefined && d.bytes !== undefined) out.data = d.bytes;
      }
      return out;
    }
  }
  const after = statOrUndefined(reg);
  const still = after !== undefined && before.ino === after.ino &&
    before.mtimeMs === after.mtimeMs && before.ctimeMs === after.ctimeMs;
  return still ? { kind: "in_flux" } : { kind: "again" };
};
parentPort.on("message", (req) => {
  const results = req.names.map((name, i) => {
    try { return look(req, name, req.dataMax[i]); } catch { return { kind: "again" }; }
  });
  parentPort.postMessage({ id: req.id, results });
});
`;

/**
 * The spool's replica reader thread: it looks at many entries with synchronous system
 * calls (see spool-thread.ts). One per spool, made on first use.
 */
type ReplicaReader = SpoolThread<Omit<Request, "id">, { results: Raw[] }>;

const readers = new WeakMap<object, ReplicaReader>();

/**
 * Stop the spool's replica reader thread, if it has one (a later look starts a new one).
 * @internal
 */
export function closeReplicaReader(core: object): Promise<void> {
  const reader = readers.get(core);
  readers.delete(core);
  return reader?.close() ?? Promise.resolve();
}

/**
 * `inspectReplica` of many entries at once, with the data of those asked for (`dataMax`:
 * per name, the largest data to read; undefined or negative: none). The first look at
 * every entry is made on the spool's replica reader thread; an entry that needs another
 * look (its registry file changed meanwhile, a checkout whose deadline is not set yet, a
 * file that could not be read or decoded) is inspected by `inspectReplica`, which looks
 * again and reports a failure as it does. One result per name, in order.
 * @internal
 */
export async function inspectReplicas<M, Q extends string>(
  core: SpoolCore<M, Q>,
  names: readonly string[],
  dataMax?: (name: string) => number | undefined,
): Promise<ReplicaLook<Q>[]> {
  for (const name of names) validateName("entry", name);
  const l = core.layout;
  let reader = readers.get(core);
  if (reader === undefined) {
    reader = new SpoolThread(THREAD_SOURCE, "the spool's replica reader thread");
    readers.set(core, reader);
  }
  const r = reader;
  const raws = await core.throttle
    .run(() =>
      r.call({
        registry: l.registry,
        dataDir: l.data,
        dirs: core.queues.map((q) => {
          const d = core.dirname(q);
          return [l.queue(d), l.checkout(d)] as [string, string];
        }),
        names: [...names],
        dataMax: names.map((n) => dataMax?.(n) ?? -1),
      }),
    )
    .then((reply) => reply.results)
    // The thread died: every entry is looked at the usual way.
    .catch(() => names.map((): Raw => ({ kind: "again" })));
  const now = core.clock();
  return Promise.all(
    names.map(async (name, i): Promise<ReplicaLook<Q>> => {
      const raw = raws[i];
      const fromRaw = raw === undefined ? undefined : lookOf(core, raw, now);
      return fromRaw ?? { seen: await inspectReplica(core, name) };
    }),
  );
}

/** The thread's first look as an inspection, or undefined when it takes another look. */
function lookOf<M, Q extends string>(
  core: SpoolCore<M, Q>,
  raw: Raw,
  now: number,
): ReplicaLook<Q> | undefined {
  if (raw.kind === "absent" || raw.kind === "in_flux") return { seen: { kind: raw.kind } };
  if (raw.kind === "again") return undefined;
  const queue = core.queues[raw.queue];
  if (queue === undefined) return undefined;
  // A checkout renamed a moment ago whose deadline is not set yet: `scan` waits for it.
  const settling =
    raw.checkedOut && raw.mtimeMs <= raw.ctimeMs && now - raw.ctimeMs < CTIME_QUIET_MS;
  if (settling) return undefined;
  const env = decodeEnvelope(Buffer.from(raw.bytes.buffer, raw.bytes.byteOffset, raw.bytes.length));
  // Not decodable: `inspectReplica` reports it as a failure naming the file.
  if (!env.ok) return undefined;
  const data =
    raw.data === undefined
      ? {}
      : { data: Buffer.from(raw.data.buffer, raw.data.byteOffset, raw.data.length) };
  const base = { kind: "present" as const, queue, attempts: env.envelope.attempts };
  const seen: ReplicaInspection<Q> = raw.checkedOut
    ? { ...base, checkedOut: true, leaseUntil: Math.round(raw.mtimeMs), payload: env.payload }
    : { ...base, checkedOut: false, payload: env.payload };
  return { seen, ...data };
}
