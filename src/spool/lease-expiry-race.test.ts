import { join } from "node:path";
import { expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "../../test/helpers/widget.js";
import type { CheckedOutEntry } from "./index.js";
import { Spool } from "./index.js";
import { coreOf } from "./spool.js";

const dir = useTempDir();

// A reaper decides a lease is over from the checkout's deadline (its mtime), then takes the
// file. A holder that extends the lease in between keeps the same inode with a later
// deadline: the reaper must see that and leave the checkout alone.
it("a lease extended between the reaper's look and its take is not expired", async () => {
  let held: CheckedOutEntry<Widget, WidgetQueue> | undefined;
  let extended = "";
  const spool = await Spool.create(
    join(dir.path, "spool"),
    widgetSpoolable({
      leases: {
        // Runs between the reaper's look and its take, as a racing holder would.
        holdBack: async () => {
          extended = (await held?.extendLease(60_000))?.kind ?? "none";
          return 0;
        },
      },
    }),
  );
  const e = await spool.enqueue("inbox", { id: 1 }, "d");
  held = await spool.checkout(e, { leaseMs: 60_000 });
  const later = Date.now() + 10 * 60_000;
  expect(await coreOf(spool).expireOne("inbox", e.name, later)).toBeUndefined();
  expect(extended).toBe("done");
  expect(await held.remove()).toEqual({ kind: "done" });
});
