import { lexicographicTimeNames, Spool } from "../../src/spool/index.js";
import type { SpoolRef } from "./spool-worker-config.js";
import { type Widget, type WidgetQueue, widgetSpoolable } from "./widget.js";

/** Open the test spool the way every process of a test agrees on. */
export function openTestSpool(ref: SpoolRef): Promise<Spool<Widget, WidgetQueue>> {
  return Spool.load(
    ref.dir,
    widgetSpoolable({
      ...(ref.leases ? { leases: ref.leases } : {}),
      ...(ref.names ? { nameGenerator: lexicographicTimeNames(ref.names.tag) } : {}),
    }),
  );
}
