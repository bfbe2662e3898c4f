/**
 * Whose client holds each replicated lease: the origin of the entry's last checkout row in
 * fold order (see Replicator.leaseHoldBack). A lease reaper asks about every expired
 * checkout on every pass, and a held-back lease stays expired for several passes, so the
 * journal is asked once per entry and the answer kept until the entry syncs again (`forget`):
 * the holder changes only with a new checkout row, and a row reaching this node is synced.
 */
export class LeaseHolderCache {
  private readonly known = new Map<string, Promise<string | undefined>>();

  constructor(private readonly lookup: (entry: string) => Promise<string | undefined>) {}

  holderOf(entry: string): Promise<string | undefined> {
    const known = this.known.get(entry);
    if (known !== undefined) return known;
    const asked = this.lookup(entry);
    this.known.set(entry, asked);
    asked.catch(() => {
      if (this.known.get(entry) === asked) this.known.delete(entry);
    });
    return asked;
  }

  /** The entry synced: a new checkout row may have changed its holder. */
  forget(entry: string): void {
    this.known.delete(entry);
  }
}
