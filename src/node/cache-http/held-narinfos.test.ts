import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { NIX_XZ, narinfoFixtures } from "../../../test/helpers/cache-fixtures.js";
import { parseNarinfo } from "../../cache/narinfo.js";
import { type HeldNarinfo, HeldNarinfos } from "./held-narinfos.js";

const fixtures = narinfoFixtures(NIX_XZ);

function held(i: number, body?: Buffer): HeldNarinfo {
  const [file, bytes] = fixtures[i]!;
  const b = body ?? bytes;
  return { hashPart: file.slice(0, 32), info: parseNarinfo(bytes), body: b, who: "ci", at: 0 };
}

describe("held narinfos", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("hands a narinfo to onDue once its wait is over, unless taken before", () => {
    const due: string[] = [];
    const h = new HeldNarinfos({
      waitMs: 1000,
      maxBytes: 1 << 20,
      onDue: (x) => due.push(x.hashPart),
    });
    const a = held(0);
    const b = held(1);
    expect(h.hold(a)).toEqual({ kind: "held" });
    expect(h.hold(b)).toEqual({ kind: "held" });
    expect(h.waitingFor(a.info.url)).toEqual([a]);
    expect(h.take(a)).toBe(true);
    expect(h.take(a)).toBe(false);
    vi.advanceTimersByTime(999);
    expect(due).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(due).toEqual([b.hashPart]);
    expect(h.take(b)).toBe(false);
    expect(h.size).toBe(0);
  });

  it("keeps one per hash part: the same bytes again change nothing, other bytes replace", () => {
    const h = new HeldNarinfos({ waitMs: 1000, maxBytes: 1 << 20, onDue: () => {} });
    const a = held(0);
    h.hold(a);
    expect(h.hold(held(0))).toEqual({ kind: "already_held" });
    const other = held(0, Buffer.concat([a.body, Buffer.from("X-Extra: 1\n")]));
    expect(h.hold(other)).toEqual({ kind: "replaced", previous: a });
    expect(h.waitingFor(a.info.url)).toEqual([other]);
    expect(h.takeAll()).toEqual([other]);
  });

  it("refuses to hold past its byte bound, and frees what it no longer holds", () => {
    const a = held(0);
    const h = new HeldNarinfos({
      waitMs: 1000,
      maxBytes: a.body.length + 10,
      onDue: () => {},
    });
    expect(h.hold(a)).toEqual({ kind: "held" });
    expect(h.hold(held(1))).toEqual({ kind: "full", maxBytes: a.body.length + 10 });
    h.take(a);
    expect(h.hold(held(1))).toEqual({ kind: "held" });
  });
});
