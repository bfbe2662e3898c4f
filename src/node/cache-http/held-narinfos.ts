import type { Narinfo } from "../../cache/narinfo.js";

/** A narinfo uploaded before its nar: checked as far as it can be, not served, waiting. */
export interface HeldNarinfo {
  readonly hashPart: string;
  readonly info: Narinfo;
  /** The narinfo as uploaded. */
  readonly body: Buffer;
  /** Who uploaded it (the token's name). */
  readonly who: string;
  readonly at: number;
}

export type HoldOutcome =
  | { kind: "held" }
  /** The same bytes are already waiting (a client's retry): nothing changes. */
  | { kind: "already_held" }
  /** Another narinfo of the hash part was waiting; this one takes its place. */
  | { kind: "replaced"; previous: HeldNarinfo }
  /** Holding it would pass the byte bound. */
  | { kind: "full"; maxBytes: number };

/**
 * Narinfos waiting for their nar, node-local and in memory (like staged nars, a restart
 * forgets them): one per hash part, each for at most `waitMs`, then handed to `onDue`
 * (which commits it if its nar came some other way, else rejects it). Whoever `take`s a
 * held narinfo first (the nar's arrival or the timer) decides it; nobody else does.
 */
export class HeldNarinfos {
  private readonly byHash = new Map<string, { held: HeldNarinfo; timer: NodeJS.Timeout }>();
  private bytes = 0;

  constructor(
    private readonly options: {
      waitMs: number;
      /** Most narinfo bytes held at once. */
      maxBytes: number;
      onDue(held: HeldNarinfo): void;
    },
  ) {}

  hold(held: HeldNarinfo): HoldOutcome {
    const before = this.byHash.get(held.hashPart);
    if (before?.held.body.equals(held.body)) return { kind: "already_held" };
    const freed = before?.held.body.length ?? 0;
    if (this.bytes - freed + held.body.length > this.options.maxBytes) {
      return { kind: "full", maxBytes: this.options.maxBytes };
    }
    if (before !== undefined) this.take(before.held);
    const timer = setTimeout(() => {
      if (this.take(held)) this.options.onDue(held);
    }, this.options.waitMs);
    timer.unref();
    this.byHash.set(held.hashPart, { held, timer });
    this.bytes += held.body.length;
    return before === undefined ? { kind: "held" } : { kind: "replaced", previous: before.held };
  }

  /** The held narinfos that list the nar at `url`. */
  waitingFor(url: string): HeldNarinfo[] {
    return [...this.byHash.values()]
      .map((h) => h.held)
      .filter((h) => h.info.files.some((f) => f.url === url));
  }

  /** Stop holding `held`: true for the one caller that gets to decide it. */
  take(held: HeldNarinfo): boolean {
    const at = this.byHash.get(held.hashPart);
    if (at === undefined || at.held !== held) return false;
    clearTimeout(at.timer);
    this.byHash.delete(held.hashPart);
    this.bytes -= held.body.length;
    return true;
  }

  /** Take every held narinfo (the node stops). */
  takeAll(): HeldNarinfo[] {
    const all = [...this.byHash.values()].map((h) => h.held);
    for (const h of all) this.take(h);
    return all;
  }

  get size(): number {
    return this.byHash.size;
  }
}
