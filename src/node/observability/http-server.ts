import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { parseHostPort } from "../config/host-port.js";
import type { Metrics } from "./metrics.js";

/** Handles requests for paths other than /metrics, /healthz and /readyz (e.g. the binary cache). */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * A node:http request listener over `handle`, which may answer synchronously (the cache's
 * narinfo lookups, from memory: no promise is made for those, which is 10% of a small
 * request's CPU in node:http) or with a promise; a throw or a rejection goes to `failed`.
 */
export function answering(
  handle: HttpHandler,
  failed: (req: IncomingMessage, res: ServerResponse, err: unknown) => void,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    let done: void | Promise<void>;
    try {
      done = handle(req, res);
    } catch (err) {
      return failed(req, res, err);
    }
    done?.catch((err: unknown) => failed(req, res, err));
  };
}

export interface HttpServerOptions {
  /** `host:port`; port 0 picks a free port (see `port` in the result). */
  listen: string;
  metrics: Metrics;
  /** Whether the node is ready for traffic; /readyz answers 200 if so, else 503. */
  ready: () => boolean | Promise<boolean>;
  logger: Logger;
  /** Other paths go here; without it they are 404. */
  fallback?: HttpHandler;
  /**
   * Sees a request that sent `Expect: 100-continue` before its body: true lets it go on
   * (100 Continue, then the usual handling); false means it has answered (401, 413, ...)
   * and the body is never asked for. Without it every such request gets 100 Continue.
   */
  checkContinue?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export interface HttpServer {
  /** The port actually bound. */
  readonly port: number;
  readonly host: string;
  /**
   * Stops accepting, ends idle keep-alive connections, and waits for requests in flight;
   * connections still open after `deadlineMs` (default 5000) are destroyed.
   */
  close(deadlineMs?: number): Promise<void>;
}

/** The error `startHttpServer` throws when the address is bad or cannot be bound. */
export class HttpServerError extends Error {
  readonly code: "invalid_listen" | "listen_failed";
  constructor(code: HttpServerError["code"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "HttpServerError";
    this.code = code;
  }
}

/**
 * The node's HTTP server (node:http): `GET /metrics` (Prometheus text), `GET /healthz`
 * (200 "ok" while the process runs), `GET /readyz` (200 "ready" / 503 "not ready"), HEAD
 * for each; everything else goes to `fallback`, or 404.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const address = parseHostPort(options.listen);
  if (address === undefined) {
    throw new HttpServerError(
      "invalid_listen",
      `http: bad listen address ${JSON.stringify(options.listen)}`,
    );
  }
  const log = options.logger.child({ component: "http" });

  const failed = (req: IncomingMessage, res: ServerResponse, err: unknown) => {
    log.error({ err, url: req.url }, "request failed");
    if (!res.headersSent) send(res, 500, "internal error\n");
    else res.destroy();
  };
  const server = createServer(answering(route, failed));

  const check = options.checkContinue;
  if (check !== undefined) {
    server.on("checkContinue", (req, res) => {
      let proceed = false;
      try {
        proceed = check(req, res);
      } catch (err) {
        log.error({ err, url: req.url }, "expect-continue check failed");
        if (!res.headersSent) send(res, 500, "internal error\n");
        return;
      }
      if (!proceed) return;
      res.writeContinue();
      server.emit("request", req, res);
    });
  }

  function route(req: IncomingMessage, res: ServerResponse): void | Promise<void> {
    const url = req.url ?? "/";
    const query = url.indexOf("?");
    const path = query < 0 ? url : url.slice(0, query);
    const own = path === "/metrics" || path === "/healthz" || path === "/readyz";
    if (!own) {
      if (options.fallback !== undefined) return options.fallback(req, res);
      return send(res, 404, "not found\n");
    }
    return handleOwn(req, res, path);
  }

  async function handleOwn(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return send(res, 405, "method not allowed\n");
    }
    if (path === "/healthz") return send(res, 200, "ok\n");
    if (path === "/readyz") {
      let ready = false;
      try {
        ready = await options.ready();
      } catch (err) {
        log.warn({ err }, "readiness check failed");
      }
      return ready ? send(res, 200, "ready\n") : send(res, 503, "not ready\n");
    }
    const body = await options.metrics.render();
    return send(res, 200, body, options.metrics.contentType);
  }

  function send(
    res: ServerResponse,
    status: number,
    body: string,
    type = "text/plain; charset=utf-8",
  ) {
    res.statusCode = status;
    res.setHeader("content-type", type);
    res.setHeader("content-length", Buffer.byteLength(body));
    res.setHeader("cache-control", "no-store");
    res.end(res.req.method === "HEAD" ? undefined : body);
  }

  return listenAndServe(server, { address, label: "http", listen: options.listen, log });
}

/**
 * Bind `server` (the label names it in errors and logs: "http", "cache.listen") and return
 * its handle: close stops accepting, ends idle keep-alive connections, waits for requests in
 * flight and destroys what is still open after the deadline.
 */
export async function listenAndServe(
  server: Server,
  opts: { address: { host: string; port: number }; label: string; listen: string; log: Logger },
): Promise<HttpServer> {
  const { address, label, log } = opts;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        new HttpServerError(
          "listen_failed",
          `${label}: cannot listen on ${opts.listen}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    server.once("error", onError);
    server.listen(address.port, address.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => log.error({ err }, `${label} server error`));
  const bound = server.address() as AddressInfo;
  log.info({ address: bound.address, port: bound.port }, `${label} listening`);

  let closing: Promise<void> | undefined;
  return {
    port: bound.port,
    host: bound.address,
    close(deadlineMs = 5000) {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), deadlineMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
