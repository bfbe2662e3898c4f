import { describe, expect, it } from "vitest";
import { parseByteRange } from "./byte-range.js";
import { parseCacheRequest } from "./request-path.js";

const H = "l493h11hsb577v1lhgwxzcmxh4q2m02w";

describe("cache request paths", () => {
  it("recognises the paths Nix and Guix clients ask for", () => {
    expect(parseCacheRequest("/nix-cache-info")).toEqual({ kind: "cache_info" });
    expect(parseCacheRequest(`/${H}.narinfo`)).toEqual({ kind: "narinfo", hashPart: H });
    expect(parseCacheRequest(`/${H}.ls`)).toEqual({ kind: "listing", hashPart: H });
    const nar = "nar/0l8gkfq1153q73v79qb2p2ddh7ywk95mp38hr7k6019ybfjvkbqp.nar.xz";
    expect(parseCacheRequest(`/${nar}`)).toEqual({ kind: "nar", path: nar });
    const guix = "nar/gzip/67ciga5q7sv6w7dhqr9l63bwizs2sy6i-e2e-b.txt";
    expect(parseCacheRequest(`/${guix}`)).toEqual({ kind: "nar", path: guix });
  });

  it("refuses traversal in every URL form, and anything outside the grammar", () => {
    for (const path of [
      "/nar/../../etc/passwd",
      "/nar/..",
      "/nar/gzip/..",
      "/nar/%2e%2e/%2e%2e/etc/passwd",
      "/nar/%252e%252e%252fetc%252fpasswd",
      "/nar/x%00.nar",
      "/nar/x\0.nar",
      "/nar/a\\..\\..\\etc",
      "/nar/a/b/c",
      "/nar/",
      "/nar//x",
      `/nar/${"a".repeat(600)}`,
      `/${H.toUpperCase()}.narinfo`,
      `/${H}e.narinfo`,
      `/../${H}.narinfo`,
      `/${H}.narinfo/`,
      "/etc/passwd",
      "//nix-cache-info",
      "/",
      "",
    ]) {
      expect(parseCacheRequest(path).kind, path).toBe("bad");
    }
  });
});

describe("byte ranges", () => {
  it("serves one range, refuses one past the end, and ignores what it cannot honour", () => {
    expect(parseByteRange(undefined, 10)).toEqual({ kind: "full" });
    expect(parseByteRange("bytes=0-3", 10)).toEqual({ kind: "partial", start: 0, end: 3 });
    expect(parseByteRange("bytes=4-", 10)).toEqual({ kind: "partial", start: 4, end: 9 });
    expect(parseByteRange("bytes=4-100", 10)).toEqual({ kind: "partial", start: 4, end: 9 });
    expect(parseByteRange("bytes=-3", 10)).toEqual({ kind: "partial", start: 7, end: 9 });
    expect(parseByteRange("bytes=-30", 10)).toEqual({ kind: "partial", start: 0, end: 9 });
    expect(parseByteRange("bytes=10-", 10)).toEqual({ kind: "unsatisfiable" });
    expect(parseByteRange("bytes=-0", 10)).toEqual({ kind: "unsatisfiable" });
    expect(parseByteRange("bytes=0-", 0)).toEqual({ kind: "unsatisfiable" });
    expect(parseByteRange("bytes=0-1,4-5", 10)).toEqual({ kind: "full" });
    expect(parseByteRange("bytes=5-2", 10)).toEqual({ kind: "full" });
    expect(parseByteRange("items=0-1", 10)).toEqual({ kind: "full" });
    expect(parseByteRange("bytes=99999999999999999999-", 10)).toEqual({ kind: "unsatisfiable" });
  });
});
