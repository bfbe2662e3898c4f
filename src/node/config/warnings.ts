import { type Config, grpcTlsEnabled } from "./config.js";
import { isLoopbackHost, parseHostPort } from "./host-port.js";

/**
 * Settings that are valid but risky, as one-line messages for the daemon to log at warn
 * level when it starts.
 */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  const host = parseHostPort(config.grpc.listen)?.host ?? "";
  const exposed = !isLoopbackHost(host);
  if (config.auth.tokens.length === 0) {
    warnings.push(
      `auth.tokens is empty: authentication is disabled, so any client that reaches ${config.grpc.listen} may enqueue, dequeue and administer every queue`,
    );
  }
  if (!grpcTlsEnabled(config) && exposed) {
    warnings.push(
      `grpc.tls is not configured and grpc.listen (${config.grpc.listen}) is not a loopback address: requests${config.auth.tokens.length > 0 ? " and bearer tokens" : ""} travel in clear text`,
    );
  }
  if (config.grpc.tls.clientCa !== undefined && !config.grpc.tls.requireClientCert) {
    warnings.push(
      "grpc.tls.clientCa is set but grpc.tls.requireClientCert is false: client certificates are checked when offered, but clients without one are let in",
    );
  }
  return warnings;
}
