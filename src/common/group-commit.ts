/**
 * Group commit: calls that arrive while `inFlight` runs are under way wait, then go
 * together, in the order they came, as one run of up to `maxItems` items (a larger call
 * goes alone, whole). One call alone waits for nothing. `run` gets the calls of one group
 * and returns one result array per call; a failed run fails every call of its group.
 */
export class GroupCommit<C, R> {
  private readonly queued: Array<{
    call: C;
    resolve: (r: R[]) => void;
    reject: (e: unknown) => void;
  }> = [];
  private running = 0;

  constructor(
    private readonly run: (calls: C[]) => Promise<R[][]>,
    /** How many items a call counts for `maxItems`. */
    private readonly sizeOf: (call: C) => number,
    private readonly opts: { maxItems: number; inFlight: number },
  ) {}

  submit(call: C): Promise<R[]> {
    return new Promise((resolve, reject) => {
      this.queued.push({ call, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.running >= this.opts.inFlight || this.queued.length === 0) return;
    let n = 0;
    let take = 0;
    while (take < this.queued.length) {
      const next = this.sizeOf((this.queued[take] as { call: C }).call);
      if (take > 0 && n + next > this.opts.maxItems) break;
      n += next;
      take++;
    }
    const group = this.queued.splice(0, take);
    this.running++;
    let ran: Promise<R[][]>;
    try {
      ran = this.run(group.map((g) => g.call));
    } catch (err) {
      ran = Promise.reject(err);
    }
    ran
      .then(
        (results) => {
          if (!Array.isArray(results) || results.length !== group.length) {
            const err = new Error(
              `a group of ${group.length} calls got ${String(results?.length)} answers`,
            );
            for (const g of group) g.reject(err);
            return;
          }
          group.forEach((g, i) => {
            g.resolve(results[i] ?? []);
          });
        },
        (err: unknown) => {
          for (const g of group) g.reject(err);
        },
      )
      .finally(() => {
        this.running--;
        this.pump();
      });
  }
}

/** `results` cut into consecutive pieces of `sizes` (one run's results, back per call). */
export function splitBy<R>(results: readonly R[], sizes: readonly number[]): R[][] {
  let at = 0;
  return sizes.map((n) => {
    const piece = results.slice(at, at + n);
    at += n;
    return piece;
  });
}
