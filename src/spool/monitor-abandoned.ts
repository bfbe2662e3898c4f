import { readdir } from "node:fs/promises";
import { sleep } from "../common/sleep.js";
import { statIfExists } from "./fs-ops.js";
import { CHECKOUT, entryNameOfTmpFile } from "./layout.js";
import type { FileWithMtime } from "./monitor.js";
import { coreOf, LOCATE_RESCANS, type Spool } from "./spool.js";

/**
 * Which of the registry files fsck saw in no queue are really abandoned, looked at again
 * now: the file and its data are old, no queue or checkout holds the name, and the
 * registry file was not touched while we looked. fsck's scan is not atomic: an entry that
 * moved from a directory not yet scanned to one already scanned looks orphaned. Every move
 * by a holder or reaper touches the registry file first, so a move during the look shows
 * as a changed mtime; and a name in no queue is looked for again, on `locate`'s schedule
 * (up to ~1 s), in case it is between two renames.
 *
 * All the names are looked for together, a look being one listing of every queue and
 * checkout: each name gets as many looks as `locate` would give it, at least as far apart,
 * but the looks and waits are shared, so repair after a crash in a batch (which leaves
 * hundreds of these) takes about a second, not a second per name.
 * @internal
 */
export async function abandonedRegistryFiles<M, Q extends string>(
  spool: Spool<M, Q>,
  seen: readonly FileWithMtime[],
  old: (mtimeMs: number) => boolean,
): Promise<Set<string>> {
  const core = coreOf(spool);
  const l = core.layout;
  const stat = (path: string) => core.throttle.run(() => statIfExists(path));
  /** The registry file's mtime when the look began, per name still in question. */
  const pending = new Map<string, number>();
  await Promise.all(
    seen.map(async ({ filename: name, mtimeMs }) => {
      const before = await stat(l.registryFile(name));
      if (!before || before.mtimeMs !== mtimeMs || !old(before.mtimeMs)) return;
      const data = await stat(l.dataFile(name));
      if (data && !old(data.mtimeMs)) return;
      pending.set(name, before.mtimeMs);
    }),
  );
  for (let pass = 1; pending.size > 0; pass++) {
    const held = await heldNames(spool);
    for (const name of pending.keys()) if (held.has(name)) pending.delete(name);
    if (pass > LOCATE_RESCANS || pending.size === 0) break;
    await sleep(2 ** (pass - 1));
  }
  const abandoned = new Set<string>();
  await Promise.all(
    [...pending].map(async ([name, before]) => {
      if ((await stat(l.registryFile(name)))?.mtimeMs === before) abandoned.add(name);
    }),
  );
  return abandoned;
}

/**
 * Every name a queue or checkout holds now, from one listing of each directory (an
 * interrupted finish, `<name>~<tag>` in a checkout, holds its entry, as fsck counts it).
 * A listing returns every file that stays in its directory while it is read, so this finds
 * what `locate`'s stats of each name would: one pass over hundreds of names costs a few
 * readdirs instead of a stat per name per directory.
 */
async function heldNames<M, Q extends string>(spool: Spool<M, Q>): Promise<Set<string>> {
  const core = coreOf(spool);
  const l = core.layout;
  const held = new Set<string>();
  for (const queue of core.queues) {
    const dirname = core.dirname(queue);
    for (const dir of [l.queue(dirname), l.checkout(dirname)]) {
      for (const file of await core.throttle.run(() => readdir(dir))) {
        if (file !== CHECKOUT) held.add(entryNameOfTmpFile(file));
      }
    }
  }
  return held;
}
