import { describe, expect, it } from "vitest";
import { LeaseHolderCache } from "./lease-holder-cache.js";

/** A journal lookup that counts its calls and answers when told. */
function lookup() {
  const calls: string[] = [];
  const pending: Array<{ entry: string; answer: (holder: string | undefined) => void }> = [];
  const holders = new LeaseHolderCache(
    (entry) =>
      new Promise((resolve, reject) => {
        calls.push(entry);
        if (entry === "broken") reject(new Error("database down"));
        else pending.push({ entry, answer: resolve });
      }),
  );
  const answerAll = (holder: string | undefined) => {
    for (const p of pending.splice(0)) p.answer(holder);
  };
  return { holders, calls, answerAll };
}

describe("lease holders, asked of the journal once per entry until it syncs", () => {
  it("asks once for an entry however often a reaper asks, and again after it syncs", async () => {
    const { holders, calls, answerAll } = lookup();
    const first = holders.holderOf("e1");
    const second = holders.holderOf("e1");
    answerAll("c");
    expect(await first).toBe("c");
    expect(await second).toBe("c");
    expect(await holders.holderOf("e1")).toBe("c");
    expect(calls).toEqual(["e1"]);

    holders.forget("e1");
    const third = holders.holderOf("e1");
    answerAll("a");
    expect(await third).toBe("a");
    expect(calls).toEqual(["e1", "e1"]);
  });

  it("keeps no answer from before a sync that ended while it was asked", async () => {
    const { holders, calls, answerAll } = lookup();
    const stale = holders.holderOf("e1");
    holders.forget("e1");
    answerAll("c");
    expect(await stale).toBe("c");
    const fresh = holders.holderOf("e1");
    answerAll("a");
    expect(await fresh).toBe("a");
    expect(calls).toEqual(["e1", "e1"]);
  });

  it("keeps no failed lookup: the next question asks the journal again", async () => {
    const { holders, calls } = lookup();
    await expect(holders.holderOf("broken")).rejects.toThrow("database down");
    await expect(holders.holderOf("broken")).rejects.toThrow("database down");
    expect(calls).toEqual(["broken", "broken"]);
  });
});
