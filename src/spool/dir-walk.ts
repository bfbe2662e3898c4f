import type { Dir } from "node:fs";
import { opendir } from "node:fs/promises";
import { setImmediate as yieldToLoop } from "node:timers/promises";
import type { Throttle } from "./throttle.js";

/**
 * Names read from a directory per slice (and per hold of the throttle).
 * @internal
 */
export const WALK_SLICE = 512;

/**
 * Every name in directory `path`, handed to `visit` a slice at a time, in the order the
 * filesystem lists them (not sorted), without holding the whole listing: a walk of a
 * 100,000-entry directory holds one slice of names at a time. Each slice's reading takes
 * one turn of the throttle; between slices the event loop runs. As with readdir, a name
 * that stays in the directory while it is walked is visited exactly once; one added or
 * removed meanwhile may or may not be.
 * @internal
 */
export async function walkDir(
  throttle: Throttle,
  path: string,
  visit: (names: readonly string[]) => unknown,
  slice = WALK_SLICE,
): Promise<void> {
  const dir: Dir = await throttle.run(() => opendir(path, { bufferSize: slice }));
  try {
    for (;;) {
      const names = await throttle.run(async () => {
        const read: string[] = [];
        while (read.length < slice) {
          const d = await dir.read();
          if (d === null) break;
          read.push(d.name);
        }
        return read;
      });
      if (names.length > 0) await visit(names);
      if (names.length < slice) return;
      await yieldToLoop();
    }
  } finally {
    await dir.close().catch(() => undefined);
  }
}
