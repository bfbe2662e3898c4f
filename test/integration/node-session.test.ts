import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import type { RunningNode } from "../../src/node/node.js";
import type { geospool } from "../../src/proto/generated/spool.js";
import { SpoolClient, spoolServiceDefinition } from "../../src/proto/service-definition.js";
import { eventually } from "../helpers/cluster.js";
import { metricSample } from "../helpers/metrics-text.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * The Session RPC on a real node: calls as messages on one stream, answered by id in the
 * order they finish, each with its RPC's checks and answers; a bad request fails alone; a
 * cancel ends a waiting Dequeue; the stream ends when the client ends it, or when the
 * node stops, without holding up the drain. And GeospoolClient with `session` doing a
 * worker's job over it.
 */
const WORKER = "worker-token-0123456789";

type Answer = geospool.v1.SessionResponse;
type Request = geospool.v1.SessionRequest.$Properties;

/** A raw Session stream: send requests, wait for the answer to an id, see how it ended. */
class RawSession {
  private readonly answers = new Map<number, Answer>();
  private readonly waiters = new Map<number, (a: Answer) => void>();
  readonly order: number[] = [];
  readonly ended: Promise<{ code: grpc.status; details: string }>;
  readonly stream: grpc.ClientDuplexStream<Request, Answer>;

  constructor(client: SpoolClient, token: string) {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${token}`);
    this.stream = client.session(md);
    this.stream.on("data", (a: Answer) => {
      const id = Number(a.id);
      this.order.push(id);
      this.answers.set(id, a);
      this.waiters.get(id)?.(a);
    });
    this.ended = new Promise((resolve) => {
      this.stream.on("status", (s: grpc.StatusObject) =>
        resolve({ code: s.code, details: s.details }),
      );
      this.stream.on("error", () => undefined);
    });
  }

  send(req: Request): void {
    this.stream.write(req);
  }

  answer(id: number): Promise<Answer> {
    const got = this.answers.get(id);
    if (got) return Promise.resolve(got);
    return new Promise((resolve) => this.waiters.set(id, resolve));
  }
}

describe("Session", () => {
  const dir = useSuiteTempDir("geospool-session-");
  let pg: TestPostgres[] = [];
  let node: RunningNode;
  let raw: SpoolClient;
  let reader: GeospoolClient;

  const metric = async (method: string, code: string) => {
    const text = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
    return metricSample(text, "geospool_grpc_requests_total", { method, code }) ?? 0;
  };

  beforeAll(async () => {
    pg = await startPostgresServers(1, { dir: dir.path });
    node = await startTestNode({
      id: "n1",
      dir: dir.path,
      postgresUrl: (pg[0] as TestPostgres).url,
      config: {
        spool: { queues: ["inbox", "done", "secret", "dead"] },
        auth: {
          tokens: [
            {
              name: "worker",
              token: WORKER,
              permissions: [{ queues: ["inbox", "done"], actions: ["enqueue", "dequeue"] }],
            },
          ],
        },
      },
    });
    const endpoint = `127.0.0.1:${node.grpcPort}`;
    raw = new SpoolClient(endpoint, grpc.credentials.createInsecure());
    reader = new GeospoolClient({ endpoints: [endpoint], token: WORKER, retryForMs: 0 });
  }, 120_000);

  afterAll(async () => {
    raw?.close();
    reader?.close();
    await node?.stop();
    await stopPostgresServers(pg);
  }, 60_000);

  it("answers each request by id as it finishes, each as its RPC would; a bad one fails alone", async () => {
    const s = new RawSession(raw, WORKER);
    // A Dequeue that waits: answered only after the enqueue sent after it.
    s.send({ id: 1, dequeue: { queue: "inbox", wait: { seconds: 20 } } });
    s.send({ id: 2, enqueueBatch: { entries: [{ queue: "inbox", data: Buffer.from("job") }] } });
    const enq = await s.answer(2);
    expect(enq.result).toBe("enqueueBatch");
    const made = enq.enqueueBatch?.results?.[0]?.entry?.name ?? "";
    expect(made).not.toBe("");
    const deq = await s.answer(1);
    expect(deq.result).toBe("dequeue");
    expect(deq.dequeue?.entry?.name).toBe(made);
    const token = deq.dequeue?.leaseToken ?? "";

    // Refusals, each alone, with its RPC's status and the node's own code.
    s.send({ id: 3, dequeue: { queue: "secret" } });
    s.send({ id: 4, dequeue: { queue: "nosuch" } });
    s.send({ id: 5, complete: { queue: "inbox", name: made, leaseToken: "wrong" } });
    s.send({ id: 6 });
    const [denied, missing, stale, empty] = (await Promise.all(
      [3, 4, 5, 6].map((i) => s.answer(i)),
    )) as [Answer, Answer, Answer, Answer];
    expect(denied.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.error?.serviceCode).toBe("permission_denied");
    expect(missing.error?.code).toBe(grpc.status.PERMISSION_DENIED); // not readable by worker
    expect(stale.error?.code).toBe(grpc.status.INVALID_ARGUMENT); // no action given
    expect(empty.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(empty.error?.message).toMatch(/needs a call/);

    // The stream went on: extend, then complete (remove) with the next checkout taken.
    s.send({
      id: 7,
      extendLease: { queue: "inbox", name: made, leaseToken: token, lease: { seconds: 60 } },
    });
    expect((await s.answer(7)).extendLease?.leaseUntil).toBeTruthy();
    s.send({ id: 8, complete: { queue: "inbox", name: made, leaseToken: token, remove: {} } });
    expect((await s.answer(8)).result).toBe("complete");
    const st = await reader.stat(made).catch((err: { code?: number }) => err.code);
    expect(st).toBe(grpc.status.NOT_FOUND);

    // An id under way twice: the second is refused, the first still answered.
    s.send({ id: 9, dequeue: { queue: "inbox", wait: { seconds: 20 } } });
    s.send({ id: 9, dequeue: { queue: "inbox" } });
    const dup = await s.answer(9);
    expect(dup.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(dup.error?.message).toMatch(/already under way/);
    // A cancel ends the waiting Dequeue at once, with no entry.
    s.order.length = 0;
    s.send({ id: 10, cancel: 9 });
    await eventually("the cancelled Dequeue's answer", () => s.order.includes(9));

    s.stream.end();
    expect(await s.ended).toMatchObject({ code: grpc.status.OK });
  });

  it("refuses a stream with a bad token, and answers a worker's rights per request", async () => {
    const bad = new RawSession(raw, "not-a-token-at-all-xxxxxx");
    bad.send({ id: 1, dequeue: { queue: "inbox" } });
    expect((await bad.ended).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it("GeospoolClient with session does a worker's job on one stream per node", async () => {
    const endpoint = `127.0.0.1:${node.grpcPort}`;
    // A stream's end is counted once, OK or CANCELLED (a cancel may end its input first).
    const streams = async () =>
      (await metric("Session", "OK")) + (await metric("Session", "CANCELLED"));
    const before = await streams();
    const unaryBefore = await metric("Complete", "OK");
    const c = new GeospoolClient({ endpoints: [endpoint], token: WORKER, session: true });
    const names: string[] = [];
    for (let i = 0; i < 5; i++) names.push((await c.enqueue("inbox", `job ${i}`)).entry.name);
    let lease = await c.dequeue("inbox");
    const done: string[] = [];
    while (lease) {
      done.push(lease.entry.name);
      lease = (await c.completeThenDequeue(lease, { remove: true }, { waitMs: 0 })).next;
    }
    expect(done).toEqual(names);
    // A refusal is the RPC's, as a ClientError.
    await expect(c.dequeue("secret")).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });
    // Five completes counted as calls (the same label as the RPC); the stream counted once it ends.
    expect((await metric("Complete", "OK")) - unaryBefore).toBe(5);
    c.close();
    await eventually("the Session stream's end", async () => (await streams()) === before + 1);
  });

  it("falls back to calls against a node without Session", async () => {
    // An older node: the service without the Session method; Dequeue answers "nothing".
    const { session: _, ...older } = spoolServiceDefinition;
    const server = new grpc.Server();
    let dequeues = 0;
    server.addService(older, {
      dequeue: (_call: unknown, cb: grpc.sendUnaryData<object>) => {
        dequeues++;
        cb(null, { leaseToken: "" });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const c = new GeospoolClient({ endpoints: [`127.0.0.1:${port}`], retryForMs: 0 });
    try {
      expect(await c.dequeue("inbox")).toBeUndefined();
      expect(await c.dequeue("inbox")).toBeUndefined();
      expect(dequeues).toBe(2);
    } finally {
      c.close();
      server.forceShutdown();
    }
  });

  it("keeps the stream's other calls when one batch is over the message limit", async () => {
    const endpoint = `127.0.0.1:${node.grpcPort}`;
    const c = new GeospoolClient({ endpoints: [endpoint], token: WORKER, retryForMs: 0 });
    try {
      await c.enqueue("inbox", "small");
      const lease = await c.dequeue("inbox");
      expect(lease).toBeDefined();
      // 5 MiB: past the node's grpc.maxMessageBytes (4 MiB), refused as a call of its own.
      const big = c.enqueueBatch([{ queue: "inbox", data: Buffer.alloc(5 * 1024 * 1024, 1) }]);
      const removed = c.remove(lease as NonNullable<typeof lease>);
      await expect(big).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      await expect(removed).resolves.toBeUndefined();
    } finally {
      c.close();
    }
  });

  it("gives up a call past its deadline on the node, and retries elsewhere when a stream breaks", async () => {
    // A node whose streams each answer their first request, leave "slow" unanswered
    // (noting cancels), and break on anything else.
    const cancels: number[] = [];
    const server = new grpc.Server();
    server.addService(spoolServiceDefinition, {
      session: (stream: grpc.ServerDuplexStream<geospool.v1.SessionRequest, object>) => {
        let answered = 0;
        stream.on("data", (m: geospool.v1.SessionRequest) => {
          if (m.call === "cancel") return void cancels.push(Number(m.cancel));
          if (m.dequeue?.queue === "slow") return;
          if (answered++ === 0) return void stream.write({ id: m.id, dequeue: { leaseToken: "" } });
          stream.emit("error", { code: grpc.status.INTERNAL, details: "broken on purpose" });
        });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const stub = `127.0.0.1:${port}`;
    const real = `127.0.0.1:${node.grpcPort}`;
    const c = new GeospoolClient({
      endpoints: [stub, real],
      token: WORKER,
      callTimeoutMs: 300,
      retryForMs: 0,
    });
    try {
      expect(await c.dequeue("done")).toBeUndefined(); // answered by the stub
      // No answer within the deadline: DEADLINE_EXCEEDED, retried on the real node (which
      // refuses the worker a queue "slow"), and the stub is told to give the request up.
      await expect(c.dequeue("slow")).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
        endpoint: real,
      });
      await eventually("the cancel message", () => cancels.length === 1);
      // The stub's stream breaks under a call: retried on the real node, which answers.
      const c2 = new GeospoolClient({ endpoints: [stub, real], token: WORKER, retryForMs: 0 });
      expect(await c2.dequeue("done")).toBeUndefined(); // the stub's answer: the stream works
      const made = await c2.enqueue("done", "after a break");
      expect(made.entry.name).not.toBe("");
      c2.close();
    } finally {
      c.close();
      server.forceShutdown();
    }
  });

  it("ends an open session when the node stops, without holding up the drain", async () => {
    const s = new RawSession(raw, WORKER);
    s.send({ id: 1, dequeue: { queue: "inbox", wait: { seconds: 30 } } });
    // The stream is established once a quick request is answered.
    s.send({ id: 2, dequeue: { queue: "done" } });
    await s.answer(2);
    const t0 = Date.now();
    await node.stop();
    expect(Date.now() - t0).toBeLessThan(10_000);
    const waited = await s.answer(1);
    expect(waited.result).toBe("dequeue");
    expect(waited.dequeue?.entry ?? undefined).toBeUndefined();
    expect((await s.ended).code).toBe(grpc.status.OK);
  });
});
