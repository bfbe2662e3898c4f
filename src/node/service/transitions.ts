/** A change of an entry's place, as the Watch RPC streams it. */
export type TransitionKind =
  | "enqueued"
  | "checked_out"
  | "saved"
  | "removed"
  | "released"
  | "lease_expired";

export interface Transition {
  kind: TransitionKind;
  name: string;
  /** Where the entry is after the transition (for removed: where it was). */
  queue: string;
  /** Where it was before (checked out of, saved from). */
  fromQueue?: string;
  at: number;
}

type Listener = (t: Transition) => void;

/**
 * In-process fan-out of transitions to watchers. A watcher that falls more than
 * `maxBuffered` events behind is cut off (its stream ends with an error) rather than
 * letting memory grow without bound.
 */
export class TransitionBus {
  private readonly listeners = new Set<Listener>();

  publish(t: Transition): void {
    for (const l of this.listeners) l(t);
  }

  /** A plain listener (no buffering); returns the unsubscribe. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get watchers(): number {
    return this.listeners.size;
  }

  /** Iterate transitions of `queues` (all when empty) until the signal aborts. */
  async *watch(
    queues: readonly string[],
    signal: AbortSignal,
    maxBuffered = 10_000,
  ): AsyncGenerator<Transition> {
    const wanted = new Set(queues);
    const buffer: Transition[] = [];
    let wake: (() => void) | undefined;
    let overflow = false;
    const listener: Listener = (t) => {
      if (wanted.size > 0 && !wanted.has(t.queue) && !wanted.has(t.fromQueue ?? "")) return;
      if (buffer.length >= maxBuffered) overflow = true;
      else buffer.push(t);
      wake?.();
    };
    const onAbort = () => wake?.();
    this.listeners.add(listener);
    signal.addEventListener("abort", onAbort);
    try {
      while (!signal.aborted) {
        const next = buffer.shift();
        if (next) {
          yield next;
          continue;
        }
        if (overflow) throw new WatchOverflowError(maxBuffered);
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      this.listeners.delete(listener);
      signal.removeEventListener("abort", onAbort);
    }
  }
}

export class WatchOverflowError extends Error {
  constructor(readonly limit: number) {
    super(`watcher fell more than ${limit} events behind`);
    this.name = "WatchOverflowError";
  }
}
