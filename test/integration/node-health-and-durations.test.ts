import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import type { RunningNode } from "../../src/node/node.js";
import { SpoolClient } from "../../src/proto/service-definition.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * `auth.allowUnauthenticatedHealth: false` makes grpc.health.v1 ask for a token like every
 * other call; Dequeue refuses a zero or negative lease and a negative wait instead of
 * silently using the default.
 */
const TOKEN = "worker-token-0123456789";
const HealthClient = grpc.makeClientConstructor(healthService, "grpc.health.v1.Health");

type Unary = (
  req: object,
  md: grpc.Metadata,
  cb: (err: grpc.ServiceError | null, res?: { status?: string }) => void,
) => void;

function healthCheck(port: number, token?: string): Promise<string> {
  const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token) md.set("authorization", `Bearer ${token}`);
  return new Promise<string>((resolve, reject) => {
    (client as unknown as { check: Unary }).check({ service: "" }, md, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res?.status ?? "");
    });
  });
}

function healthWatch(port: number): Promise<grpc.ServiceError | string> {
  const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    const call = (
      client as unknown as { watch(req: object): grpc.ClientReadableStream<{ status: string }> }
    ).watch({ service: "" });
    call.on("data", (m) => {
      call.cancel();
      client.close();
      resolve(m.status);
    });
    call.on("error", (err: grpc.ServiceError) => {
      client.close();
      resolve(err);
    });
  });
}

describe("health authentication and Dequeue durations", () => {
  const dir = useSuiteTempDir("geospool-health-durations-");
  let pg: TestPostgres[] = [];
  let closed: RunningNode;
  let open: RunningNode;

  beforeAll(async () => {
    pg = await startPostgresServers(1, { dir: dir.path });
    const tokens = [
      { name: "worker", token: TOKEN, permissions: [{ queues: ["*"], actions: ["admin"] }] },
    ];
    closed = await startTestNode({
      id: "closed",
      dir: dir.path,
      postgresUrl: pg[0]!.url,
      config: { auth: { tokens, allowUnauthenticatedHealth: false } },
    });
    open = await startTestNode({
      id: "open",
      dir: dir.path,
      postgresUrl: pg[0]!.url.replace(/\/geospool$/, "/postgres"),
      config: { auth: { tokens } },
    });
  }, 120_000);

  afterAll(async () => {
    await closed?.stop();
    await open?.stop();
    await stopPostgresServers(pg);
  }, 60_000);

  it("health needs a token unless allowUnauthenticatedHealth", async () => {
    await expect(healthCheck(closed.grpcPort)).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
    });
    await expect(healthCheck(closed.grpcPort, "wrong-token-0123456789")).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
    });
    expect(await healthCheck(closed.grpcPort, TOKEN)).toBe("SERVING");
    const watched = await healthWatch(closed.grpcPort);
    expect(watched).toMatchObject({ code: grpc.status.UNAUTHENTICATED });

    expect(await healthCheck(open.grpcPort)).toBe("SERVING");
    expect(await healthWatch(open.grpcPort)).toBe("SERVING");
    // HTTP health never needs a token.
    expect((await fetch(`http://127.0.0.1:${closed.httpPort}/healthz`)).status).toBe(200);
  });

  it("Dequeue refuses a zero or negative lease and a negative wait, changing nothing", async () => {
    const client = new GeospoolClient({
      endpoints: [`127.0.0.1:${open.grpcPort}`],
      token: TOKEN,
      retryForMs: 0,
    });
    const raw = new SpoolClient(`127.0.0.1:${open.grpcPort}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${TOKEN}`);
    const dequeue = (req: object) =>
      new Promise<{ code: number; details: string } | { entryName: string }>((resolve) =>
        raw.dequeue({ queue: "inbox", ...req }, md, (err, res) =>
          resolve(err ? err : { entryName: res?.entry?.name ?? "" }),
        ),
      );
    try {
      const { entry } = await client.enqueue("inbox", "payload");
      for (const lease of [
        { seconds: 0, nanos: 0 },
        { seconds: -5, nanos: 0 },
        { seconds: 0, nanos: -1_000_000 },
      ]) {
        const r = await dequeue({ lease });
        expect(r).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
        expect((r as { details: string }).details).toMatch(/lease/);
      }
      const negativeWait = await dequeue({ wait: { seconds: -1, nanos: 0 } });
      expect(negativeWait).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
      expect((negativeWait as { details: string }).details).toMatch(/wait/);
      // Nothing was checked out by the refused calls.
      expect((await client.stat(entry.name)).state).toBe("queued");
      expect((await client.stat(entry.name)).entry.attempts).toBe(0);
      // A zero wait means "do not wait"; an absent lease means the default.
      const ok = await dequeue({ wait: { seconds: 0, nanos: 0 } });
      expect(ok).toEqual({ entryName: entry.name });
      const held = await client.stat(entry.name);
      expect(held.state).toBe("checked_out");
    } finally {
      raw.close();
      client.close();
    }
  });
});
