import { readFile } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import {
  type SpoolServiceHandlers,
  spoolServiceDefinition,
} from "../../proto/service-definition.js";
import { parseHostPort } from "../config/index.js";
import {
  addHealth,
  addReflection,
  type HealthImplementation,
  setServingStatus,
} from "./reflection.js";
import { toGrpcError } from "./status.js";

export interface GrpcServerOptions {
  listen: string;
  handlers: SpoolServiceHandlers;
  logger: Logger;
  tls?:
    | { cert: string; key: string; clientCa?: string | undefined; requireClientCert: boolean }
    | undefined;
  maxMessageBytes: number;
  keepalive: { timeMs: number; timeoutMs: number };
  /**
   * Checks the credentials of a grpc.health.v1 call (throws to refuse it); absent, health
   * answers anyone (`auth.allowUnauthenticatedHealth`).
   */
  healthAuth?: ((metadata: grpc.Metadata) => void) | undefined;
}

export interface GrpcServer {
  readonly port: number;
  readonly health: HealthImplementation;
  /** Mark the node serving (or not) on the standard health service. */
  setServing(serving: boolean): void;
  /** Stop accepting calls, let running calls finish for up to `deadlineMs`, then cut them. */
  shutdown(deadlineMs: number): Promise<void>;
}

export async function serverCredentials(
  tls: GrpcServerOptions["tls"],
): Promise<grpc.ServerCredentials> {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const [cert, key, ca] = await Promise.all([
    readFile(tls.cert),
    readFile(tls.key),
    tls.clientCa ? readFile(tls.clientCa) : Promise.resolve(null),
  ]);
  return grpc.ServerCredentials.createSsl(
    ca,
    [{ cert_chain: cert, private_key: key }],
    tls.requireClientCert,
  );
}

/** Start the geospool gRPC server with health and reflection. */
export async function startGrpcServer(opts: GrpcServerOptions): Promise<GrpcServer> {
  const addr = parseHostPort(opts.listen);
  if (!addr) throw new Error(`grpc: bad listen address ${JSON.stringify(opts.listen)}`);
  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.maxMessageBytes,
    "grpc.max_send_message_length": opts.maxMessageBytes,
    "grpc.keepalive_time_ms": opts.keepalive.timeMs,
    "grpc.keepalive_timeout_ms": opts.keepalive.timeoutMs,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
  });
  server.addService(spoolServiceDefinition, opts.handlers);
  const health = addHealth(opts.healthAuth ? guardedServer(server, opts.healthAuth) : server);
  addReflection(server);
  const creds = await serverCredentials(opts.tls);
  const host = addr.host.includes(":") ? `[${addr.host}]` : addr.host;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${addr.port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  const log = opts.logger.child({ component: "grpc" });
  log.info({ port, tls: Boolean(opts.tls) }, "gRPC listening");
  return {
    port,
    health,
    setServing(serving) {
      setServingStatus(health, serving ? "SERVING" : "NOT_SERVING");
    },
    async shutdown(deadlineMs) {
      setServingStatus(health, "NOT_SERVING");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ deadlineMs }, "calls still running at the shutdown deadline; cutting them");
          server.forceShutdown();
          resolve();
        }, deadlineMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

/**
 * A server whose `addService` checks each call's metadata with `check` before the handler
 * runs; a refused call ends with the status of the error `check` threw.
 */
function guardedServer(
  server: grpc.Server,
  check: (metadata: grpc.Metadata) => void,
): Pick<grpc.Server, "addService"> {
  const refusal = (call: { metadata: grpc.Metadata }) => {
    try {
      check(call.metadata);
      return undefined;
    } catch (err) {
      return toGrpcError(err);
    }
  };
  return {
    addService(definition, implementation) {
      const guarded: grpc.UntypedServiceImplementation = {};
      for (const [method, handler] of Object.entries(implementation)) {
        // Implementations name methods as the definition does, or by its originalName.
        const streaming = Object.entries(definition).some(
          ([name, m]) => (name === method || m.originalName === method) && m.responseStream,
        );
        guarded[method] = streaming
          ? (call: grpc.ServerWritableStream<unknown, unknown>) => {
              const refused = refusal(call);
              if (refused) call.emit("error", refused);
              else (handler as grpc.handleServerStreamingCall<unknown, unknown>)(call);
            }
          : (
              call: grpc.ServerUnaryCall<unknown, unknown>,
              callback: grpc.sendUnaryData<unknown>,
            ) => {
              const refused = refusal(call);
              if (refused) callback(refused);
              else (handler as grpc.handleUnaryCall<unknown, unknown>)(call, callback);
            };
      }
      server.addService(definition, guarded);
    },
  };
}
