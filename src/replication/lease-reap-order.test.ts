import { describe, expect, it } from "vitest";
import { reapRank } from "./lease-reap-order.js";

describe("the order in which nodes reap a lease another node took", () => {
  it("skips the holder and ranks the rest by id, the same on every node", () => {
    const all = ["eu-1", "us-1", "ap-1", "sa-1"];
    for (const holder of all) {
      const ranks = all
        .filter((n) => n !== holder)
        .map((n) =>
          reapRank(
            n,
            holder,
            all.filter((p) => p !== n),
          ),
        );
      expect([...ranks].sort()).toEqual([1, 2, 3]);
    }
    expect(reapRank("eu-1", "us-1", ["us-1", "ap-1"])).toBe(2);
    expect(reapRank("ap-1", "us-1", ["us-1", "eu-1"])).toBe(1);
  });

  it("a holder no longer configured leaves every node its place", () => {
    expect(reapRank("b", "gone", ["a", "c"])).toBe(2);
  });
});
