/**
 * Round trips with nothing behind them, from the bench process, one at a time: a gRPC
 * unary call to the node's standard health service (grpc.health.v1.Health/Check), and a
 * `select 1` to PostgreSQL. They show what the transport alone costs per call.
 */
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { distribution } from "./grpc-stats.js";

export async function grpcPingMs(
  endpoint: string,
  n: number,
): Promise<{ p50: number; p99: number }> {
  const client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
  const check = () =>
    new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (x: Buffer) => x,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (err) => (err ? reject(err) : resolve()),
      );
    });
  try {
    const xs: number[] = [];
    for (let i = 0; i < n + 20; i++) {
      const start = performance.now();
      await check();
      if (i >= 20) xs.push(performance.now() - start);
    }
    const d = distribution(xs);
    return { p50: d.p50, p99: d.p99 };
  } finally {
    client.close();
  }
}

export async function pgPingMs(url: string, n: number): Promise<{ p50: number; p99: number }> {
  const c = new pg.Client({ connectionString: url });
  c.on("error", () => undefined);
  await c.connect();
  try {
    const xs: number[] = [];
    for (let i = 0; i < n + 20; i++) {
      const start = performance.now();
      await c.query("select 1");
      if (i >= 20) xs.push(performance.now() - start);
    }
    const d = distribution(xs);
    return { p50: d.p50, p99: d.p99 };
  } finally {
    await c.end();
  }
}
