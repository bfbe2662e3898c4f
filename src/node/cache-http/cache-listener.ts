import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { parseHostPort } from "../config/host-port.js";
import { type HttpServer, HttpServerError } from "../observability/index.js";

export interface CacheListenerOptions {
  /** `host:port` (`cache.listen`); port 0 picks a free port. */
  listen: string;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
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
  const server = createServer((req, res) => {
    options.handle(req, res).catch((err: unknown) => failed(req, res, err));
  });
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

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        new HttpServerError(
          "listen_failed",
          `cache.listen: cannot listen on ${options.listen}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    server.once("error", onError);
    server.listen(address.port, address.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => log.error({ err }, "cache http server error"));
  const bound = server.address() as AddressInfo;
  log.info({ address: bound.address, port: bound.port }, "cache listening");

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
