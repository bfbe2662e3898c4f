import { describe, expect, it } from "vitest";
import { GUIX, NIX_XZ, readFixture } from "../../test/helpers/cache-fixtures.js";
import { buildNixCacheInfo, parseNixCacheInfo } from "./nix-cache-info.js";

describe("nix-cache-info", () => {
  it("reads what Nix 2.8 and guix publish wrote, and writes them back byte for byte", () => {
    const nix = readFixture(NIX_XZ, "nix-cache-info").toString();
    expect(parseNixCacheInfo(nix)).toEqual({
      storeDir: "/nix/store",
      wantMassQuery: false,
      priority: undefined,
    });
    const guix = readFixture(GUIX, "nix-cache-info").toString();
    const parsed = parseNixCacheInfo(guix);
    expect(parsed).toEqual({ storeDir: "/gnu/store", wantMassQuery: false, priority: 100 });
    expect(buildNixCacheInfo(parsed)).toBe(guix);
    expect(buildNixCacheInfo({ storeDir: "/nix/store", wantMassQuery: true, priority: 40 })).toBe(
      "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n",
    );
  });

  it("refuses bad values naming the line", () => {
    expect(() => parseNixCacheInfo("WantMassQuery: 1\n")).toThrow(/missing StoreDir/);
    expect(() => parseNixCacheInfo("StoreDir: /nix/store\nPriority: high\n")).toThrow(
      /line 2: Priority must be/,
    );
    expect(() => parseNixCacheInfo("StoreDir: nix\n")).toThrow(/line 1: store directory "nix"/);
    expect(() => parseNixCacheInfo("StoreDir /nix/store\n")).toThrow(
      /line 1: expected "Key: value"/,
    );
    expect(() =>
      buildNixCacheInfo({ storeDir: "/nix/store/", wantMassQuery: true, priority: 1 }),
    ).toThrow(/without a trailing slash/);
  });
});
