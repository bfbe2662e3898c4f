import { stat } from "node:fs/promises";

interface Stamp {
  mtimeMs: number;
  ctimeMs: number;
  /** A directory replaced by another (renamed over it) is another inode. */
  ino: number;
  dev: number;
}

/**
 * Skips work over directories' listings while none of them has changed: an entry made,
 * removed or renamed in or out of a directory moves its mtime and ctime. The cache's
 * periodic whole-queue refresh lists every entry of its queue (100,000 names a second at
 * scale) only to find nothing new, and the replicator's full reconcile walks every queue
 * and checkout directory; with this each costs one stat per directory while they are
 * still.
 *
 * A stamp is trusted only when it is older than the stat by more than `racyMs`: a change in
 * the same clock tick as the stamp would not move it (git's "racy" index entries), so a
 * recently changed directory is listed every time until it has been still for a while.
 */
export class DirChangeGate {
  private readonly dirs: readonly string[];
  /** The stamps of a run that began after each directory last changed; none: run. */
  private trusted: Stamp[] | undefined;

  constructor(
    dirs: string | readonly string[],
    private readonly options: { racyMs?: number; clock?: () => number } = {},
  ) {
    this.dirs = typeof dirs === "string" ? [dirs] : [...dirs];
  }

  /**
   * Run `work` unless every directory is unchanged since a run that began after it last
   * changed. True when `work` ran.
   */
  async runIfChanged(work: () => Promise<void>): Promise<boolean> {
    const before = (this.options.clock ?? Date.now)();
    const stamps = await Promise.all(
      this.dirs.map((d) =>
        stat(d).then(
          (st): Stamp => ({ mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, dev: st.dev }),
          () => undefined,
        ),
      ),
    );
    const t = this.trusted;
    if (
      t !== undefined &&
      stamps.every(
        (s, i) =>
          s !== undefined &&
          s.mtimeMs === t[i]?.mtimeMs &&
          s.ctimeMs === t[i]?.ctimeMs &&
          s.ino === t[i]?.ino &&
          s.dev === t[i]?.dev,
      )
    ) {
      return false;
    }
    this.trusted = undefined;
    await work();
    const racyMs = this.options.racyMs ?? 1000;
    if (stamps.every((s) => s !== undefined && Math.max(s.mtimeMs, s.ctimeMs) < before - racyMs)) {
      this.trusted = stamps as Stamp[];
    }
    return true;
  }
}
