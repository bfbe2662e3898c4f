/**
 * At most `limit` holders at once; the others wait in first-in first-out order. A waiter
 * whose signal aborts leaves the line without taking a slot.
 */
export class FifoSlots {
  private active = 0;
  private readonly line: Array<{ grant: () => void }> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`slot limit must be a positive integer, got ${limit}`);
    }
  }

  /** Holders now. */
  get running(): number {
    return this.active;
  }

  /** Waiters now. */
  get waiting(): number {
    return this.line.length;
  }

  /**
   * Wait for a slot; resolves to its release function (call it exactly once), or to
   * `undefined` if `signal` aborted first.
   */
  acquire(signal?: AbortSignal): Promise<(() => void) | undefined> {
    if (signal?.aborted) return Promise.resolve(undefined);
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener("abort", leave);
          resolve(this.releaser());
        },
      };
      const leave = () => {
        const i = this.line.indexOf(waiter);
        if (i >= 0) this.line.splice(i, 1);
        resolve(undefined);
      };
      signal?.addEventListener("abort", leave, { once: true });
      this.line.push(waiter);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.line.shift();
      // The slot passes straight to the next waiter: `active` stays the same.
      if (next) next.grant();
      else this.active--;
    };
  }
}
