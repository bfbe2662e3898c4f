import { describe, expect, it } from "vitest";
import { StatementGroup } from "./statement-group.js";

/** A statement that ends when the test says so, recording the items of each run. */
function gatedRun() {
  const runs: number[][] = [];
  const gates: Array<() => void> = [];
  const run = (items: number[]) => {
    runs.push(items);
    return new Promise<number[]>((resolve) => {
      gates.push(() => resolve(items.map((x) => x * 10)));
    });
  };
  const release = async () => {
    (gates.shift() as () => void)();
    await new Promise((r) => setImmediate(r));
  };
  return { runs, run, release };
}

describe("StatementGroup", () => {
  it("runs one call at once, then every call that waited as one statement, results in order", async () => {
    const s = gatedRun();
    const group = new StatementGroup(s.run);
    const first = group.submit([1]);
    const second = group.submit([2, 3]);
    const third = group.submit([4]);
    expect(s.runs).toEqual([[1]]);
    await s.release();
    expect(await first).toEqual([10]);
    expect(s.runs).toEqual([[1], [2, 3, 4]]);
    await s.release();
    expect(await second).toEqual([20, 30]);
    expect(await third).toEqual([40]);
  });

  it("keeps a statement within maxItems but sends a larger call whole", async () => {
    const s = gatedRun();
    const group = new StatementGroup(s.run, 3);
    const calls = [
      group.submit([0]),
      group.submit([1, 2]),
      group.submit([3, 4]),
      group.submit([5, 6, 7, 8]),
    ];
    for (let i = 0; i < 4; i++) await s.release();
    await Promise.all(calls);
    expect(s.runs).toEqual([[0], [1, 2], [3, 4], [5, 6, 7, 8]]);
  });

  it("fails every call of a statement that failed, and goes on with the next", async () => {
    let n = 0;
    const group = new StatementGroup(async (items: number[]) => {
      n++;
      if (n === 2) throw new Error("the statement failed");
      return items;
    });
    const a = group.submit([1]);
    const b = group.submit([2]);
    const c = group.submit([3]);
    expect(await a).toEqual([1]);
    await expect(b).rejects.toThrow("the statement failed");
    await expect(c).rejects.toThrow("the statement failed");
    expect(await group.submit([4])).toEqual([4]);
  });
});
