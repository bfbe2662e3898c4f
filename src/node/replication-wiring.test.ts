import { join } from "node:path";
import { expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { widgetSpoolable } from "../../test/helpers/widget.js";
import { Expert, Spool } from "../spool/index.js";
import { followedReplicaSpool } from "./replication-wiring.js";

const dir = useTempDir();

it("the node's replica spool passes placeNew's gate on, and follows what it placed", async () => {
  const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
  const changed: string[] = [];
  const followed = followedReplicaSpool(Expert.replicaSpool(spool), (n) => changed.push(n));
  // The spool subscribes to the gate as the placement starts (synchronously): a wrapper
  // that dropped it would let the entries be seen before the replicator's keys are recorded.
  const gate = Promise.resolve();
  let subscribed = false;
  const then = gate.then.bind(gate);
  // biome-ignore lint/suspicious/noThenProperty: the test watches who subscribes to the gate
  gate.then = ((...args: Parameters<typeof then>) => {
    subscribed = true;
    return then(...args);
  }) as typeof gate.then;
  const item = (name: string) => ({
    name,
    placement: { queue: "inbox", checkedOut: false as const },
    payload: Buffer.from(JSON.stringify({ id: 1 })),
    attempts: 0,
    bytes: Buffer.from(`data of ${name}`),
  });
  const placing = followed.placeNew([item("a"), item("b")], { beforeVisible: gate });
  expect(subscribed).toBe(true);
  expect((await placing).map((r) => r.kind)).toEqual(["placed", "placed"]);
  expect(changed.sort()).toEqual(["a", "b"]);
  expect((await spool.list("inbox")).map((e) => e.name).sort()).toEqual(["a", "b"]);
});
