import { runClusterStatus } from "../cluster/status.js";
import type { ClientSubcommand } from "./subcommand.js";

/** `geospool client status`: the same as `geospool cluster status`. */
export const clientStatus: ClientSubcommand = {
  run: (args, io, ctx) => runClusterStatus("geospool client status", args, io, ctx),
};
