import { readFileSync } from "node:fs";
import { parseHostPort } from "../../config/host-port.js";
import { parseList } from "../args.js";
import { usageError } from "../cli-error.js";
import { formatDuration, parseDuration } from "../duration.js";

/**
 * The options every `geospool client` command shares: where the nodes are and how to talk
 * to them. They may stand before or after the command name (`geospool client --endpoints
 * A status` and `geospool client status --endpoints A` are the same); flags win over the
 * GEOSPOOL_ENDPOINTS / GEOSPOOL_TOKEN environment variables.
 */
const VALUED = ["endpoints", "token", "token-file", "ca", "cert", "key", "timeout", "retry-for"];
const BOOLEAN = ["tls", "json"];

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_RETRY_FOR_MS = 30_000;

export const GLOBAL_OPTIONS_HELP = `Global options (before or after the command):
  --endpoints LIST    HOST:PORT[,HOST:PORT...] of the nodes, in order of preference
                      (default: $GEOSPOOL_ENDPOINTS)
  --token TOKEN       bearer token (default: $GEOSPOOL_TOKEN); prefer --token-file or the
                      variable: other local users can see command lines
  --token-file FILE   read the bearer token from FILE
  --tls               use TLS, trusting the system's CA certificates
  --ca FILE           use TLS, trusting this CA certificate (PEM)
  --cert FILE         client certificate for mutual TLS (PEM; needs --key; implies TLS)
  --key FILE          the client certificate's private key (PEM)
  --timeout DUR       deadline of one call attempt (default ${formatDuration(DEFAULT_TIMEOUT_MS)}; dequeue adds its --wait)
  --retry-for DUR     keep failing over and retrying for this long (default ${formatDuration(DEFAULT_RETRY_FOR_MS)}); a
                      value shorter than a failed try may give up before the next endpoint
  --json              results as JSON on standard output; errors also as
                      {"error":{"code","message"}} on standard error`;

/** Global flags as given (strings), taken out of the command's arguments. */
export interface GlobalFlags {
  endpoints?: string;
  token?: string;
  "token-file"?: string;
  ca?: string;
  cert?: string;
  key?: string;
  timeout?: string;
  "retry-for"?: string;
  tls?: boolean;
  json?: boolean;
}

/**
 * Take the global flags (`--flag VALUE`, `--flag=VALUE`) out of `args`, up to a `--`;
 * the rest (the command name and its own arguments) keeps its order.
 */
export function splitGlobalFlags(args: readonly string[]): { flags: GlobalFlags; rest: string[] } {
  const flags: Record<string, string | boolean> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--") {
      rest.push(...args.slice(i));
      break;
    }
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") ? arg.slice(2, eq > 0 ? eq : undefined) : "";
    if (BOOLEAN.includes(name) && eq < 0) {
      flags[name] = true;
    } else if (VALUED.includes(name)) {
      let value: string | undefined;
      if (eq > 0) value = arg.slice(eq + 1);
      else {
        value = args[i + 1];
        i++;
      }
      if (value === undefined) throw usageError(`client: option '--${name} <value>' needs a value`);
      if (flags[name] !== undefined) throw usageError(`client: --${name} given twice`);
      flags[name] = value;
    } else {
      rest.push(arg);
    }
  }
  return { flags: flags as GlobalFlags, rest };
}

/** What a client needs, resolved from flags, environment and files. */
export interface ClientSettings {
  /** May be empty: calls on a lease can go to the lease's endpoint alone. */
  endpoints: string[];
  token?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  timeoutMs: number;
  retryForMs: number;
}

/** Resolve the global flags; a bad value is a usage error naming its flag. */
export function resolveClientSettings(
  flags: GlobalFlags,
  env: Readonly<Record<string, string | undefined>>,
): ClientSettings {
  const endpointsText = flags.endpoints ?? env.GEOSPOOL_ENDPOINTS ?? "";
  const from = flags.endpoints !== undefined ? "--endpoints" : "GEOSPOOL_ENDPOINTS";
  const endpoints = parseList(endpointsText).map((e) => requireEndpoint(from, e));
  if (flags.token !== undefined && flags["token-file"] !== undefined) {
    throw usageError("--token and --token-file cannot be used together");
  }
  let token: string | undefined;
  if (flags.token !== undefined) token = flags.token;
  else if (flags["token-file"] !== undefined) {
    token = readFlagFile("--token-file", flags["token-file"]).toString("utf8").split("\n")[0];
    token = token?.trim();
    if (!token) throw usageError(`--token-file: ${flags["token-file"]} is empty`);
  } else if (env.GEOSPOOL_TOKEN) token = env.GEOSPOOL_TOKEN;
  if (flags.token === "") throw usageError("--token: empty");

  if ((flags.cert === undefined) !== (flags.key === undefined)) {
    throw usageError("--cert and --key go together (mutual TLS needs both)");
  }
  const useTls = flags.tls === true || flags.ca !== undefined || flags.cert !== undefined;
  const tls = useTls
    ? {
        ...(flags.ca !== undefined ? { ca: readFlagFile("--ca", flags.ca) } : {}),
        ...(flags.cert !== undefined ? { cert: readFlagFile("--cert", flags.cert) } : {}),
        ...(flags.key !== undefined ? { key: readFlagFile("--key", flags.key) } : {}),
      }
    : undefined;
  const timeoutMs =
    flags.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseDuration("--timeout", flags.timeout);
  const retryForMs =
    flags["retry-for"] === undefined
      ? DEFAULT_RETRY_FOR_MS
      : parseDuration("--retry-for", flags["retry-for"], { allowZero: true });
  return {
    endpoints,
    ...(token !== undefined ? { token } : {}),
    ...(tls ? { tls } : {}),
    timeoutMs,
    retryForMs,
  };
}

/** A `HOST:PORT` value of `flag`, or a usage error. */
export function requireEndpoint(flag: string, text: string): string {
  if (parseHostPort(text) === undefined || parseHostPort(text)?.port === 0) {
    throw usageError(`${flag}: ${JSON.stringify(text)} is not HOST:PORT`);
  }
  return text;
}

function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as { code?: string }).code ?? "error";
    throw usageError(`${flag}: cannot read ${path} (${code})`);
  }
}
