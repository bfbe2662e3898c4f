import { setFlagsFromString } from "node:v8";

/**
 * Set how far V8 lets the JS heap grow past what the last full collection kept before it
 * collects again (`node.heapGrowthPercent`; 0 leaves V8's own choice). Process-wide: the
 * CLI's `node` command calls it before it starts the node, `geospool dev` once for its three.
 *
 * Why: left to itself, V8 grows the old generation to up to four times the live heap when
 * collection is cheap. A node serving a 100,000-narinfo cache keeps 55 to 95 MB live, and
 * its request handling and periodic passes promote garbage steadily, so its heap climbed to
 * 250 to 330 MB between full collections, and RSS to 450 to 550 MB (docs/benchmarks.md).
 * With 20% (the default), the heap stays within about 1.2 times the live set plus V8's
 * minimum step, for a few more (concurrent) marking cycles a minute: the bench node's RSS
 * peaked at 281 MB (300 with 30%, 587 left to V8).
 */
export function applyHeapGrowth(percent: number): void {
  if (!Number.isSafeInteger(percent) || percent < 0) {
    throw new RangeError(`heap growth must be a non-negative integer, got ${percent}`);
  }
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}
