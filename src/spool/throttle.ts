/**
 * Limits how many disk operations run at once (open-file limits, thread-pool pressure).
 * Every operation of the spool that touches the disk goes through one Throttle.
 */
export interface Throttle {
  run<T>(op: () => Promise<T>): Promise<T>;
}

export class Semaphore implements Throttle {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`throttle limit must be a positive integer, got ${limit}`);
    }
  }

  async run<T>(op: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    try {
      return await op();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/**
 * The default: 256 operations at once, well under the usual 1024 open-file limit.
 * @internal
 */
export function defaultThrottle(): Throttle {
  return new Semaphore(256);
}
