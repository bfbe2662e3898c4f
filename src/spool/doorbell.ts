import { type FSWatcher, watch } from "chokidar";

/**
 * Rings when anything changes in one directory. Built on chokidar, watching the directory
 * alone: its children are ignored, so a queue of 100,000 entries costs one inotify watch,
 * not 100,000, and no stat of each entry; every raw directory event (an entry renamed in
 * or out) rings the bell. A reader clears the bell *before* listing the directory, so a
 * change that lands during the listing rings it again and is never missed.
 */
export class Doorbell {
  private watcher: FSWatcher | undefined;
  private ready: Promise<void> | undefined;
  private rung = false;
  private waiters: Array<() => void> = [];

  constructor(private readonly dir: string) {}

  /** Start watching; resolves once events are being delivered. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    const dir = this.dir;
    const watcher = watch(dir, {
      ignoreInitial: true,
      depth: 0,
      ignored: (path: string) => path !== dir,
      persistent: false,
    });
    this.watcher = watcher;
    watcher.on("raw", () => this.ring());
    // A watcher error (e.g. inotify limits) must not leave a reader asleep forever.
    watcher.on("error", () => this.ring());
    this.ready = new Promise((resolve) => watcher.once("ready", () => resolve()));
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
        resolve();
      };
      this.waiters.push(done);
      signal?.addEventListener("abort", done, { once: true });
      if (timeoutMs !== undefined) timer = setTimeout(done, timeoutMs);
    });
  }

  async close(): Promise<void> {
    this.ring();
    await this.watcher?.close();
    this.watcher = undefined;
    this.ready = undefined;
  }
}
