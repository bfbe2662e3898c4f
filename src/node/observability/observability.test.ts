import { request } from "node:http";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import {
  createLogger,
  type HttpServer,
  HttpServerError,
  Metrics,
  silentLogger,
  startHttpServer,
} from "./index.js";

/** A stream that keeps every JSON line written to it. */
function lineCollector(): { stream: Writable; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n")) if (line !== "") lines.push(JSON.parse(line));
      done();
    },
  });
  return { stream, lines };
}

describe("logger", () => {
  it("writes JSON lines with level label, name and component, and hides secrets", () => {
    const { stream, lines } = lineCollector();
    const logger = createLogger({ level: "info", name: "eu-1", destination: stream });
    const grpc = logger.child({ component: "grpc" });
    grpc.info(
      { token: "s3cret", headers: { authorization: "Bearer s3cret" }, queue: "inbox" },
      "hello",
    );
    grpc.debug("not at info level");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: "info",
      name: "eu-1",
      component: "grpc",
      queue: "inbox",
      token: "[redacted]",
      headers: { authorization: "[redacted]" },
      msg: "hello",
    });
    expect(typeof lines[0]?.time).toBe("string");
    expect(JSON.stringify(lines)).not.toContain("s3cret");
  });
});

describe("metrics", () => {
  it("registers every metric on its own registry, so two nodes never collide", async () => {
    const a = new Metrics({ defaultLabels: { node: "a" }, processMetrics: false });
    const b = new Metrics({ defaultLabels: { node: "b" } });
    a.recordOperation("enqueue", "inbox", "ok", 0.003);
    const names = (await a.registry.getMetricsAsJSON()).map((m) => m.name).sort();
    expect(names).toEqual([
      "geospool_fsck_problems",
      "geospool_grpc_requests_total",
      "geospool_lease_expiries_total",
      "geospool_metrics_collect_errors_total",
      "geospool_operation_duration_seconds",
      "geospool_operations_total",
      "geospool_queue_depth",
      "geospool_replication_events_total",
    ]);
    const textB = await b.render();
    expect(textB).toContain("process_cpu_user_seconds_total");
    expect(textB).not.toMatch(/geospool_operations_total\{/);
  });

  it("labels only the configured queues", async () => {
    const metrics = new Metrics({ processMetrics: false, queues: ["inbox", "dead"] });
    metrics.recordOperation("enqueue", "inbox", "ok", 0.001);
    metrics.recordOperation("enqueue", "no-such-queue", "not_found", 0.001);
    metrics.recordOperation("list", "another-one", "not_found", 0.001);
    metrics.recordLeaseExpiry("inbox", "dead");
    const text = await metrics.render();
    expect(text).toContain('geospool_operations_total{op="enqueue",queue="inbox",outcome="ok"} 1');
    expect(text).toContain(
      'geospool_operations_total{op="enqueue",queue="(unknown)",outcome="not_found"} 1',
    );
    expect(text).toContain(
      'geospool_operations_total{op="list",queue="(unknown)",outcome="not_found"} 1',
    );
    expect(text).not.toMatch(/no-such-queue|another-one/);
  });

  it("counts, times and renders in the Prometheus text format", async () => {
    const metrics = new Metrics({ defaultLabels: { node: "n1" }, processMetrics: false });
    metrics.recordOperation("enqueue", "inbox", "ok", 0.002);
    metrics.recordOperation("enqueue", "inbox", "ok", 0.2);
    const done = metrics.startOperation("dequeue", "inbox");
    done("nothing_available");
    metrics.recordLeaseExpiry("inbox", "dead");
    metrics.recordGrpcRequest("/geospool.v1.Spool/Enqueue", "OK");
    metrics.setFsckProblems({ orphaned: 2, too_old: 1 });
    metrics.setFsckProblems({ too_old: 3 });
    metrics.setQueueDepthSource(async () => [
      { queue: "inbox", queued: 7, checkedOut: 1 },
      { queue: "dead", queued: 0, checkedOut: 0 },
    ]);
    const text = await metrics.render();
    expect(metrics.contentType).toMatch(/^text\/plain/);
    const lines = text.split("\n");
    const has = (line: string) => expect(lines).toContain(line);
    has("# TYPE geospool_operations_total counter");
    has('geospool_operations_total{op="enqueue",queue="inbox",outcome="ok",node="n1"} 2');
    has(
      'geospool_operations_total{op="dequeue",queue="inbox",outcome="nothing_available",node="n1"} 1',
    );
    has('geospool_operation_duration_seconds_count{node="n1",op="enqueue"} 2');
    has('geospool_operation_duration_seconds_bucket{le="0.0025",node="n1",op="enqueue"} 1');
    has('geospool_lease_expiries_total{queue="inbox",to="dead",node="n1"} 1');
    has('geospool_grpc_requests_total{method="/geospool.v1.Spool/Enqueue",code="OK",node="n1"} 1');
    has('geospool_fsck_problems{kind="orphaned",node="n1"} 0');
    has('geospool_fsck_problems{kind="too_old",node="n1"} 3');
    has('geospool_queue_depth{queue="inbox",state="queued",node="n1"} 7');
    has('geospool_queue_depth{queue="inbox",state="checked_out",node="n1"} 1');
    has('geospool_queue_depth{queue="dead",state="queued",node="n1"} 0');
  });

  it("reports a failing queue-depth source as a collect error, not a failed scrape", async () => {
    const failures: string[] = [];
    const metrics = new Metrics({
      processMetrics: false,
      onCollectError: (collector, err) => failures.push(`${collector}: ${(err as Error).message}`),
    });
    metrics.setQueueDepthSource(() => {
      throw new Error("spool gone");
    });
    const text = await metrics.render();
    expect(text).toContain('geospool_metrics_collect_errors_total{collector="queue_depth"} 1');
    expect(text).not.toMatch(/geospool_queue_depth\{/);
    metrics.setQueueDepthSource(async () => {
      throw new Error("still gone");
    });
    await metrics.render();
    expect(failures).toEqual(["queue_depth: spool gone", "queue_depth: still gone"]);
    expect(await metrics.render()).toContain(
      'geospool_metrics_collect_errors_total{collector="queue_depth"} 3',
    );
  });
});

interface Reply {
  status: number;
  type: string | undefined;
  body: string;
}

function get(port: number, path: string, method = "GET"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], body }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

describe("http server", () => {
  let server: HttpServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("serves /metrics, /healthz and /readyz, which flips from 503 to 200", async () => {
    const metrics = new Metrics({ defaultLabels: { node: "n1" }, processMetrics: false });
    metrics.recordOperation("enqueue", "inbox", "ok", 0.01);
    let ready = false;
    server = await startHttpServer({
      listen: "127.0.0.1:0",
      metrics,
      ready: async () => ready,
      logger: silentLogger(),
    });
    expect(server.port).toBeGreaterThan(0);
    const port = server.port;

    expect(await get(port, "/healthz")).toMatchObject({ status: 200, body: "ok\n" });
    expect((await get(port, "/readyz")).status).toBe(503);
    ready = true;
    expect(await get(port, "/readyz")).toMatchObject({ status: 200, body: "ready\n" });

    const scrape = await get(port, "/metrics");
    expect(scrape.status).toBe(200);
    expect(scrape.type).toBe(metrics.contentType);
    expect(scrape.body).toContain(
      'geospool_operations_total{op="enqueue",queue="inbox",outcome="ok",node="n1"} 1',
    );

    expect((await get(port, "/nope")).status).toBe(404);
    expect((await get(port, "/metrics", "POST")).status).toBe(405);
    expect(await get(port, "/healthz", "HEAD")).toMatchObject({ status: 200, body: "" });
  });

  it("answers 503 when the readiness check throws, and routes other paths to the fallback", async () => {
    server = await startHttpServer({
      listen: "127.0.0.1:0",
      metrics: new Metrics({ processMetrics: false }),
      ready: () => {
        throw new Error("postgres down");
      },
      logger: silentLogger(),
      fallback: (req, res) => {
        res.statusCode = 200;
        res.end(`cache ${req.url}`);
      },
    });
    expect((await get(server.port, "/readyz")).status).toBe(503);
    expect(await get(server.port, "/nix-cache-info")).toMatchObject({
      status: 200,
      body: "cache /nix-cache-info",
    });
  });

  it("answers 500 and logs when the fallback throws, at once or through its promise", async () => {
    const { stream, lines } = lineCollector();
    server = await startHttpServer({
      listen: "127.0.0.1:0",
      metrics: new Metrics({ processMetrics: false }),
      ready: () => true,
      logger: createLogger({ level: "error", destination: stream }),
      fallback: (req) => {
        if (req.url === "/at-once") throw new Error("thrown at once");
        return Promise.reject(new Error("rejected later"));
      },
    });
    expect(await get(server.port, "/at-once")).toMatchObject({
      status: 500,
      body: "internal error\n",
    });
    expect(await get(server.port, "/later")).toMatchObject({
      status: 500,
      body: "internal error\n",
    });
    expect(lines.map((l) => [l.msg, l.url])).toEqual([
      ["request failed", "/at-once"],
      ["request failed", "/later"],
    ]);
  });

  it("refuses a bad address and an address in use, with codes", async () => {
    const metrics = new Metrics({ processMetrics: false });
    const bad = await startHttpServer({
      listen: "nowhere",
      metrics,
      ready: () => true,
      logger: silentLogger(),
    }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(HttpServerError);
    expect((bad as HttpServerError).code).toBe("invalid_listen");

    server = await startHttpServer({
      listen: "127.0.0.1:0",
      metrics,
      ready: () => true,
      logger: silentLogger(),
    });
    const taken = await startHttpServer({
      listen: `127.0.0.1:${server.port}`,
      metrics,
      ready: () => true,
      logger: silentLogger(),
    }).catch((e: unknown) => e);
    expect((taken as HttpServerError).code).toBe("listen_failed");
    expect((taken as Error).message).toContain("EADDRINUSE");
  });
});
