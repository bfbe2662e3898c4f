import { GroupCommit, splitBy } from "../../common/group-commit.js";

/**
 * Group commit for one kind of statement: `run` takes the items of many callers and returns
 * one result per item, in order. While a statement is under way, calls wait; when it ends,
 * every call waiting goes in the next one (up to `maxItems` items; a larger call goes
 * alone, whole). One caller alone waits for nothing: a quiet node adds no latency, a busy
 * one makes one statement (one commit) for many callers instead of one each.
 */
export class StatementGroup<T, R> {
  private readonly group: GroupCommit<readonly T[], R>;

  constructor(run: (items: T[]) => Promise<R[]>, maxItems = 4096) {
    this.group = new GroupCommit<readonly T[], R>(
      async (calls) =>
        splitBy(
          await run(calls.flat() as T[]),
          calls.map((c) => c.length),
        ),
      (call) => call.length,
      { maxItems, inFlight: 1 },
    );
  }

  submit(items: readonly T[]): Promise<R[]> {
    if (items.length === 0) return Promise.resolve([]);
    return this.group.submit(items);
  }
}
