import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BASE_ENV, configError, writeYamlIn } from "../../../test/helpers/config.js";
import { useTempDir } from "../../../test/helpers/tmp.js";
import {
  ConfigErrorCode,
  configWarnings,
  loadConfig,
  parseConfig,
  REDACTED,
  redactConfig,
} from "./index.js";

// Rules across keys, tokens read from files, redaction and warnings (config.test.ts has
// the units, defaults, sources and the file).

const dir = useTempDir("geospool-config-rules-");
const writeYaml = (text: string, name?: string) => writeYamlIn(dir.path, text, name);

describe("cross-field rules", () => {
  const base = { node: { id: "n1" }, spool: { dir: "/s" } };
  const check = (values: Record<string, unknown>) =>
    configError(() => parseConfig({ ...base, ...values }));

  it("deadLetterQueue must be one of spool.queues", () => {
    const err = check({ spool: { dir: "/s", leases: { deadLetterQueue: "graveyard" } } });
    expect(err.message).toBe(
      'config: spool.leases.deadLetterQueue (from config object): must be one of spool.queues (inbox, outbox, dead), got "graveyard"',
    );
    const ok = parseConfig({ ...base, spool: { dir: "/s", leases: { deadLetterQueue: "dead" } } });
    expect(ok.spool.leases.deadLetterQueue).toBe("dead");
  });

  it("queues are unique and non-empty", () => {
    expect(check({ spool: { dir: "/s", queues: ["a", "a"] } }).key).toBe("spool.queues[1]");
    expect(check({ spool: { dir: "/s", queues: [] } }).key).toBe("spool.queues");
  });

  it("TLS cert and key go together; mTLS needs a CA and TLS", async () => {
    const cert = join(dir.path, "cert.pem");
    await writeFile(cert, "x");
    expect(check({ grpc: { tls: { cert } } }).message).toBe(
      "config: grpc.tls.cert (from config object): needs grpc.tls.key as well (cert and key go together)",
    );
    expect(check({ grpc: { tls: { key: cert } } }).key).toBe("grpc.tls.key");
    expect(check({ grpc: { tls: { clientCa: cert } } }).key).toBe("grpc.tls.clientCa");
    const err = check({ grpc: { tls: { cert, key: cert, requireClientCert: true } } });
    expect(err.message).toBe(
      "config: grpc.tls.requireClientCert (from config object): needs grpc.tls.clientCa to check clients against",
    );
    const missing = check({ grpc: { tls: { cert, key: join(dir.path, "nope.pem") } } });
    expect(missing.code).toBe(ConfigErrorCode.FileUnreadable);
    expect(missing.key).toBe("grpc.tls.key");
    const ok = parseConfig({
      ...base,
      grpc: { tls: { cert, key: cert, clientCa: cert, requireClientCert: "true" } },
    });
    expect(ok.grpc.tls).toEqual({ cert, key: cert, clientCa: cert, requireClientCert: true });
  });

  it("limits: from every source; a List page fits a message and an entry fits a page", () => {
    const config = loadConfig({
      env: {
        ...BASE_ENV,
        GEOSPOOL_LIMITS__ENTRY_DATA_SIZE: "1GiB",
        GEOSPOOL_LIMITS__UPLOAD_IDLE_TIMEOUT: "90s",
      },
      flags: { "limits.max-concurrent-uploads": "8", "limits.listPageBytes": "1MiB" },
    });
    expect(config.limits).toEqual({
      entryDataSize: 1024 ** 3,
      metadataSize: 256 * 1024,
      uploadIdleTimeout: 90_000,
      maxConcurrentUploads: 8,
      listPageBytes: 1024 * 1024,
      maxBatchEntries: 1000,
      maxBatchBytes: 2 * 1024 * 1024,
    });
    expect(check({ limits: { maxConcurrentUploads: 0 } }).message).toBe(
      "config: limits.maxConcurrentUploads (from config object): must be at least 1, got 0",
    );
    expect(check({ limits: { uploadIdleTimeout: "0s" } }).key).toBe("limits.uploadIdleTimeout");
    expect(check({ limits: { listPageBytes: "4MiB" } }).message).toBe(
      "config: limits.listPageBytes (from config object): must leave 65536 bytes of grpc.maxMessageBytes (4194304) for the rest of a page, got 4194304",
    );
    expect(check({ limits: { metadataSize: "1MiB" } }).message).toBe(
      "config: limits.metadataSize (from config object): must be at most limits.listPageBytes (524288): every entry must fit in a List page, got 1048576",
    );
    expect(check({ limits: { maxBatchBytes: "4MiB" } }).message).toBe(
      "config: limits.maxBatchBytes (from config object): with 512 bytes per entry for its queue, key and framing (limits.maxBatchEntries = 1000), must fit in grpc.maxMessageBytes (4194304), got 4194304",
    );
    expect(check({ limits: { maxBatchEntries: 0 } }).key).toBe("limits.maxBatchEntries");
    const big = parseConfig({
      ...base,
      grpc: { maxMessageBytes: "16MiB" },
      limits: { listPageBytes: "4MiB", metadataSize: "1MiB" },
    });
    expect(big.limits.listPageBytes).toBe(4 * 1024 * 1024);
  });

  it("gRPC and HTTP cannot share an address", () => {
    expect(check({ http: { listen: "127.0.0.1:7401" } }).key).toBe("http.listen");
    const ok = parseConfig({
      ...base,
      grpc: { listen: "127.0.0.1:0" },
      http: { listen: "127.0.0.1:0" },
    });
    expect(ok.http.listen).toBe("127.0.0.1:0");
  });

  it("tokens: exactly one of token and tokenFile, unique names, known queues", () => {
    const perm = [{ queues: ["*"], actions: ["admin"] }];
    expect(check({ auth: { tokens: [{ name: "a", permissions: perm }] } }).message).toBe(
      "config: auth.tokens[0] (from config object): needs exactly one of token and tokenFile",
    );
    expect(
      check({ auth: { tokens: [{ name: "a", token: "x", tokenFile: "/t", permissions: perm }] } })
        .key,
    ).toBe("auth.tokens[0]");
    expect(
      check({
        auth: {
          tokens: [
            { name: "a", token: "x", permissions: perm },
            { name: "a", token: "y", permissions: perm },
          ],
        },
      }).key,
    ).toBe("auth.tokens[1].name");
    const unknownQueue = check({
      auth: {
        tokens: [
          {
            name: "a",
            token: "x",
            permissions: [{ queues: ["inbox", "inbx"], actions: ["enqueue"] }],
          },
        ],
      },
    });
    expect(unknownQueue.key).toBe("auth.tokens[0].permissions[0].queues[1]");
    expect(
      check({
        auth: {
          tokens: [
            {
              name: "a",
              token: "x",
              permissions: [{ queues: ["*", "inbox"], actions: ["admin"] }],
            },
          ],
        },
      }).key,
    ).toBe("auth.tokens[0].permissions[0].queues");
    expect(
      check({
        auth: {
          tokens: [{ name: "a", token: "x", permissions: [{ queues: ["*"], actions: [] }] }],
        },
      }).key,
    ).toBe("auth.tokens[0].permissions[0].actions");
    expect(check({ auth: { tokens: [{ name: "a", token: "x" }] } }).message).toMatch(
      /^config: auth.tokens\[0\].permissions \(from config object\): required/,
    );
  });

  it("peers: unique ids, never this node", () => {
    expect(check({ peers: [{ id: "n1", grpc: "127.0.0.1:7402" }] }).key).toBe("peers[0].id");
    expect(
      check({
        peers: [
          { id: "n2", grpc: "127.0.0.1:7402" },
          { id: "n2", grpc: "127.0.0.1:7403" },
        ],
      }).key,
    ).toBe("peers[1].id");
    expect(check({ peers: [{ id: "n2", grpc: "127.0.0.1:0" }] }).key).toBe("peers[0].grpc");
  });
});

describe("tokens from files, redaction and warnings", () => {
  it("reads tokenFile relative to the config file, trimmed", async () => {
    await writeFile(join(dir.path, "ci.token"), "s3cret-from-file\n");
    const file = await writeYaml(
      [
        "node: {id: n1}",
        "spool: {dir: /s}",
        "postgres: {url: 'postgres://geo:hunter2@127.0.0.1/geo'}",
        "auth:",
        "  tokens:",
        "    - {name: ci, tokenFile: ci.token, permissions: [{queues: [inbox], actions: [enqueue, dequeue]}]}",
        "    - {name: ops, token: inline-secret, permissions: [{queues: ['*'], actions: [admin]}]}",
      ].join("\n"),
    );
    const config = loadConfig({ file, env: {}, flags: {} });
    expect(config.auth.tokens[0]).toEqual({
      name: "ci",
      token: "s3cret-from-file",
      tokenFile: join(dir.path, "ci.token"),
      permissions: [{ queues: ["inbox"], actions: ["enqueue", "dequeue"] }],
    });

    const redacted = redactConfig(config);
    const text = JSON.stringify(redacted);
    expect(text).not.toContain("s3cret-from-file");
    expect(text).not.toContain("inline-secret");
    expect(text).not.toContain("hunter2");
    expect(redacted.auth.tokens[1]?.token).toBe(REDACTED);
    expect(redacted.postgres.url).toBe("postgres://geo:***@127.0.0.1/geo");
    expect(config.auth.tokens[1]?.token).toBe("inline-secret");
    expect(configWarnings(config)).toEqual([]);
  });

  it("names the token whose file cannot be read", async () => {
    const file = await writeYaml(
      "node: {id: n1}\nspool: {dir: /s}\nauth:\n  tokens:\n    - {name: ci, tokenFile: gone.token, permissions: [{queues: ['*'], actions: [admin]}]}\n",
    );
    const err = configError(() => loadConfig({ file, env: {}, flags: {} }));
    expect(err.code).toBe(ConfigErrorCode.FileUnreadable);
    expect(err.message).toBe(
      `config: auth.tokens[0].tokenFile (from ${file}:5): cannot read ${JSON.stringify(join(dir.path, "gone.token"))}: ENOENT`,
    );
  });

  it("warns when auth is disabled or gRPC is exposed in clear text", () => {
    const open = parseConfig({
      node: { id: "n1" },
      spool: { dir: "/s" },
      grpc: { listen: "0.0.0.0:7401" },
    });
    const warnings = configWarnings(open);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^auth.tokens is empty/);
    expect(warnings[1]).toMatch(/^grpc.tls is not configured/);
  });
});
