import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { parseDuration as parseDurationFlag } from "../node/cli/duration.js";
import { isRetryableStatus, StatusKind, statusKind } from "./grpc-status.js";
import { sleep } from "./sleep.js";
import { formatDuration, parseDuration } from "./units.js";

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

describe("gRPC status kinds", () => {
  it("retries only what another node, or later, may serve", () => {
    expect(
      [status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.ABORTED].map(isRetryableStatus),
    ).toEqual([true, true, true]);
    for (const code of [status.CANCELLED, status.RESOURCE_EXHAUSTED, status.INVALID_ARGUMENT]) {
      expect(isRetryableStatus(code), status[code]).toBe(false);
    }
    expect(statusKind(status.PERMISSION_DENIED)).toBe(StatusKind.Denied);
    expect(statusKind(status.FAILED_PRECONDITION)).toBe(StatusKind.Precondition);
    expect(statusKind(status.DATA_LOSS)).toBe(StatusKind.Failed);
  });
});

describe("sleep", () => {
  it("ends early when its signal aborts", async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    const slept = sleep(60_000, ac.signal);
    ac.abort();
    await slept;
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});
