import { join } from "node:path";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../test/helpers/postgres.js";
import { useTempDir } from "../../test/helpers/tmp.js";
import { migrate } from "../db/migrate.js";
import { jsonCodec, Spool } from "../spool/index.js";
import { GcHandshake } from "./gc-handshake.js";
import type { GcMark } from "./gc-marks.js";

/**
 * GcHandshake over a real spool and PostgreSQL (its journal), one node. What is live on the
 * node is given by the test (`live`), and its computation can be held open (`hold`), so the
 * race of an upload admitted while the acknowledgement is worked out is played exactly.
 */

interface Meta {
  mark?: GcMark;
}
type Q = "roots";

const dir = useTempDir("geospool-gc-handshake-");
const shared = useSharedPostgres("gc_handshake");
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const H = (c: string) => c.repeat(32);

async function setup(opts: { peers?: string[]; spoolDir?: string; pool?: pg.Pool } = {}) {
  const pool = opts.pool ?? new pg.Pool({ connectionString: await shared.freshDatabase(), max: 2 });
  if (opts.pool === undefined) {
    cleanups.push(() => pool.end());
    await migrate(pool);
  }
  const spool = await Spool.load<Meta, Q>(
    opts.spoolDir ?? join(dir.path, "spool"),
    { metadata: jsonCodec<Meta>(), queues: ["roots"] },
    { createIfMissing: true },
  );
  const state = {
    live: new Set<string>(),
    hold: undefined as Promise<void> | undefined,
    extraRoots: [] as string[],
  };
  const hs = new GcHandshake<Meta, Q>({
    spool,
    queue: "roots",
    codec: { wrap: (mark) => ({ mark }), unwrap: (m) => m.mark },
    nodeId: "n1",
    peers: opts.peers ?? [],
    pool,
    async liveAmong(among, extraRoots) {
      state.extraRoots = [...extraRoots];
      await state.hold;
      return among.filter((h) => state.live.has(h) || extraRoots.includes(h));
    },
    settle: async () => undefined,
    pollMs: 50,
  });
  cleanups.push(() => hs.stop());
  return { pool, spool, hs, state };
}

async function marks(spool: Spool<Meta, Q>): Promise<string[]> {
  const out: string[] = [];
  for (const e of await spool.list("roots")) {
    const m = (await e.direct.contents()).mark;
    if (m) out.push(m.kind === "ack" ? `ack ${m.revived.join(",")}` : `condemn ${m.entries}`);
  }
  return out.sort();
}

describe("the GC handshake on one node", () => {
  it("revives what uploads under way need, refuses what it let go, until the condemnation is gone", async () => {
    const { pool, spool, hs, state } = await setup();
    hs.start();
    // An upload needing a is under way when the condemnation comes.
    const early = hs.admit([H("u"), H("a")]);
    expect(early.kind).toBe("ok");
    let release!: () => void;
    state.hold = new Promise((r) => {
      release = r;
    });
    state.live.add(H("c"));
    const name = await hs.condemn(
      [
        ["ea", H("a")],
        ["eb", H("b")],
        ["ec", H("c")],
        ["ed", H("d")],
      ],
      1,
    );
    // While the acknowledgement is worked out, an upload needing b is admitted: b revived.
    await expect.poll(() => state.extraRoots).toEqual([H("a")]);
    const during = hs.admit([H("v"), H("b")]);
    expect(during.kind).toBe("ok");
    release();
    const acks = await hs.awaitAcks(name, 10_000);
    expect(acks).toEqual({
      kind: "acknowledged",
      revived: new Set([H("a"), H("b"), H("c")]),
    });
    if (early.kind === "ok") early.release();
    if (during.kind === "ok") during.release();
    // d was let go: an upload that is d, or references it, is refused; others are not.
    const refused = hs.admit([H("w"), H("d")]);
    expect(refused).toMatchObject({ kind: "refused", hashPart: H("d") });
    expect((refused as { message: string }).message).toMatch(
      /is being removed by a cache GC on node n1/,
    );
    expect(hs.admit([H("d")]).kind).toBe("refused");
    expect(hs.admit([H("x"), H("a")]).kind).toBe("ok");

    // The round ends once the removal of ed is journaled; then d is admitted again.
    const resolving = hs.resolve(name, ["ed"], 10_000);
    await pool.query(
      `insert into journal (origin, seq, hlc, entry, op, queue) values ('n1', 1, 1, 'ed', 'remove', 'cache')`,
    );
    expect(await resolving).toBe(true);
    await expect.poll(() => hs.admit([H("d")]).kind, { timeout: 10_000 }).toBe("ok");
    // This node's acknowledgement goes with its condemnation.
    await expect.poll(() => marks(spool), { timeout: 10_000 }).toEqual([]);
  });

  it("withdraws when a peer does not acknowledge, and a restarted node refuses as it said", async () => {
    const { pool, spool, hs } = await setup({ peers: ["n2"] });
    hs.start();
    const name = await hs.condemn([["ea", H("a")]], 1);
    const acks = await hs.awaitAcks(name, 300);
    expect(acks).toEqual({ kind: "missing", nodes: ["n2"] });
    expect(hs.admit([H("a")]).kind).toBe("refused");

    // A new process of the node (same spool and database) reads its acknowledgement back.
    await hs.stop();
    const again = await setup({ peers: ["n2"], pool, spoolDir: spool.dir });
    await again.hs.poke();
    expect(again.hs.admit([H("a")]).kind).toBe("refused");
    // Withdrawn (nothing removed): the condemnation goes at once, and a is admitted.
    expect(await again.hs.resolve(name, [], 1_000)).toBe(true);
    await again.hs.poke();
    expect(again.hs.admit([H("a")]).kind).toBe("ok");
  });

  it("removes its own condemnations left behind once their removals are journaled", async () => {
    const { pool, spool, hs } = await setup();
    await hs.condemn(
      [
        ["kept", H("a")],
        ["gone", H("b")],
      ],
      1,
    );
    const holds = async (e: string) => e === "kept";
    expect(await hs.resolveLeftovers(holds)).toBe(0); // "gone" has no remove row yet
    await pool.query(
      `insert into journal (origin, seq, hlc, entry, op, queue) values ('n1', 1, 1, 'gone', 'remove', 'cache')`,
    );
    expect(await hs.resolveLeftovers(holds)).toBe(1);
    await expect.poll(() => marks(spool), { timeout: 10_000 }).toEqual([]);
  });
});
