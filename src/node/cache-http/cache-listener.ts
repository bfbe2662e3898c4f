import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { parseHostPort } from "../config/host-port.js";
import {
  answering,
  type HttpHandler,
  type HttpServer,
  HttpServerError,
  listenAndServe,
} from "../observability/index.js";

export interface CacheListenerOptions {
  /** `host:port` (`cache.listen`); port 0 picks a free port. */
  listen: string;
  /** Answers synchronously where it can (narinfo lookups), else with a promise. */
  handle: HttpHandler;
  /** Refuses an upload from its headers (`Expect: 100-continue`); true lets it go on. */
  checkContinue(req: IncomingMessage, res: ServerResponse): boolean;
  logger: Logger;
}

/**
 * The binary cache on a listener of its own (`cache.listen`): every request goes to the
 * cache's routes; /metrics, /healthz and /readyz stay on the node's HTTP listener. Closes
 * like that one: stop accepting, end idle keep-alive connections, wait for requests in
 * flight, destroy what is still open after the deadline.
 */
export async function startCacheListener(options: CacheListenerOptions): Promise<HttpServer> {
  const address = parseHostPort(options.listen);
  if (address === undefined) {
    throw new HttpServerError(
      "invalid_listen",
      `cache.listen: bad listen address ${JSON.stringify(options.listen)}`,
    );
  }
  const log = options.logger.child({ component: "cache-http" });
  const failed = (req: IncomingMessage, res: ServerResponse, err: unknown) => {
    log.error({ err, url: req.url }, "request failed");
    if (res.headersSent) return void res.destroy();
    res.statusCode = 500;
    res.setHeader("content-type", "text/plain; charset=utf-8");
    res.end("internal error\n");
  };
  const server = createServer(answering(options.handle, failed));
  server.on("checkContinue", (req, res) => {
    let proceed = false;
    try {
      proceed = options.checkContinue(req, res);
    } catch (err) {
      return failed(req, res, err);
    }
    if (!proceed) return;
    res.writeContinue();
    server.emit("request", req, res);
  });

  return listenAndServe(server, { address, label: "cache.listen", listen: options.listen, log });
}
