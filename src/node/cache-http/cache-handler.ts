import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { parseByteRange } from "../../cache/byte-range.js";
import type { CacheReader, OpenNar } from "../../cache/cache-reader.js";
import { buildNixCacheInfo } from "../../cache/nix-cache-info.js";
import { parseCacheRequest } from "../../cache/request-path.js";
import type { RequestStats } from "../../cache/request-stats.js";
import { sendNarRange } from "./nar-send.js";

export interface CacheHttpOptions {
  reader: CacheReader;
  /** Where PUTs go; without it the cache is read-only (PUT is 405). */
  upload?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  /** Cache-Control max-age for narinfos and nars found (seconds). */
  hitTtlSeconds: number;
  /** Cache-Control max-age for misses (seconds): a client asks again after this. */
  missTtlSeconds: number;
  /** Counts narinfo hits and misses and nar requests and bytes (request analytics). */
  stats?: RequestStats;
  logger: Logger;
}

/**
 * The read side of the Nix/Guix binary-cache protocol over node:http: `GET`/`HEAD` of
 * `/nix-cache-info`, `/<hash>.narinfo`, `/<hash>.ls` and `/nar/...` (one byte range, ETag,
 * If-None-Match). A miss is 404, never 5xx; a path outside the grammar is 400 (traversal
 * in any encoding) or 404; other methods 405. node:http answers pipelined requests on one
 * connection in order, as Guix clients need.
 */
export function cacheHttpHandler(options: CacheHttpOptions) {
  const { reader, stats } = options;
  const log = options.logger.child({ component: "cache-http" });
  const cacheInfo = buildNixCacheInfo(reader.info);
  const hit = `public, max-age=${options.hitTtlSeconds}`;
  const miss = `public, max-age=${options.missTtlSeconds}`;

  const notFound = Buffer.from("404\n");

  /** One writeHead with the headers as a flat list: node:http's cheapest path (headers set before are kept). */
  function send(
    res: ServerResponse,
    status: number,
    body: string | Buffer,
    type: string,
    cacheControl: string,
  ): void {
    res.writeHead(status, [
      "content-type",
      type,
      "content-length",
      String(Buffer.byteLength(body)),
      "cache-control",
      cacheControl,
    ]);
    res.end(res.req.method === "HEAD" ? undefined : body);
  }

  /** Synchronous for what is answered from memory (narinfos from a node's store). */
  return function handle(req: IncomingMessage, res: ServerResponse): void | Promise<void> {
    const url = req.url ?? "";
    const query = url.indexOf("?");
    const rawPath = query < 0 ? url : url.slice(0, query);
    if (req.method === "PUT" && options.upload !== undefined) return options.upload(req, res);
    const request = parseCacheRequest(rawPath);
    if (request.kind === "bad") {
      const status = rawPath.startsWith("/nar/") ? 400 : 404;
      return send(res, status, `${request.reason}\n`, "text/plain; charset=utf-8", "no-store");
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", options.upload === undefined ? "GET, HEAD" : "GET, HEAD, PUT");
      return send(res, 405, "method not allowed\n", "text/plain; charset=utf-8", "no-store");
    }
    switch (request.kind) {
      case "cache_info":
        return send(res, 200, cacheInfo, "text/x-nix-cache-info", hit);
      case "narinfo": {
        const found = reader.narinfo(request.hashPart);
        if (found === undefined || Buffer.isBuffer(found)) {
          return answerNarinfo(res, request.hashPart, found);
        }
        return Promise.resolve(found).then((body) => answerNarinfo(res, request.hashPart, body));
      }
      case "listing":
        return reader.listing(request.hashPart).then((body) => {
          if (body === undefined)
            return send(res, 404, notFound, "text/plain; charset=utf-8", miss);
          return send(res, 200, body, "application/json", hit);
        });
      case "nar":
        return sendNar(req, res, request.path);
    }
  };

  function answerNarinfo(res: ServerResponse, hashPart: string, body: Buffer | undefined): void {
    stats?.narinfo(hashPart, body !== undefined);
    if (body === undefined) send(res, 404, notFound, "text/plain; charset=utf-8", miss);
    else send(res, 200, body, "text/x-nix-narinfo", hit);
  }

  async function sendNar(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const nar = await reader.openNar(path);
    if (nar === undefined) {
      stats?.nar(path, false, 0);
      return send(res, 404, notFound, "text/plain; charset=utf-8", miss);
    }
    // Not inside `stats?.nar(...)`: without stats its arguments would not be evaluated.
    const sent = await answerNar(req, res, path, nar);
    stats?.nar(path, true, sent);
  }

  /**
   * Answer a request for a nar that is here; the nar is closed in every case. Returns the
   * body bytes sent: none for 304, 416 and HEAD, and none counted for a body cut short (how
   * much of it arrived is not known).
   */
  async function answerNar(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    nar: OpenNar,
  ): Promise<number> {
    res.setHeader("etag", nar.etag);
    res.setHeader("accept-ranges", "bytes");
    if (req.headers["if-none-match"]?.split(/\s*,\s*/).includes(nar.etag)) {
      await nar.close();
      res.statusCode = 304;
      res.setHeader("cache-control", hit);
      res.end();
      return 0;
    }
    const range = parseByteRange(
      typeof req.headers.range === "string" ? req.headers.range : undefined,
      nar.size,
    );
    if (range.kind === "unsatisfiable") {
      await nar.close();
      res.setHeader("content-range", `bytes */${nar.size}`);
      send(res, 416, "range not satisfiable\n", "text/plain; charset=utf-8", "no-store");
      return 0;
    }
    const [start, end] = range.kind === "partial" ? [range.start, range.end] : [0, nar.size - 1];
    res.statusCode = range.kind === "partial" ? 206 : 200;
    if (range.kind === "partial")
      res.setHeader("content-range", `bytes ${start}-${end}/${nar.size}`);
    res.setHeader("content-type", "application/x-nix-nar");
    res.setHeader("content-length", end - start + 1);
    res.setHeader("cache-control", hit);
    if (req.method === "HEAD" || nar.size === 0) {
      await nar.close();
      res.end();
      return 0;
    }
    try {
      await sendNarRange(nar, res, start, end);
      return end - start + 1;
    } catch (err) {
      // The client went away, or the disk failed mid-body: nothing more can be said on it.
      log.debug({ err, path }, "nar transfer ended early");
      res.destroy();
      return 0;
    }
  }
}
