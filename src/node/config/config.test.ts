import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BASE_ENV, configError, writeYamlIn } from "../../../test/helpers/config.js";
import { useTempDir } from "../../../test/helpers/tmp.js";
import {
  type Config,
  ConfigErrorCode,
  configKeys,
  configWarnings,
  formatDuration,
  formatSize,
  loadConfig,
  parseDuration,
  parseHostPort,
  parseSize,
} from "./index.js";

const dir = useTempDir("geospool-config-");
const writeYaml = (text: string, name?: string) => writeYamlIn(dir.path, text, name);

describe("units", () => {
  it("parses durations", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("10m")).toBe(600_000);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration(250)).toBe(250);
    expect(parseDuration("250")).toBe(250);
    for (const bad of ["", "abc", "10 parsecs", "-5s", "1h30m", -1]) {
      expect(parseDuration(bad)).toBeUndefined();
    }
    expect(formatDuration(600_000)).toBe("10m");
    expect(formatDuration(1500)).toBe("1500ms");
  });

  it("parses sizes", () => {
    expect(parseSize("4MiB")).toBe(4 * 1024 * 1024);
    expect(parseSize("512 KiB")).toBe(512 * 1024);
    expect(parseSize("10MB")).toBe(10_000_000);
    expect(parseSize("1gib")).toBe(1024 ** 3);
    expect(parseSize(100)).toBe(100);
    for (const bad of ["", "4 MiBs", "lots", "-1"]) expect(parseSize(bad)).toBeUndefined();
    expect(formatSize(4 * 1024 * 1024)).toBe("4MiB");
  });

  it("parses host:port", () => {
    expect(parseHostPort("127.0.0.1:7401")).toEqual({ host: "127.0.0.1", port: 7401 });
    expect(parseHostPort("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseHostPort("node-1.example:80")).toEqual({ host: "node-1.example", port: 80 });
    for (const bad of ["abc", ":80", "::1:80", "host:", "host:65536", "ho st:1", "[x]:1"]) {
      expect(parseHostPort(bad)).toBeUndefined();
    }
  });
});

describe("defaults", () => {
  it("fills every default, in milliseconds and bytes", () => {
    const config = loadConfig({ env: BASE_ENV, flags: {} });
    expect(config).toEqual({
      node: { id: "n1", region: "local", heapGrowthPercent: 20 },
      spool: {
        dir: "/var/spool/geospool",
        queues: ["inbox", "outbox", "dead"],
        filePool: true,
        leases: { defaultLease: 600_000, grace: 5000, maxAttempts: 5 },
      },
      grpc: {
        listen: "127.0.0.1:7401",
        tls: { requireClientCert: false },
        maxMessageBytes: 4 * 1024 * 1024,
        keepalive: { time: 30_000, timeout: 10_000 },
        maxDequeueWait: 60_000,
      },
      http: { listen: "127.0.0.1:8401" },
      postgres: {},
      auth: { tokens: [], allowUnauthenticatedHealth: true },
      peers: [],
      replication: {
        fullReconcileEvery: 30_000,
        batchInterval: 10,
        fetchConcurrency: 4,
        joinRetry: 2_000,
        heartbeatInterval: 1_000,
        leaseReapGrace: 10_000,
      },
      log: { level: "info" },
      monitor: { checkEvery: 15_000, alertAfterCycles: 2, repair: true },
      limits: {
        entryDataSize: 8 * 1024 ** 3,
        metadataSize: 256 * 1024,
        uploadIdleTimeout: 60_000,
        maxConcurrentUploads: 64,
        listPageBytes: 512 * 1024,
        maxBatchEntries: 1000,
        maxBatchBytes: 2 * 1024 * 1024,
      },
      idempotency: { window: 86_400_000 },
      cache: {
        enabled: false,
        queue: "cache",
        storeDir: "/nix/store",
        storeDirs: ["/nix/store", "/gnu/store"],
        priority: 40,
        wantMassQuery: true,
        policy: "require",
        trustedPublicKeys: [],
        hitTtl: 3_600_000,
        missTtl: 60_000,
        maxNarSize: 8 * 1024 ** 3,
        stagingTtl: 600_000,
        narWait: 600_000,
        keepRejected: 10_000,
        rejectedTtl: 30 * 86_400_000,
        refreshEvery: 30_000,
        uploadTokens: [],
        analytics: {
          enabled: true,
          bucket: "hour",
          flushEvery: 60_000,
          maxKeys: 50_000,
          maxKeysPerBucket: 200_000,
          keepFor: 30 * 86_400_000,
        },
        gc: {
          enabled: false,
          every: 3_600_000,
          rootsQueue: "cache-roots",
          grace: 86_400_000,
          maxPeerSilence: 120_000,
          peerSettle: 120_000,
          ackTimeout: 60_000,
          tokens: [],
        },
      },
      shutdown: { deadline: 10_000 },
    } satisfies Config);
  });

  it("requires node.id and spool.dir, naming the env var and flag that set them", () => {
    const err = configError(() => loadConfig({ env: {}, flags: {} }));
    expect(err.code).toBe(ConfigErrorCode.MissingKey);
    expect(err.problems.map((p) => p.message)).toEqual([
      "config: node.id: required; set it in the config file, with GEOSPOOL_NODE__ID or --node.id",
      "config: spool.dir: required; set it in the config file, with GEOSPOOL_SPOOL__DIR or --spool.dir",
    ]);
  });

  it("requires postgres.url when the command asks for it", () => {
    const err = configError(() =>
      loadConfig({ env: BASE_ENV, flags: {}, require: ["postgres.url"] }),
    );
    expect(err.code).toBe(ConfigErrorCode.MissingKey);
    expect(err.key).toBe("postgres.url");
    const config = loadConfig({
      env: { ...BASE_ENV, GEOSPOOL_POSTGRES__URL: "postgres://geo:pw@127.0.0.1:5432/geo" },
      flags: {},
      require: ["postgres.url"],
    });
    expect(config.postgres.url).toBe("postgres://geo:pw@127.0.0.1:5432/geo");
  });
});

describe("precedence: flags > env > file > defaults", () => {
  it("takes each key from the highest source that sets it", async () => {
    const file = await writeYaml(
      "node: {id: from-file}\nspool: {dir: /s}\ngrpc:\n  listen: 127.0.0.1:1001\n  keepalive: {time: 1m}\nhttp: {listen: 127.0.0.1:2001}\n",
    );
    const env = {
      GEOSPOOL_GRPC__LISTEN: "127.0.0.1:1002",
      GEOSPOOL_HTTP__LISTEN: "127.0.0.1:2002",
    };
    const flags = { "grpc.listen": "127.0.0.1:1003" };
    const config = loadConfig({ file, env, flags });
    expect(config.grpc.listen).toBe("127.0.0.1:1003");
    expect(config.http.listen).toBe("127.0.0.1:2002");
    expect(config.node.id).toBe("from-file");
    expect(config.grpc.keepalive).toEqual({ time: 60_000, timeout: 10_000 });
    expect(loadConfig({ file, env, flags: {} }).grpc.listen).toBe("127.0.0.1:1002");
    expect(loadConfig({ file, env: {}, flags: {} }).grpc.listen).toBe("127.0.0.1:1001");
  });

  it("takes fallbacks only where file, env and flags are silent", async () => {
    const file = await writeYaml("node: {id: from-file}\nspool: {dir: /s}\n");
    const fallbacks = { "node.id": "fallback", "grpc.listen": "127.0.0.1:1004" };
    const config = loadConfig({ file, env: {}, flags: {}, fallbacks });
    expect(config.node.id).toBe("from-file");
    expect(config.grpc.listen).toBe("127.0.0.1:1004");
    const bare = await writeYaml("spool: {dir: /s}\n", "bare.yaml");
    expect(loadConfig({ file: bare, env: {}, flags: {}, fallbacks }).node.id).toBe("fallback");
    expect(
      loadConfig({ file: bare, env: { GEOSPOOL_NODE__ID: "from-env" }, flags: {}, fallbacks }).node
        .id,
    ).toBe("from-env");
  });

  it("blames the source whose value won", async () => {
    const file = await writeYaml("node: {id: n1}\nspool: {dir: /s}\ngrpc:\n  listen: nope\n");
    expect(configError(() => loadConfig({ file, env: {}, flags: {} })).message).toBe(
      `config: grpc.listen (from ${file}:4): expected host:port (IPv6 as [::1]:port), got "nope"`,
    );
    expect(
      configError(() => loadConfig({ file, env: { GEOSPOOL_GRPC__LISTEN: "abc" }, flags: {} }))
        .message,
    ).toBe(
      'config: grpc.listen (from GEOSPOOL_GRPC__LISTEN): expected host:port (IPv6 as [::1]:port), got "abc"',
    );
    const err = configError(() =>
      loadConfig({ file, env: { GEOSPOOL_GRPC__LISTEN: "abc" }, flags: { "grpc.listen": "x:y" } }),
    );
    expect(err.source).toBe("--grpc.listen");
    expect(err.problems).toHaveLength(1);
  });

  it("resolves relative paths against the file's directory, or the cwd for env and flags", async () => {
    await mkdir(join(dir.path, "etc"));
    const file = await writeYaml("node: {id: n1}\nspool: {dir: ../data/spool}\n", "etc/node.yaml");
    expect(loadConfig({ file, env: {}, flags: {} }).spool.dir).toBe(join(dir.path, "data/spool"));
    const config = loadConfig({
      file,
      env: {},
      flags: { "spool.dir": "here" },
      cwd: "/srv",
    });
    expect(config.spool.dir).toBe("/srv/here");
  });

  it("treats empty YAML values and empty env vars as unset", async () => {
    const file = await writeYaml(
      "node: {id: n1}\nspool: {dir: /s}\ngrpc:\n  tls:\n  advertise: ~\n",
    );
    const config = loadConfig({ file, env: { GEOSPOOL_LOG__LEVEL: "" }, flags: {} });
    expect(config.grpc.tls).toEqual({ requireClientCert: false });
    expect(config.grpc.advertise).toBeUndefined();
    expect(config.log.level).toBe("info");
  });
});

describe("env vars and flags", () => {
  it("parses every kind of value from text", () => {
    const config = loadConfig({
      env: {
        ...BASE_ENV,
        GEOSPOOL_SPOOL__QUEUES: "in, out,dlq",
        GEOSPOOL_SPOOL__LEASES__DEAD_LETTER_QUEUE: "dlq",
        GEOSPOOL_SPOOL__LEASES__MAX_ATTEMPTS: "9",
        GEOSPOOL_SPOOL__FILE_POOL: "false",
        GEOSPOOL_GRPC__MAX_MESSAGE_BYTES: "16MiB",
        GEOSPOOL_MONITOR__REPAIR: "off",
        GEOSPOOL_AUTH__TOKENS: JSON.stringify([
          { name: "ci", token: "t0k3n", permissions: [{ queues: ["in"], actions: ["enqueue"] }] },
        ]),
        GEOSPOOL_PEERS: '[{"id":"n2","grpc":"[::1]:7402","region":"eu"}]',
      },
      flags: {
        "--grpc.keepalive.time": "45s",
        "grpc.max-dequeue-wait": "2m",
        "auth.allowUnauthenticatedHealth": false,
        "node.region": "us-east",
      },
    });
    expect(config.spool.queues).toEqual(["in", "out", "dlq"]);
    expect(config.spool.leases.deadLetterQueue).toBe("dlq");
    expect(config.spool.leases.maxAttempts).toBe(9);
    expect(config.spool.filePool).toBe(false);
    expect(config.grpc.maxMessageBytes).toBe(16 * 1024 * 1024);
    expect(config.monitor.repair).toBe(false);
    expect(config.auth.tokens).toEqual([
      { name: "ci", token: "t0k3n", permissions: [{ queues: ["in"], actions: ["enqueue"] }] },
    ]);
    expect(config.peers).toEqual([{ id: "n2", grpc: "[::1]:7402", region: "eu" }]);
    expect(config.grpc.keepalive.time).toBe(45_000);
    expect(config.grpc.maxDequeueWait).toBe(120_000);
    expect(config.auth.allowUnauthenticatedHealth).toBe(false);
    expect(config.node.region).toBe("us-east");
  });

  it("accepts a bare boolean flag", () => {
    const config = loadConfig({ env: BASE_ENV, flags: { "monitor.repair": true } });
    expect(config.monitor.repair).toBe(true);
  });

  it("refuses unknown env vars in a config section, ignores other GEOSPOOL_ vars", () => {
    const err = configError(() =>
      loadConfig({ env: { ...BASE_ENV, GEOSPOOL_LOG_LEVEL: "debug" }, flags: {} }),
    );
    expect(err.code).toBe(ConfigErrorCode.UnknownKey);
    expect(err.message).toBe(
      "config: GEOSPOOL_LOG_LEVEL (from environment): unknown setting; did you mean GEOSPOOL_LOG__LEVEL?",
    );
    const config = loadConfig({
      env: { ...BASE_ENV, GEOSPOOL_CONFIG: "/etc/x.yaml", GEOSPOOL_KEEP_TMP: "1" },
      flags: {},
    });
    expect(config.node.id).toBe("n1");
  });

  it("refuses unknown dotted flags, ignores the CLI's own flags", () => {
    const err = configError(() =>
      loadConfig({ env: BASE_ENV, flags: { "grpc.listn": "127.0.0.1:1", config: "x.yaml" } }),
    );
    expect(err.code).toBe(ConfigErrorCode.UnknownKey);
    expect(err.message).toBe(
      "config: --grpc.listn (from flags): unknown setting; did you mean --grpc.listen?",
    );
    expect(loadConfig({ env: BASE_ENV, flags: { config: "x.yaml", help: false } }).node.id).toBe(
      "n1",
    );
  });

  it("names the key and its source in the error for a bad value of every key", () => {
    // Any non-empty path is valid for these.
    const skip = new Set([
      "spool.dir",
      "cache.secretKeyFile",
      "cache.trustedGuixKeysFile",
      "cache.stagingDir",
      "cache.rejectedDir",
    ]);
    const keys = configKeys().filter((k) => !skip.has(k.key));
    expect(keys.length).toBeGreaterThan(25);
    for (const key of keys) {
      const fromEnv = configError(() =>
        loadConfig({ env: { ...BASE_ENV, [key.env]: "!bad value!" }, flags: {} }),
      );
      expect(fromEnv.message, key.env).toMatch(
        new RegExp(`^config: ${escapeRegExp(key.key)}\\S* \\(from ${key.env}\\): `),
      );
      expect(fromEnv.message).not.toContain("\n");
      const fromFlag = configError(() =>
        loadConfig({ env: BASE_ENV, flags: { [key.key]: "!bad value!" } }),
      );
      expect(fromFlag.message, key.flag).toMatch(
        new RegExp(`^config: ${escapeRegExp(key.key)}\\S* \\(from ${escapeRegExp(key.flag)}\\): `),
      );
    }
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe("the config file", () => {
  it("refuses unknown keys with the line and a suggestion", async () => {
    const file = await writeYaml(
      "node: {id: n1}\nspool:\n  dir: /s\n  leases:\n    defaultLeas: 1m\n",
    );
    const err = configError(() => loadConfig({ file, env: {}, flags: {} }));
    expect(err.code).toBe(ConfigErrorCode.UnknownKey);
    expect(err.message).toBe(
      `config: spool.leases.defaultLeas (from ${file}:5): unknown key; did you mean spool.leases.defaultLease?`,
    );
  });

  it("refuses unknown keys inside list items", async () => {
    const file = await writeYaml(
      [
        "node: {id: n1}",
        "spool: {dir: /s}",
        "auth:",
        "  tokens:",
        "    - name: ci",
        "      token: abc",
        "      permisions: [{queues: ['*'], actions: [admin]}]",
      ].join("\n"),
    );
    const err = configError(() => loadConfig({ file, env: {}, flags: {} }));
    expect(err.problems.map((p) => p.message)).toContain(
      `config: auth.tokens[0].permisions (from ${file}:7): unknown key; did you mean auth.tokens[0].permissions?`,
    );
  });

  it("reports unreadable files and bad YAML", async () => {
    const missing = join(dir.path, "missing.yaml");
    const err = configError(() => loadConfig({ file: missing, env: {}, flags: {} }));
    expect(err.code).toBe(ConfigErrorCode.FileUnreadable);
    expect(err.message).toBe(`config (from ${missing}): cannot read: ENOENT`);

    const bad = await writeYaml("node:\n  id: n1\n  id: n2\n");
    const syntax = configError(() => loadConfig({ file: bad, env: {}, flags: {} }));
    expect(syntax.code).toBe(ConfigErrorCode.FileSyntax);
    expect(syntax.message).toMatch(
      new RegExp(`^config \\(from ${escapeRegExp(bad)}:3\\): invalid YAML`),
    );

    const list = await writeYaml("- a\n- b\n");
    expect(configError(() => loadConfig({ file: list, env: {}, flags: {} })).code).toBe(
      ConfigErrorCode.FileSyntax,
    );
  });

  it("reports a mapping given as a scalar", async () => {
    const file = await writeYaml("node: {id: n1}\nspool: {dir: /s}\ngrpc: 7401\n");
    expect(configError(() => loadConfig({ file, env: {}, flags: {} })).message).toBe(
      `config: grpc (from ${file}:3): expected a mapping of keys, got 7401`,
    );
  });
});

describe("docs/configuration.md", () => {
  it("documents every key with its env var and flag", async () => {
    const docs = await readFile(new URL("../../../docs/configuration.md", import.meta.url), "utf8");
    const undocumented = configKeys().filter(
      (k) => !docs.includes(`\`${k.key}\``) || !docs.includes(k.env) || !docs.includes(k.flag),
    );
    expect(undocumented.map((k) => k.key)).toEqual([]);
  });

  it("has an example file that loads", async () => {
    const docs = await readFile(new URL("../../../docs/configuration.md", import.meta.url), "utf8");
    const example = /```yaml\n([\s\S]*?)```/.exec(docs)?.[1];
    expect(example).toBeDefined();
    const file = await writeYaml(example ?? "", "eu-1.yaml");
    await mkdir(join(dir.path, "certs"));
    await mkdir(join(dir.path, "secrets"));
    for (const name of ["eu-1.crt", "eu-1.key", "ca.crt"]) {
      await writeFile(join(dir.path, "certs", name), "pem");
    }
    for (const name of ["uploader", "worker", "operator"]) {
      await writeFile(join(dir.path, "secrets", `${name}.token`), `${name}-secret\n`);
    }
    const config = loadConfig({ file, env: {}, flags: {}, require: ["postgres.url"] });
    expect(config.grpc.tls.clientCa).toBe(join(dir.path, "certs/ca.crt"));
    expect(config.auth.tokens.map((t) => t.token)).toEqual([
      "uploader-secret",
      "worker-secret",
      "operator-secret",
    ]);
    expect(config.peers.map((p) => p.id)).toEqual(["us-1", "ap-1"]);
    expect(configWarnings(config)).toEqual([]);
  });
});
