import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { isRetryableStatus, StatusKind, statusKind } from "./grpc-status.js";
import { sleep } from "./sleep.js";
import { formatDuration, parseDuration } from "./units.js";

describe("durations", () => {
  it("take days, and render them", () => {
    expect(parseDuration("1d")).toBe(86_400_000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("5parsecs")).toBeUndefined();
    expect(formatDuration(86_400_000)).toBe("1d");
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
