/**
 * Group commit for one kind of statement: `run` takes the items of many callers and returns
 * one result per item, in order. While a statement is under way, calls wait; when it ends,
 * every call waiting goes in the next one (up to `maxItems` items; a larger call goes
 * alone, whole). One caller alone waits for nothing: a quiet node adds no latency, a busy
 * one makes one statement (one commit) for many callers instead of one each.
 */
export class StatementGroup<T, R> {
  private readonly queued: Array<{
    items: readonly T[];
    resolve: (r: R[]) => void;
    reject: (e: unknown) => void;
  }> = [];
  private running = false;

  constructor(
    private readonly run: (items: T[]) => Promise<R[]>,
    private readonly maxItems = 4096,
  ) {}

  submit(items: readonly T[]): Promise<R[]> {
    if (items.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.queued.push({ items, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.running || this.queued.length === 0) return;
    let n = 0;
    let take = 0;
    while (take < this.queued.length) {
      const next = (this.queued[take] as { items: readonly T[] }).items.length;
      if (take > 0 && n + next > this.maxItems) break;
      n += next;
      take++;
    }
    const group = this.queued.splice(0, take);
    this.running = true;
    let ran: Promise<R[]>;
    try {
      ran = this.run(group.flatMap((g) => g.items));
    } catch (err) {
      ran = Promise.reject(err);
    }
    ran
      .then(
        (results) => {
          let at = 0;
          for (const g of group) {
            g.resolve(results.slice(at, at + g.items.length));
            at += g.items.length;
          }
        },
        (err: unknown) => {
          for (const g of group) g.reject(err);
        },
      )
      .finally(() => {
        this.running = false;
        this.pump();
      });
  }
}
