import { describe, expect, it } from "vitest";
import { NarinfoFront } from "./narinfo-front.js";

const key = (i: number) => `h${String(i).padStart(31, "0")}`;
const bytes = (i: number, round: number, size = 4000) =>
  Buffer.from(`${i}:${round}:`.padEnd(size, String.fromCharCode(97 + ((i + round) % 26))));

describe("NarinfoFront", () => {
  it("answers what was set, replaced and deleted", () => {
    const f = new NarinfoFront();
    f.set(key(1), bytes(1, 0, 10));
    f.set(key(2), bytes(2, 0, 20));
    f.set(key(1), bytes(1, 1, 30));
    f.delete(key(2));
    f.delete(key(3));
    expect(f.get(key(1))?.equals(bytes(1, 1, 30))).toBe(true);
    expect(f.get(key(2))).toBeUndefined();
    expect(f.size).toBe(1);
    f.set(key(4), new Uint8Array(0));
    expect(f.get(key(4))?.length).toBe(0);
  });

  it("keeps a narinfo larger than a chunk apart", () => {
    const f = new NarinfoFront();
    const big = Buffer.alloc(3 * 2 ** 20, 7);
    f.set(key(1), big);
    f.set(key(2), bytes(2, 0));
    expect(f.get(key(1))?.equals(big)).toBe(true);
    expect(f.get(key(2))?.equals(bytes(2, 0))).toBe(true);
    f.delete(key(1));
    expect(f.get(key(1))).toBeUndefined();
    expect(f.size).toBe(1);
  });

  it("compacts once dead bytes outweigh the live ones; views handed out stay valid", () => {
    const f = new NarinfoFront();
    const n = 6000; // 24 MB: past the 16 MiB of dead bytes compaction waits for
    for (let i = 0; i < n; i++) f.set(key(i), bytes(i, 0));
    const before = f.heldBytes;
    const view = f.get(key(0)) as Buffer;
    const copy = Buffer.from(view);
    for (let round = 1; round <= 3; round++) {
      for (let i = 0; i < n; i++) f.set(key(i), bytes(i, round));
    }
    // Three full replacements would hold four times the bytes without compaction.
    expect(f.heldBytes).toBeLessThan(2.5 * before);
    for (let i = 0; i < n; i += 97) expect(f.get(key(i))?.equals(bytes(i, 3))).toBe(true);
    expect(view.equals(copy)).toBe(true);
    for (let i = 0; i < n; i++) f.delete(key(i));
    expect(f.size).toBe(0);
    expect(f.heldBytes).toBeLessThan(before);
  });
});
