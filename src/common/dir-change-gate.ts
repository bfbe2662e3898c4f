import { stat } from "node:fs/promises";

/**
 * Skips work over a directory's listing while the directory has not changed: an entry
 * made, removed or renamed in or out of it moves its mtime and ctime. The cache's periodic
 * whole-queue refresh lists every entry of its queue (100,000 names a second at scale)
 * only to find nothing new; with this it costs one stat while the queue is still.
 *
 * A stamp is trusted only when it is older than the stat by more than `racyMs`: a change in
 * the same clock tick as the stamp would not move it (git's "racy" index entries), so a
 * recently changed directory is listed every time until it has been still for a while.
 */
export class DirChangeGate {
  private trusted: { mtimeMs: number; ctimeMs: number } | undefined;

  constructor(
    private readonly dir: string,
    private readonly options: { racyMs?: number; clock?: () => number } = {},
  ) {}

  /** Run `work` unless the directory is unchanged since a run that began after it last changed. */
  async runIfChanged(work: () => Promise<void>): Promise<boolean> {
    const before = (this.options.clock ?? Date.now)();
    const st = await stat(this.dir).catch(() => undefined);
    const t = this.trusted;
    if (
      st !== undefined &&
      t !== undefined &&
      st.mtimeMs === t.mtimeMs &&
      st.ctimeMs === t.ctimeMs
    ) {
      return false;
    }
    this.trusted = undefined;
    await work();
    if (
      st !== undefined &&
      Math.max(st.mtimeMs, st.ctimeMs) < before - (this.options.racyMs ?? 1000)
    ) {
      this.trusted = { mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
    }
    return true;
  }
}
