import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./index.js";

const BASE_ENV = { GEOSPOOL_NODE__ID: "n1", GEOSPOOL_SPOOL__DIR: "/var/spool/geospool" };

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ env: { ...BASE_ENV, ...env }, flags: {} });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => p.message);
    throw err;
  }
  return [];
}

describe("cache.gc configuration", () => {
  it("is off by default, and reads its keys from env vars and flags", () => {
    expect(loadConfig({ env: BASE_ENV, flags: {} }).cache.gc).toEqual({
      enabled: false,
      every: 3_600_000,
      rootsQueue: "cache-roots",
      grace: 86_400_000,
      maxPeerSilence: 120_000,
      peerSettle: 120_000,
      ackTimeout: 60_000,
      tokens: [],
    });
    const config = loadConfig({
      env: {
        ...BASE_ENV,
        GEOSPOOL_SPOOL__QUEUES: "cache,roots",
        GEOSPOOL_CACHE__ENABLED: "true",
        GEOSPOOL_CACHE__GC__ENABLED: "true",
        GEOSPOOL_CACHE__GC__ROOTS_QUEUE: "roots",
        GEOSPOOL_CACHE__GC__ACK_TIMEOUT: "30s",
      },
      flags: { "cache.gc.grace": "2h", "cache.gc.every": "10m", "cache.gc.max-peer-silence": "1m" },
    });
    expect(config.cache.gc).toMatchObject({
      enabled: true,
      rootsQueue: "roots",
      ackTimeout: 30_000,
      grace: 7_200_000,
      every: 600_000,
      maxPeerSilence: 60_000,
    });
  });

  it("names what is wrong: a roots queue the spool lacks, the cache's own queue, a short grace", () => {
    expect(
      problems({
        GEOSPOOL_SPOOL__QUEUES: "cache",
        GEOSPOOL_CACHE__ENABLED: "true",
        GEOSPOOL_CACHE__GC__ENABLED: "true",
      }),
    ).toEqual([
      expect.stringMatching(
        /cache\.gc\.rootsQueue: must be one of spool\.queues \(cache\) when cache\.gc\.enabled, got "cache-roots"/,
      ),
    ]);
    expect(problems({ GEOSPOOL_CACHE__GC__ROOTS_QUEUE: "cache" })).toEqual([
      expect.stringMatching(/cache\.gc\.rootsQueue.*must not be cache\.queue/),
    ]);
    expect(problems({ GEOSPOOL_CACHE__GC__GRACE: "1m" })).toEqual([
      expect.stringMatching(/cache\.gc\.grace.*must be longer than cache\.gc\.maxPeerSilence/),
    ]);
    expect(problems({ GEOSPOOL_CACHE__GC__EVERY: "0s" })).toEqual([
      expect.stringMatching(/cache\.gc\.every.*must be more than 0/),
    ]);
  });
});
