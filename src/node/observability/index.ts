/**
 * # Observability
 *
 * - `createLogger`: the root pino logger; components use `logger.child({component})`.
 * - `Metrics`: a node's Prometheus metrics on its own Registry.
 * - `startHttpServer`: /metrics, /healthz, /readyz (and a fallback for other routes).
 */
export { registerCacheRequestMetrics } from "./cache-metrics.js";
export {
  answering,
  type HttpHandler,
  type HttpServer,
  HttpServerError,
  type HttpServerOptions,
  listenAndServe,
  startHttpServer,
} from "./http-server.js";
export {
  componentLogger,
  createLogger,
  flushLogger,
  type Logger,
  type LoggerOptions,
  REDACTED_LOG_PATHS,
  silentLogger,
} from "./logger.js";
export {
  Metrics,
  type MetricsOptions,
  OPERATION_BUCKETS,
  type QueueDepth,
  type QueueDepthSource,
} from "./metrics.js";
