/**
 * # Node configuration
 *
 * One zod schema (schema.ts) with defaults; `loadConfig` merges, by precedence,
 * flags > env vars > the YAML file > defaults, and returns a `Config` with durations in
 * milliseconds, sizes in bytes, relative paths made absolute and token files read.
 *
 * Naming: the key `grpc.tls.clientCa` is `grpc: {tls: {clientCa: ...}}` in the file,
 * `GEOSPOOL_GRPC__TLS__CLIENT_CA` in the environment and `--grpc.tls.clientCa` (or
 * `--grpc.tls.client-ca`) as a flag. Lists are JSON in env vars and flags, or
 * comma-separated for lists of names. Unknown keys are errors in every source.
 *
 * Every failure is a `ConfigError` with a stable `code` and a one-line message naming the
 * key and where the value came from:
 * `config: grpc.listen (from GEOSPOOL_GRPC__LISTEN): expected host:port (IPv6 as [::1]:port), got "abc"`.
 * docs/configuration.md documents every key.
 */

export { formatDuration, formatSize, parseDuration, parseSize } from "../../common/units.js";
export {
  ACTIONS,
  type Action,
  type AuthToken,
  type Config,
  type GrpcTls,
  grpcTlsEnabled,
  LOG_LEVELS,
  type LogLevel,
  type Peer,
  type Permission,
} from "./config.js";
export { ConfigError, ConfigErrorCode, type ConfigProblem } from "./errors.js";
export { formatHostPort, type HostPort, isLoopbackHost, parseHostPort } from "./host-port.js";
export { CONFIG_FILE_ENV, type ConfigKey, configKeys, ENV_PREFIX } from "./keys.js";
export { type LoadConfigOptions, loadConfig, parseConfig } from "./load.js";
export { REDACTED, redactConfig } from "./redact.js";
export { configWarnings } from "./warnings.js";
