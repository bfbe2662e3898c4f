import { readdir } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { RunningNode } from "../../src/node/node.js";
import { action, runAction, traceProbe } from "../helpers/bad-input-campaign.js";
import { LIMITS, Model } from "../helpers/bad-input-model.js";
import { fsckSettles, verifyAgainstModel } from "../helpers/bad-input-verify.js";
import { RawSpool } from "../helpers/grpc-raw.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { tempDir } from "../helpers/tmp.js";

// Issue #8, "Bad input, as a campaign": every RPC of a real node, fed random and hostile
// fields (names, sizes, durations, page tokens, digests, streams cut at random points,
// messages out of order, several calls at once). Each answer is judged against a model of
// what was acknowledged; afterwards fsck is clean and the node holds exactly the
// acknowledged entries, data byte for byte. GEOSPOOL_CAMPAIGN_SEED replays a run;
// GEOSPOOL_CAMPAIGN_MS changes its length.

const BUDGET_MS = Number(process.env.GEOSPOOL_CAMPAIGN_MS ?? 25_000);
const SEED = Number(process.env.GEOSPOOL_CAMPAIGN_SEED ?? Math.floor(Math.random() * 2 ** 31));

let dir: Awaited<ReturnType<typeof tempDir>>;
let pg: TestPostgres[] = [];
let node: RunningNode;
let raw: RawSpool;
let failed = false;

beforeAll(async () => {
  dir = await tempDir("geospool-bad-input-");
  pg = await startPostgresServers(1, { dir: dir.path });
  node = await startTestNode({
    id: "n1",
    dir: dir.path,
    postgresUrl: (pg[0] as TestPostgres).url,
    config: { grpc: { maxDequeueWait: "300ms" }, limits: LIMITS },
  });
  raw = new RawSpool(`127.0.0.1:${node.grpcPort}`);
  traceProbe(async () => (await readdir(join(node.spool.dir, ".registry"))).length);
}, 120_000);

afterAll(async () => {
  raw?.close();
  await node?.stop();
  await stopPostgresServers(pg);
  await dir?.cleanup(failed);
});

it(
  "a node fed hostile input loses nothing acknowledged and leaves fsck clean",
  async () => {
    const model = new Model();
    let inputs = 0;
    let runs = 0;
    const started = Date.now();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 25 }), async (actions) => {
          runs++;
          for (const a of actions) inputs += await runAction(raw, model, a);
        }),
        {
          seed: SEED,
          numRuns: 1_000_000,
          interruptAfterTimeLimit: BUDGET_MS,
          markInterruptAsFailure: false,
          endOnFailure: true,
        },
      );
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      console.log(
        `bad-input campaign: ${inputs} inputs in ${runs} runs, ${seconds} s, seed ${SEED}; ` +
          `${model.entries.size} entries acknowledged and live, ${model.removed.size} removed`,
      );
    }
    try {
      expect(await fsckSettles(node.spool, 15_000)).toEqual([]);
      expect(await verifyAgainstModel(raw, model, node.spool.dir)).toEqual([]);
      expect(inputs).toBeGreaterThan(100);
    } catch (err) {
      failed = true;
      throw err;
    }
  },
  BUDGET_MS + 90_000,
);
