import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { makeDevCerts } from "../../src/node/certs/index.js";
import { ClientError, GeospoolClient } from "../../src/node/client/geospool-client.js";
import type { RunningNode } from "../../src/node/node.js";
import { SpoolClient } from "../../src/proto/service-definition.js";
import { listingsOf } from "../helpers/listings.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

const exec = promisify(execFile);
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

const dir = useSuiteTempDir("geospool-node-");
let pg: TestPostgres[] = [];
let node: RunningNode;
let client: GeospoolClient;

beforeAll(async () => {
  pg = await startPostgresServers(1, { dir: dir.path });
  node = await startTestNode({ id: "n1", dir: dir.path, postgresUrl: pg[0]!.url });
  client = new GeospoolClient({ endpoints: [`127.0.0.1:${node.grpcPort}`], retryForMs: 2_000 });
});

afterAll(async () => {
  client?.close();
  await node?.stop();
  await stopPostgresServers(pg);
});

describe("node over gRPC", () => {
  it("every RPC end to end", async () => {
    const data = Buffer.alloc(700_000, 7);
    const { entry } = await client.enqueue("inbox", data, { metadata: '{"job":1}' });
    expect(entry.dataSize).toBe(data.length);
    expect(entry.dataSha256).toBe(sha(data));
    expect((await client.stat(entry.name)).state).toBe("queued");
    const page = await client.list("inbox");
    expect(page.entries.map((e) => e.name)).toContain(entry.name);
    const read = await client.readData(entry.name);
    expect(read.data.equals(data)).toBe(true);
    expect(read.sha256).toBe(sha(data));
    const tail = await client.readData(entry.name, { offset: 699_990 });
    expect(tail.data.length).toBe(10);

    const lease = await client.dequeue("inbox", { leaseMs: 30_000 });
    expect(lease?.entry.name).toBe(entry.name);
    expect(lease?.entry.metadata.toString()).toBe('{"job":1}');
    expect((await client.stat(entry.name)).state).toBe("checked_out");
    expect(await client.extendLease(lease!, 60_000)).toBeGreaterThan(Date.now() + 50_000);
    const released = await client.release(lease!);
    expect(released).toEqual({ queue: "inbox", attempts: 1 });
    const again = await client.dequeue("inbox");
    const saved = await client.save(again!, "outbox", "done");
    expect(saved.queue).toBe("outbox");
    const last = await client.dequeue("outbox");
    await client.remove(last!);
    await expect(client.stat(entry.name)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });

    const status = await client.clusterStatus();
    expect(status.nodeId).toBe("n1");
    expect(status.queues.map((q) => q.queue)).toEqual(["inbox", "outbox", "dead"]);
  });

  it("a retried enqueue with the same idempotency key returns the first entry", async () => {
    const a = await client.enqueue("inbox", "once", { idempotencyKey: "key-1" });
    const b = await client.enqueue("inbox", "once", { idempotencyKey: "key-1" });
    expect(b.deduplicated).toBe(true);
    expect(b.entry.name).toBe(a.entry.name);
    const lease = await client.dequeue("inbox");
    await client.remove(lease!);
    // Consumed and removed: still a duplicate within the window.
    const c = await client.enqueue("inbox", "once", { idempotencyKey: "key-1" });
    expect(c.deduplicated).toBe(true);
    expect(await client.dequeue("inbox")).toBeUndefined();
    // Two enqueues racing with one key: one entry; the other call gets it back.
    const [x, y] = await Promise.all([
      client.enqueue("inbox", "race", { idempotencyKey: "key-2" }),
      client.enqueue("inbox", "race", { idempotencyKey: "key-2" }),
    ]);
    expect(x.entry.name).toBe(y.entry.name);
    expect([x.deduplicated, y.deduplicated].sort()).toEqual([false, true]);
    const only = await client.dequeue("inbox");
    expect(only?.entry.name).toBe(x.entry.name);
    await client.remove(only!);
    expect(await client.dequeue("inbox")).toBeUndefined();
    expect(await readdir(join(node.spool.dir, ".tmp"))).toEqual([]);
  });

  it("dequeue waits and is woken by an enqueue; Watch streams transitions", async () => {
    const ac = new AbortController();
    const kinds: number[] = [];
    let established!: () => void;
    const watchEstablished = new Promise<void>((resolve) => {
      established = resolve;
    });
    const watching = (async () => {
      for await (const e of client.watch(["outbox"], ac.signal, { onEstablished: established })) {
        kinds.push(e.kind);
        if (kinds.length === 2) ac.abort();
      }
    })();
    await watchEstablished;
    // The enqueue comes once the Dequeue has found the queue empty: only the wake-up can
    // deliver it (the wait is 50 s; the test's 60 s timeout would catch a missed wake-up).
    const listings = listingsOf(node.spool, "outbox");
    try {
      const waiting = client.dequeue("outbox", { waitMs: 50_000 });
      await listings.emptySeen;
      const t0 = Date.now();
      await client.enqueue("outbox", "late");
      const lease = await waiting;
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(lease?.entry.dataSize).toBe(4);
      await client.remove(lease!);
    } finally {
      listings.restore();
    }
    await watching;
    expect(kinds).toEqual([1, 2]); // ENQUEUED, CHECKED_OUT
  });

  it("bad input gets a clear status and leaves nothing", async () => {
    const before = (await readdir(join(node.spool.dir, ".registry"))).length;
    await expect(client.enqueue("nope", "x")).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    await expect(client.enqueue("../etc", "x")).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    });
    await expect(client.enqueue("inbox", "x", { dataSha256: sha("y") })).rejects.toMatchObject({
      code: grpc.status.DATA_LOSS,
    });
    await expect(client.stat("../../etc/passwd")).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    });
    await expect(client.readData("absent")).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
    await expect(
      client.readData((await client.enqueue("inbox", "abc")).entry.name, { offset: 10 }),
    ).rejects.toMatchObject({
      code: grpc.status.OUT_OF_RANGE,
    });
    const raw = new SpoolClient(`127.0.0.1:${node.grpcPort}`, grpc.credentials.createInsecure());
    // A header-less stream, and a client that disconnects mid-upload.
    const noHeader = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = raw.enqueue((err) => resolve(err));
      call.write({ chunk: Buffer.from("data first") });
      call.end();
    });
    expect(noHeader?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const noCommit = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = raw.enqueue((err) => resolve(err));
      call.write({ header: { queue: "inbox", metadata: Buffer.alloc(0) } });
      call.write({ chunk: Buffer.from("all of it, but no commit") });
      call.end();
    });
    expect(noCommit?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noCommit?.details).toMatch(/without a commit/);
    const cancelled = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = raw.enqueue((err) => resolve(err));
      call.write({ header: { queue: "inbox", metadata: Buffer.alloc(0) } });
      call.write({ chunk: Buffer.alloc(100_000, 1) });
      setTimeout(() => call.cancel(), 100);
    });
    expect(cancelled?.code).toBe(grpc.status.CANCELLED);
    raw.close();
    // Only the "abc" entry was added; the cancelled upload left nothing, once the server has
    // seen the cancellation.
    await vi.waitFor(
      async () => {
        const regs = await readdir(join(node.spool.dir, ".registry"));
        const located = await Promise.all(regs.map(async (n) => [n, await node.spool.locate(n)]));
        expect(located.filter(([, where]) => !where)).toEqual([]);
        expect(regs.length).toBe(before + 1);
        expect(await readdir(join(node.spool.dir, ".tmp"))).toEqual([]);
      },
      { timeout: 10_000, interval: 50 },
    );
    const names = (await readdir(join(node.spool.dir, "inbox"))).filter((n) => n !== ".checkout");
    for (const n of names) expect((await client.stat(n)).entry.dataSize).toBeGreaterThan(0);
  });

  it("oversized messages are refused and leave nothing; no file descriptors leak", async () => {
    const raw = new SpoolClient(`127.0.0.1:${node.grpcPort}`, grpc.credentials.createInsecure(), {
      "grpc.max_send_message_length": 64 * 1024 * 1024,
    });
    const before = await readdir(join(node.spool.dir, ".registry"));
    const tooBig = await new Promise<grpc.ServiceError | null>((resolve) => {
      const call = raw.enqueue((err) => resolve(err));
      call.write({ header: { queue: "inbox", metadata: Buffer.alloc(0) } });
      call.write({ chunk: Buffer.alloc(5 * 1024 * 1024, 1) }); // over the 4 MiB limit
      call.write({ commit: {} });
      call.end();
    });
    expect(tooBig?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    await vi.waitFor(
      async () => expect(await readdir(join(node.spool.dir, ".registry"))).toEqual(before),
      { timeout: 10_000, interval: 50 },
    );

    const fds = async () => (await readdir("/proc/self/fd")).length;
    const start = await fds();
    for (let i = 0; i < 40; i++) {
      const { entry } = await client.enqueue("outbox", Buffer.alloc(1000, i));
      await client.readData(entry.name, { offset: 10 });
      await client.stat(entry.name);
      await expect(client.readData("missing-entry")).rejects.toBeDefined();
      const lease = await client.dequeue("outbox");
      await client.remove(lease!);
      await new Promise<void>((resolve) => {
        const call = raw.enqueue(() => resolve());
        call.write({ header: { queue: "inbox", metadata: Buffer.alloc(0) } });
        call.write({ chunk: Buffer.alloc(10_000, 3) });
        setTimeout(() => call.cancel(), 5);
      });
    }
    raw.close();
    // Every file the spool opened was closed (once the cancelled calls have ended): no growth
    // beyond a few sockets' worth.
    await vi.waitFor(async () => expect(await fds()).toBeLessThanOrEqual(start + 4), {
      timeout: 10_000,
      interval: 50,
    });
    expect(await readdir(join(node.spool.dir, ".tmp"))).toEqual([]);
  });

  it("a stock client (buf curl) lists and calls the service through reflection, and health", async () => {
    const base = `http://127.0.0.1:${node.grpcPort}`;
    const buf = (...args: string[]) =>
      exec("npx", ["buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
        timeout: 30_000,
      });
    const services = await buf("--list-services", base);
    expect(services.stdout).toContain("geospool.v1.Spool");
    const health = await buf(`${base}/grpc.health.v1.Health/Check`);
    expect(JSON.parse(health.stdout).status).toBe("SERVING");
    const status = await buf(`${base}/geospool.v1.Spool/ClusterStatus`);
    expect(JSON.parse(status.stdout).nodeId).toBe("n1");
  });

  it("serves /metrics, /healthz and /readyz", async () => {
    const base = `http://127.0.0.1:${node.httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/geospool_queue_depth\{.*queue="inbox".*\}/);
    expect(text).toMatch(/geospool_operations_total\{.*op="enqueue"/);
    expect(text).toMatch(/geospool_grpc_requests_total\{.*method="Enqueue"/);
  });
});

describe("node security", () => {
  it("a node's database is its own: another node id is refused", async () => {
    const err = await startTestNode({
      id: "intruder",
      dir: dir.path,
      postgresUrl: pg[0]!.url,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/belongs to node "n1"/);
  });

  it("refuses missing and wrong tokens and unpermitted queues, changing nothing; TLS and mTLS", async () => {
    const certs = await makeDevCerts({ dir: join(dir.path, "certs"), nodes: ["sec"] });
    const secure = await startTestNode({
      id: "sec",
      dir: dir.path,
      postgresUrl: pg[0]!.url.replace(/\/geospool$/, "/postgres"),
      config: {
        grpc: {
          tls: {
            cert: certs.servers.sec!.cert,
            key: certs.servers.sec!.key,
            clientCa: certs.caCert,
            requireClientCert: true,
          },
        },
        auth: {
          tokens: [
            {
              name: "producer",
              token: "producer-token-000000",
              permissions: [{ queues: ["inbox"], actions: ["enqueue"] }],
            },
            {
              name: "ops",
              token: "ops-token-00000000000",
              permissions: [{ queues: ["*"], actions: ["admin"] }],
            },
          ],
        },
      },
    });
    const endpoints = [`127.0.0.1:${secure.grpcPort}`];
    const tls = { ca: certs.caCert, cert: certs.client.cert, key: certs.client.key };
    const opts = { endpoints, retryForMs: 0, callTimeoutMs: 3_000 };
    const anon = new GeospoolClient({ ...opts, tls });
    const wrong = new GeospoolClient({ ...opts, tls, token: "not-a-real-token-000" });
    const producer = new GeospoolClient({ ...opts, tls, token: "producer-token-000000" });
    const ops = new GeospoolClient({ ...opts, tls, token: "ops-token-00000000000" });
    const noClientCert = new GeospoolClient({
      ...opts,
      tls: { ca: certs.caCert },
      token: "ops-token-00000000000",
    });
    const plaintext = new GeospoolClient({ ...opts, token: "ops-token-00000000000" });
    try {
      await expect(anon.enqueue("inbox", "x")).rejects.toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
      });
      await expect(wrong.list("inbox")).rejects.toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
      });
      await expect(producer.enqueue("outbox", "x")).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
      });
      await expect(producer.dequeue("inbox")).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
      });
      await expect(producer.clusterStatus()).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
      });
      const ok = await producer.enqueue("inbox", "allowed");
      expect(ok.deduplicated).toBe(false);
      // The refused calls changed nothing: one entry in inbox, none in outbox.
      expect((await ops.list("inbox")).entries.map((e) => e.name)).toEqual([ok.entry.name]);
      expect((await ops.list("outbox")).entries).toEqual([]);
      expect((await ops.clusterStatus()).nodeId).toBe("sec");
      // mTLS: no client certificate, or no TLS at all, never reaches the service.
      const e1 = await noClientCert.list("inbox").catch((e) => e);
      expect(e1).toBeInstanceOf(ClientError);
      expect(e1.code).toBe(grpc.status.UNAVAILABLE);
      const e2 = await plaintext.list("inbox").catch((e) => e);
      expect(e2.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      for (const c of [anon, wrong, producer, ops, noClientCert, plaintext]) c.close();
      await secure.stop();
    }
  });
});
