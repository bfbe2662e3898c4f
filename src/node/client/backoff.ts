/** Capped exponential backoff with full jitter. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly initialMs = 50,
    private readonly maxMs = 2_000,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    this.attempt++;
    return Math.round(cap * this.random());
  }

  reset(): void {
    this.attempt = 0;
  }
}
