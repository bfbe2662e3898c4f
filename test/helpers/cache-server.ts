import {
  type CacheHttpOptions,
  cacheHttpHandler,
} from "../../src/node/cache-http/cache-handler.js";
import {
  type HttpServer,
  Metrics,
  silentLogger,
  startHttpServer,
} from "../../src/node/observability/index.js";

/**
 * A real HTTP listener on 127.0.0.1 (port 0) serving `reader` as a binary cache, as a node
 * does beside /metrics, logging nothing. The caller stops it.
 */
export function startCacheServer(
  options: Omit<CacheHttpOptions, "logger" | "hitTtlSeconds" | "missTtlSeconds"> &
    Partial<Pick<CacheHttpOptions, "hitTtlSeconds" | "missTtlSeconds">>,
): Promise<HttpServer> {
  return startHttpServer({
    listen: "127.0.0.1:0",
    metrics: new Metrics(),
    ready: () => true,
    logger: silentLogger(),
    fallback: cacheHttpHandler({
      hitTtlSeconds: 60,
      missTtlSeconds: 5,
      ...options,
      logger: silentLogger(),
    }),
  });
}
