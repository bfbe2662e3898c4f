import type { GeospoolClient } from "../../client/geospool-client.js";
import type { CliIo } from "../command.js";
import type { ClientSettings } from "./settings.js";

/** What every `geospool client` command gets: the settings and clients built from them. */
export interface ClientContext {
  /** Resolved on first use, so `--help` needs no endpoints. */
  settings(): ClientSettings;
  /**
   * A client over the configured endpoints, failing over between them. With none
   * configured, `fallback` is used (a lease's endpoint); else it is a usage error.
   */
  client(fallback?: readonly string[]): GeospoolClient;
  /** A client for one endpoint that tries once: for loops that fail over by themselves. */
  single(endpoint: string): GeospoolClient;
  /** Every configured endpoint (a usage error when there is none). */
  endpoints(): string[];
}

/** One `geospool client` command; failures are thrown and mapped to exit codes by the group. */
export interface ClientSubcommand {
  run(args: string[], io: CliIo, ctx: ClientContext): Promise<number>;
}

export const GLOBAL_HINT =
  "Global options (--endpoints, --token, TLS, --timeout, --retry-for): see 'geospool client --help'.";
