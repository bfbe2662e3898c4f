import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./index.js";

const BASE_ENV = { GEOSPOOL_NODE__ID: "n1", GEOSPOOL_SPOOL__DIR: "/var/spool/geospool" };
const KEY = "geospool-testdata-1:qiVMENkPe0The2eRYqGi17KFL69Nks26hoN16nYymL8=";

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ env: { ...BASE_ENV, ...env }, flags: {} });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => p.message);
    throw err;
  }
  return [];
}

describe("cache configuration", () => {
  it("reads the cache keys from env vars and flags", () => {
    const config = loadConfig({
      env: {
        ...BASE_ENV,
        GEOSPOOL_SPOOL__QUEUES: "inbox,cache",
        GEOSPOOL_CACHE__ENABLED: "true",
        GEOSPOOL_CACHE__TRUSTED_PUBLIC_KEYS: KEY,
        GEOSPOOL_CACHE__MISS_TTL: "5s",
      },
      flags: {
        "cache.policy": "sign",
        "cache.secret-key-file": "/etc/geospool/node.secret",
        "cache.max-nar-size": "1GiB",
      },
    });
    expect(config.cache).toMatchObject({
      enabled: true,
      queue: "cache",
      policy: "sign",
      secretKeyFile: "/etc/geospool/node.secret",
      trustedPublicKeys: [KEY],
      missTtl: 5_000,
      maxNarSize: 1024 ** 3,
    });
  });

  it("names what is wrong: a bad key, a store dir, a queue the spool lacks, sign without a key", () => {
    expect(problems({ GEOSPOOL_CACHE__TRUSTED_PUBLIC_KEYS: "k:AAAA" })).toEqual([
      expect.stringMatching(
        /cache\.trustedPublicKeys.*public key named "k": expected 32 bytes of base64, got 3/,
      ),
    ]);
    expect(problems({ GEOSPOOL_CACHE__STORE_DIR: "/nix/store/" })).toEqual([
      expect.stringMatching(/cache\.storeDir.*without a trailing slash/),
    ]);
    expect(problems({ GEOSPOOL_CACHE__ENABLED: "true" })).toEqual([
      expect.stringMatching(
        /cache\.queue: must be one of spool\.queues \(inbox, outbox, dead\), got "cache"/,
      ),
    ]);
    expect(problems({ GEOSPOOL_CACHE__POLICY: "sign" })).toEqual([
      expect.stringMatching(/cache\.secretKeyFile: is needed by cache\.policy "sign"/),
    ]);
  });

  it("takes a cache.listen of its own, but not the address of grpc.listen or http.listen", () => {
    const config = loadConfig({
      env: { ...BASE_ENV, GEOSPOOL_CACHE__LISTEN: "0.0.0.0:8501" },
      flags: {},
    });
    expect(config.cache.listen).toBe("0.0.0.0:8501");
    expect(loadConfig({ env: BASE_ENV, flags: {} }).cache.listen).toBeUndefined();
    expect(problems({ GEOSPOOL_CACHE__LISTEN: "127.0.0.1:8401" })).toEqual([
      expect.stringMatching(
        /cache\.listen.*: is the same address as http\.listen \(127\.0\.0\.1:8401\)$/,
      ),
    ]);
    expect(problems({ GEOSPOOL_CACHE__LISTEN: "127.0.0.1:7401" })).toEqual([
      expect.stringMatching(
        /cache\.listen.*: is the same address as grpc\.listen \(127\.0\.0\.1:7401\)$/,
      ),
    ]);
    expect(problems({ GEOSPOOL_CACHE__LISTEN: "nowhere" })).toEqual([
      expect.stringMatching(/cache\.listen.*expected host:port/),
    ]);
  });
});
