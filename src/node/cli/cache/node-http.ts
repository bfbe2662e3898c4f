import { readFileSync } from "node:fs";
import { GC_ROUTE_PREFIX } from "../../cache-http/cache-gc-routes.js";
import { CliError, usageError } from "../cli-error.js";
import { ExitCode } from "../exit-codes.js";

/**
 * What `geospool cache roots|gc` share: they ask a running node over HTTP (its cache
 * listener, routes under /_geospool/cache/), because roots and removals must go through the
 * node's spool to replicate, and its index must follow at once.
 */

export const NODE_HTTP_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  json: { type: "boolean" },
} as const;

export const NODE_HTTP_HELP = `  --url URL          the node's cache URL (default: $GEOSPOOL_CACHE_URL, else
                     http://127.0.0.1:8401)
  --token TOKEN      an auth.tokens bearer token (default: $GEOSPOOL_TOKEN); prefer
                     --token-file or the variable: other local users can see command lines
  --token-file FILE  read the token from FILE
  --json             the node's answer as JSON on standard output; errors also as
                     {"error":{"code","message"}} on standard error`;

export interface NodeHttp {
  call<T>(method: string, path: string, body?: unknown): Promise<T>;
}

export function nodeHttp(values: {
  url?: string | undefined;
  token?: string | undefined;
  "token-file"?: string | undefined;
}): NodeHttp {
  const base = values.url ?? process.env.GEOSPOOL_CACHE_URL ?? "http://127.0.0.1:8401";
  let url: URL;
  try {
    url = new URL(base);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error();
  } catch {
    throw usageError(`--url: expected an http:// or https:// URL, got ${JSON.stringify(base)}`);
  }
  if (values.token !== undefined && values["token-file"] !== undefined) {
    throw usageError("--token and --token-file: give one of them");
  }
  let token = values.token ?? process.env.GEOSPOOL_TOKEN;
  if (values["token-file"] !== undefined) {
    try {
      token = readFileSync(values["token-file"], "utf8").trim();
    } catch (err) {
      throw usageError(
        `--token-file: cannot read ${values["token-file"]}: ${(err as { code?: string }).code ?? err}`,
      );
    }
  }
  const root = `${url.origin}${url.pathname.replace(/\/+$/, "")}${GC_ROUTE_PREFIX}`;
  return {
    async call<T>(method: string, path: string, body?: unknown): Promise<T> {
      let res: Response;
      try {
        res = await fetch(`${root}${path}`, {
          method,
          headers: {
            ...(token === undefined || token === "" ? {} : { authorization: `Bearer ${token}` }),
            ...(body === undefined ? {} : { "content-type": "application/json" }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      } catch (err) {
        const c = (
          err as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } }
        ).cause;
        const cause = c?.code ?? c?.errors?.[0]?.code ?? c?.message ?? String(err);
        throw new CliError(
          "unavailable",
          `cannot reach ${url.origin}: ${cause}`,
          ExitCode.Unavailable,
          {
            cause: err,
          },
        );
      }
      const text = await res.text();
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        value = undefined;
      }
      if (res.ok && value !== undefined) return value as T;
      const e = (value as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      const code = typeof e?.code === "string" ? e.code : `http_${res.status}`;
      const message =
        typeof e?.message === "string"
          ? e.message
          : `the node answered ${res.status} (is ${url.origin} a geospool node's cache?)`;
      const exit =
        res.status === 401 || res.status === 403
          ? ExitCode.AccessDenied
          : res.status === 400
            ? ExitCode.Usage
            : ExitCode.Failure;
      throw new CliError(code, message, exit);
    },
  };
}
