import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "../../common/units.js";
import { parseDuration as parseDurationFlag } from "./duration.js";

describe("one duration grammar", () => {
  it("the CLI's flags take what the configuration takes, days included", () => {
    for (const text of ["500ms", "30s", "10m", "1h", "1d", "1.5s", "250"]) {
      expect(parseDurationFlag("--lease", text), text).toBe(parseDuration(text));
    }
    expect(parseDurationFlag("--lease", "2d")).toBe(2 * 86_400_000);
    expect(formatDuration(86_400_000)).toBe("1d");
  });

  it("a bad flag value is a usage error naming the flag", () => {
    expect(() => parseDurationFlag("--wait", "5parsecs")).toThrow(/--wait: invalid duration/);
    expect(() => parseDurationFlag("--wait", "0s")).toThrow(/--wait: duration must be more/);
    expect(parseDurationFlag("--wait", "0s", { allowZero: true })).toBe(0);
    expect(() => parseDurationFlag("--wait", "400d")).toThrow(/over a year/);
  });
});
