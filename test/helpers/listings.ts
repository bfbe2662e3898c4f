import { vi } from "vitest";
import type { Spool } from "../../src/spool/index.js";

/**
 * Watch the listings of `queue` on `spool` (a queue reader lists before it waits):
 * `emptySeen` resolves once a listing comes back empty, i.e. a reader found nothing and will
 * now wait for the queue to change. An entry enqueued after that can reach the reader only
 * through its wake-up. `count()` is how many listings of the queue there were.
 */
export function listingsOf<M, Q extends string>(
  spool: Spool<M, Q>,
  queue: Q,
): { emptySeen: Promise<void>; count(): number; restore(): void } {
  const original = spool.list.bind(spool);
  let n = 0;
  let seen!: () => void;
  const emptySeen = new Promise<void>((resolve) => {
    seen = resolve;
  });
  const spy = vi.spyOn(spool, "list").mockImplementation(async (q) => {
    const out = await original(q);
    if (q === queue) {
      n++;
      if (out.length === 0) seen();
    }
    return out;
  });
  return { emptySeen, count: () => n, restore: () => spy.mockRestore() };
}
