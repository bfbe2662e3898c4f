import { type FSWatcher as FsWatcher, watch as fsWatch, unwatchFile, watchFile } from "node:fs";

const POLL_INTERVAL_MS = 100;

/** How a Doorbell learns of changes. */
export type DoorbellMode = "inotify" | "poll";

/**
 * Rings when anything changes in one directory. By default one `fs.watch` (inotify on
 * Linux) on the directory itself: an entry renamed in or out rings it, whatever the size of
 * the directory, at the cost of one watch and no scanning. Where the platform cannot watch
 * (fs.watch throws: some network filesystems), or when asked (`mode: "poll"`), it polls
 * the directory's own stat (`fs.watchFile`) every 100 ms.
 *
 * Why not chokidar: it re-reads and lstats the whole directory on every event to compute
 * which file was added; with 100,000 entries in a queue that made each dequeue wait behind
 * a full directory scan (measured in bench/spool.ts: 9 to 50 dequeues/s instead of 1,500,
 * and about 200 MB instead of 133 MB), in its polling mode as well.
 *
 * A reader clears the bell *before* listing the directory, so a change that lands during
 * the listing rings it again and is never missed.
 * @internal
 */
export class Doorbell {
  private watcher: FsWatcher | undefined;
  private unpoll: (() => void) | undefined;
  private ready: Promise<void> | undefined;
  private rung = false;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly dir: string,
    private readonly mode: DoorbellMode = "inotify",
  ) {}

  /** Start watching; resolves once events are being delivered. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    if (this.mode === "inotify") {
      try {
        const w = fsWatch(this.dir, { persistent: false }, () => this.ring());
        // A watcher error (e.g. the directory went away) must not leave a reader asleep.
        w.on("error", () => this.ring());
        this.watcher = w;
        this.ready = Promise.resolve();
        return this.ready;
      } catch {
        // fall back to polling below
      }
    }
    // Polling: stat the directory itself (its mtime changes whenever an entry is renamed
    // in or out), never its entries.
    const listener = () => this.ring();
    watchFile(this.dir, { interval: POLL_INTERVAL_MS, persistent: false }, listener);
    this.unpoll = () => unwatchFile(this.dir, listener);
    this.ready = Promise.resolve();
    return this.ready;
  }

  ring(): void {
    this.rung = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Forget past rings. Call before listing the directory. */
  clear(): void {
    this.rung = false;
  }

  /** Resolve when the bell rings (at once if it rang since `clear`), or the signal aborts, or `timeoutMs` passes. */
  wait(signal?: AbortSignal, timeoutMs?: number): Promise<void> {
    if (this.rung || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        // Leave the waiting list (a waiter that timed out must not pile up on a quiet queue).
        const i = this.waiters.indexOf(done);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve();
      };
      this.waiters.push(done);
      signal?.addEventListener("abort", done, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(done, timeoutMs);
    });
  }

  async close(): Promise<void> {
    this.ring();
    this.watcher?.close();
    this.watcher = undefined;
    this.unpoll?.();
    this.unpoll = undefined;
    this.ready = undefined;
  }
}
