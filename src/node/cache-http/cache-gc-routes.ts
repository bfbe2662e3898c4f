import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { RootInputError, type RootStore } from "../../cache/cache-roots.js";
import { CacheError } from "../../cache/errors.js";
import type { CacheGc } from "../../cache/gc.js";
import { type Action, type Authorizer, allows, type Principal } from "../auth/authorizer.js";
import { tokenOf } from "./cache-upload.js";

/**
 * The cache's GC over HTTP, beside the cache's routes (under `/_geospool/cache/`, a prefix no
 * Nix or Guix client asks for). Every call needs an `auth.tokens` grant:
 *
 *     GET    /_geospool/cache/roots             dequeue on the roots queue   the roots (JSON)
 *     POST   /_geospool/cache/roots             enqueue on the roots queue   add one: {"path",
 *                                                                            "expiresAt"?, "note"?}
 *     DELETE /_geospool/cache/roots?path=P      dequeue on the roots queue   remove P's roots
 *     POST   /_geospool/cache/gc?dryRun=1       dequeue on the cache queue   what a GC would do
 *     POST   /_geospool/cache/gc                admin on the cache queue     run a GC
 *
 * A token of `cache.gc.tokens` may make every call, with or without `auth.tokens`. With
 * neither (authentication off), reads answer and writes are refused: roots and removals
 * change what the whole cluster keeps. A caller without rights gets 401/403 and
 * nothing else. Answers are JSON; errors `{"error":{"code","message"}}`.
 */
export const GC_ROUTE_PREFIX = "/_geospool/cache/";

export interface GcRoutesOptions {
  authorizer: Authorizer;
  /** The cache's queue (rights to GC are rights on it). */
  queue: string;
  /** undefined when roots are not available (the roots queue is not one of the spool's). */
  roots: Pick<RootStore<unknown, string>, "queue" | "list" | "add" | "remove"> | undefined;
  gc: Pick<CacheGc<unknown, string>, "run"> | undefined;
  /** Why roots and GC are unavailable, when they are. */
  unavailable?: string;
  /** `cache.gc.tokens`: may make every call here, with or without `auth.tokens`. */
  gcTokens?: readonly { name: string; token: string }[];
  logger: Logger;
}

const MAX_BODY = 64 * 1024;

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function gcRoutes(options: GcRoutesOptions) {
  const log = options.logger.child({ component: "cache-gc" });

  const gcTokens = (options.gcTokens ?? []).map((t) => ({ name: t.name, digest: digest(t.token) }));

  /** The holder of one of `cache.gc.tokens`: every GC call is allowed. */
  function gcTokenHolder(token: string | undefined): Principal | undefined {
    if (token === undefined) return undefined;
    const d = digest(token);
    let found: string | undefined;
    for (const t of gcTokens) if (timingSafeEqual(d, t.digest)) found = t.name;
    return found === undefined
      ? undefined
      : { name: found, permissions: [{ queues: ["*"], actions: ["admin"] }] };
  }

  function who(req: IncomingMessage, action: Action, queue: string, write: boolean): Principal {
    const token = tokenOf(req.headers.authorization);
    const holder = gcTokenHolder(token);
    if (holder !== undefined) return holder;
    if (!options.authorizer.enabled) {
      if (!write) return { name: "anonymous", permissions: [] };
      throw new HttpFailure(
        401,
        "unauthenticated",
        "roots and GC runs need a token: one of cache.gc.tokens (this node has no auth.tokens)",
      );
    }
    let principal: Principal;
    try {
      principal = options.authorizer.authenticate(
        token === undefined ? undefined : `Bearer ${token}`,
      );
    } catch {
      throw new HttpFailure(401, "unauthenticated", "a valid bearer token is needed");
    }
    if (!allows(principal, action, queue)) {
      throw new HttpFailure(
        403,
        "permission_denied",
        `${principal.name} may not ${action} on queue ${JSON.stringify(queue)}`,
      );
    }
    return principal;
  }

  function need<T>(x: T | undefined): T {
    if (x === undefined) {
      throw new HttpFailure(409, "gc_unavailable", options.unavailable ?? "GC is not available");
    }
    return x;
  }

  async function route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname.slice(GC_ROUTE_PREFIX.length);
    const method = req.method ?? "GET";
    if (path === "roots") {
      const rootsQueue = options.roots?.queue ?? "";
      if (method === "GET") {
        who(req, "dequeue", rootsQueue, false);
        const roots = await need(options.roots).list();
        return send(res, 200, { roots });
      }
      if (method === "POST") {
        const principal = who(req, "enqueue", rootsQueue, true);
        const roots = need(options.roots);
        const body = await readJson(req);
        const { path: p, expiresAt, note } = body as Record<string, unknown>;
        if (typeof p !== "string") throw badRequest('"path" must be a store path or hash part');
        if (expiresAt !== undefined && !Number.isSafeInteger(expiresAt)) {
          throw badRequest('"expiresAt" must be ms since the epoch');
        }
        if (note !== undefined && typeof note !== "string") throw badRequest('"note" must be text');
        const added = await roots.add(p, principal.name, {
          ...(expiresAt === undefined ? {} : { expiresAt: expiresAt as number }),
          ...(note === undefined ? {} : { note }),
        });
        log.info(
          { root: added.root.hashPart, entry: added.entry, by: principal.name },
          "root added",
        );
        return send(res, 201, added);
      }
      if (method === "DELETE") {
        const principal = who(req, "dequeue", rootsQueue, true);
        const p = url.searchParams.get("path");
        if (p === null) throw badRequest("?path= (a store path or hash part) is needed");
        const removed = await need(options.roots).remove(p);
        log.info({ root: p, removed: removed.length, by: principal.name }, "roots removed");
        return send(res, 200, { removed });
      }
      throw new HttpFailure(
        405,
        "method_not_allowed",
        `${method} is not allowed on ${url.pathname}`,
      );
    }
    if (path === "gc") {
      if (method !== "POST") {
        throw new HttpFailure(
          405,
          "method_not_allowed",
          `${method} is not allowed on ${url.pathname}`,
        );
      }
      const dryRun = ["1", "true"].includes(url.searchParams.get("dryRun") ?? "");
      const principal = who(req, dryRun ? "dequeue" : "admin", options.queue, !dryRun);
      const report = await need(options.gc).run({ dryRun });
      if (!dryRun) {
        log.info(
          {
            by: principal.name,
            removed: report.removed.length,
            bytes: report.bytesFreed,
            blocked: report.blocked,
          },
          "GC run on request",
        );
      }
      return send(res, 200, report);
    }
    throw new HttpFailure(404, "not_found", `no route ${url.pathname}`);
  }

  return {
    /** Whether `req` is for these routes. */
    matches(req: IncomingMessage): boolean {
      return (req.url ?? "").startsWith(GC_ROUTE_PREFIX);
    },
    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      try {
        await route(req, res, new URL(req.url ?? "/", "http://node"));
      } catch (err) {
        if (err instanceof HttpFailure)
          return send(res, err.status, failure(err.code, err.message));
        if (err instanceof CacheError || err instanceof RootInputError) {
          return send(res, 400, failure(err.code, err.message));
        }
        log.error({ err }, "cache GC route failed");
        return send(res, 500, failure("internal", "the request failed; see the node's log"));
      }
    },
  };
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

function badRequest(message: string): HttpFailure {
  return new HttpFailure(400, "bad_request", message);
}

function failure(code: string, message: string) {
  return { error: { code, message } };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpFailure(413, "too_large", `body over ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  try {
    const value = JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error();
    return value;
  } catch {
    throw badRequest("the body must be a JSON object");
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(`${JSON.stringify(body)}\n`);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": bytes.length,
    "cache-control": "no-store",
  });
  res.end(bytes);
}
