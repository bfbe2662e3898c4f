import { GeospoolClient, type GeospoolClientOptions } from "../../client/geospool-client.js";
import { usageError } from "../cli-error.js";
import { type ClientSettings, type GlobalFlags, resolveClientSettings } from "./settings.js";
import type { ClientContext } from "./subcommand.js";

/** The clients of one `geospool client` run; `close()` closes every one it made. */
export function createClientContext(
  flags: GlobalFlags,
  env: Readonly<Record<string, string | undefined>>,
): ClientContext & { close(): void } {
  let resolved: ClientSettings | undefined;
  const made: GeospoolClient[] = [];
  const singles = new Map<string, GeospoolClient>();
  let shared: GeospoolClient | undefined;

  const settings = () => {
    resolved ??= resolveClientSettings(flags, env);
    return resolved;
  };
  const options = (endpoints: readonly string[], retryForMs: number): GeospoolClientOptions => {
    const s = settings();
    return {
      endpoints,
      callTimeoutMs: s.timeoutMs,
      retryForMs,
      ...(s.token !== undefined ? { token: s.token } : {}),
      ...(s.tls ? { tls: s.tls } : {}),
    };
  };
  const endpoints = () => {
    const list = settings().endpoints;
    if (list.length === 0) {
      throw usageError(
        "no endpoints: give --endpoints HOST:PORT[,HOST:PORT...] or set GEOSPOOL_ENDPOINTS",
      );
    }
    return list;
  };
  return {
    settings,
    endpoints,
    client(fallback) {
      if (shared) return shared;
      const list =
        settings().endpoints.length > 0 || !fallback?.length ? endpoints() : [...fallback];
      shared = new GeospoolClient(options(list, settings().retryForMs));
      made.push(shared);
      return shared;
    },
    single(endpoint) {
      let c = singles.get(endpoint);
      if (!c) {
        c = new GeospoolClient(options([endpoint], 0));
        singles.set(endpoint, c);
        made.push(c);
      }
      return c;
    },
    close() {
      for (const c of made.splice(0)) c.close();
    },
  };
}
