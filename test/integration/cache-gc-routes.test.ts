import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningNode } from "../../src/node/node.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * The cache GC's HTTP routes on real nodes: rights (a caller without them learns nothing),
 * bad input (a clear error, nothing added), a node without a roots queue, a node without
 * auth.tokens, and the fence holding back a node whose peer has not joined.
 */

const ADMIN = "admin-token-0123456789abcdef";
const READER = "reader-token-0123456789abcdef";
const UPLOADER = "upload-token-0123456789abcdef";
const HASH = "l493h11hsb577v1lhgwxzcmxh4q2m02w";

const dir = useSuiteTempDir("geospool-cache-gc-routes-");
let pg: TestPostgres[] = [];
let secured: RunningNode | undefined;
let open: RunningNode | undefined;

beforeAll(async () => {
  pg = await startPostgresServers(2, { dir: join(dir.path, "pg") });
  secured = await startTestNode({
    id: "n1",
    dir: dir.path,
    postgresUrl: pg[0]!.url,
    config: {
      spool: { queues: ["inbox", "dead", "cache", "cache-roots"] },
      // A peer with no PostgreSQL URL is never joined: the GC's fence stays closed.
      peers: [{ id: "eu-2", grpc: "127.0.0.1:9" }],
      auth: {
        tokens: [
          { name: "ops", token: ADMIN, permissions: [{ queues: ["*"], actions: ["admin"] }] },
          {
            name: "reader",
            token: READER,
            permissions: [{ queues: ["cache", "cache-roots"], actions: ["dequeue"] }],
          },
          {
            name: "uploader",
            token: UPLOADER,
            permissions: [{ queues: ["cache"], actions: ["enqueue"] }],
          },
        ],
      },
      cache: { enabled: true },
    },
  });
  open = await startTestNode({
    id: "n2",
    dir: dir.path,
    postgresUrl: pg[1]!.url,
    config: { spool: { queues: ["inbox", "dead", "cache"] }, cache: { enabled: true } },
  });
}, 120_000);
afterAll(async () => {
  await secured?.stop();
  await open?.stop();
  await stopPostgresServers(pg);
}, 60_000);

async function call(
  node: RunningNode,
  method: string,
  path: string,
  opts: { token?: string; body?: string } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${node.httpPort}/_geospool/cache/${path}`, {
    method,
    headers: opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` },
    ...(opts.body === undefined ? {} : { body: opts.body }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const errorCode = (r: { body: Record<string, unknown> }) =>
  (r.body.error as { code: string } | undefined)?.code;

describe("cache GC routes", () => {
  it("answers callers without rights with 401/403 and nothing else", async () => {
    const n = secured!;
    const root = JSON.stringify({ path: HASH });
    for (const [method, path, token, status] of [
      ["GET", "roots", undefined, 401],
      ["GET", "roots", "wrong-token-0123456789abcdef", 401],
      ["GET", "roots", UPLOADER, 403],
      ["POST", "roots", READER, 403],
      ["DELETE", `roots?path=${HASH}`, UPLOADER, 403],
      ["POST", "gc", READER, 403],
      ["POST", "gc?dryRun=1", UPLOADER, 403],
    ] as const) {
      const r = await call(n, method, path, {
        ...(token === undefined ? {} : { token }),
        ...(method === "POST" && path === "roots" ? { body: root } : {}),
      });
      expect(r.status, `${method} ${path} with ${token}`).toBe(status);
      expect(Object.keys(r.body)).toEqual(["error"]);
    }
    expect((await call(n, "GET", "roots", { token: READER })).body).toEqual({ roots: [] });
  });

  it("refuses bad roots with a clear error and adds nothing", async () => {
    const n = secured!;
    const bad: Array<[string | undefined, string, RegExp]> = [
      ["not json", "bad_request", /JSON object/],
      ["[]", "bad_request", /JSON object/],
      [JSON.stringify({}), "bad_request", /"path"/],
      [JSON.stringify({ path: "nope" }), "invalid_store_path", /hash part "nope"/],
      [JSON.stringify({ path: "/nix/store/xyz-app" }), "invalid_store_path", /xyz-app/],
      [JSON.stringify({ path: HASH, expiresAt: 1 }), "invalid_root", /not in the future/],
      [JSON.stringify({ path: HASH, expiresAt: "soon" }), "bad_request", /expiresAt/],
      [JSON.stringify({ path: HASH, note: 5 }), "bad_request", /note/],
      ["x".repeat(70_000), "too_large", /over 65536 bytes/],
    ];
    for (const [body, code, message] of bad) {
      const r = await call(n, "POST", "roots", { token: ADMIN, ...(body ? { body } : {}) });
      expect(errorCode(r), body?.slice(0, 40)).toBe(code);
      expect((r.body.error as { message: string }).message).toMatch(message);
    }
    expect((await call(n, "GET", "roots", { token: ADMIN })).body).toEqual({ roots: [] });
    expect((await call(n, "DELETE", "roots", { token: ADMIN })).status).toBe(400);
    expect((await call(n, "PUT", "roots", { token: ADMIN })).status).toBe(405);
    expect((await call(n, "GET", "gc", { token: ADMIN })).status).toBe(405);
    expect((await call(n, "GET", "nothing", { token: ADMIN })).status).toBe(404);
  });

  it("adds, lists and removes roots; a GC is held back while a peer has not joined", async () => {
    const n = secured!;
    const added = await call(n, "POST", "roots", {
      token: ADMIN,
      body: JSON.stringify({ path: `/nix/store/${HASH}-geo-app`, note: "release 1" }),
    });
    expect(added.status).toBe(201);
    expect(added.body.root).toMatchObject({ hashPart: HASH, by: "ops", note: "release 1" });
    const listed = await call(n, "GET", "roots", { token: READER });
    expect((listed.body.roots as unknown[]).length).toBe(1);

    const gc = await call(n, "POST", "gc", { token: ADMIN });
    expect(gc.status).toBe(200);
    expect(gc.body.blocked).toBe('peer "eu-2" is not joined yet');
    expect(gc.body.removed).toEqual([]);
    const metrics = await n.metrics.registry.metrics();
    expect(metrics).toMatch(/geospool_cache_gc_runs_total\{outcome="blocked",node="n1"\} 1/);

    const removed = await call(n, "DELETE", `roots?path=${HASH}`, { token: ADMIN });
    expect((removed.body.removed as unknown[]).length).toBe(1);
    expect((await call(n, "GET", "roots", { token: READER })).body).toEqual({ roots: [] });
  });

  it("without auth.tokens: writes are refused first; without a roots queue: 409 naming the key", async () => {
    const n = open!;
    const write = await call(n, "POST", "gc");
    expect(write.status).toBe(401);
    expect((write.body.error as { message: string }).message).toMatch(/no auth\.tokens/);
    const roots = await call(n, "GET", "roots");
    expect(roots.status).toBe(409);
    expect(errorCode(roots)).toBe("gc_unavailable");
    expect((roots.body.error as { message: string }).message).toMatch(
      /cache\.gc\.rootsQueue "cache-roots" is not one of spool\.queues/,
    );
  });
});
