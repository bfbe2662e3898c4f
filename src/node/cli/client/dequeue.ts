import { parseCommand, parseCount } from "../args.js";
import { CliError, usageError } from "../cli-error.js";
import { formatDuration, parseDuration } from "../duration.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { describe, leaseJson, metadataText } from "./views.js";

const PATH = "geospool client dequeue";

export const clientDequeue: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} QUEUE [--lease DUR] [--wait DUR] [--inline-data N] [--json]

Check out the oldest available entry of QUEUE under a lease, and print its name (first
line), metadata, lease token and the endpoint of the node that holds the lease. Finish it
before the lease ends with 'complete' (or hand it back with 'release'); otherwise it
returns to QUEUE, or to the dead-letter queue after too many deliveries.
Exit 3 when nothing is available (after --wait).

Options:
  --lease DUR          lease length (default: the node's)
  --wait DUR           wait up to DUR for an entry to arrive (default: do not wait)
  --inline-data N      also print the entry's data (base64: data_base64, or dataBase64
                       with --json) when it is at most N bytes, taken with the checkout
                       (no 'read' call); larger data is left out (read it with 'read
                       NAME'). The node sends at most its own limit (256 KiB, less with a
                       small message size). Give such a line to --lease-json on stdin (-):
                       a command-line argument is limited to 128 KiB
  --json               print the entry with leaseToken and endpoint: give that line to
                       complete/release/extend --lease-json, e.g.
                         lease=$(geospool client dequeue inbox --json) &&
                         geospool client complete --lease-json "$lease" --remove

${GLOBAL_HINT}`,
        options: {
          lease: { type: "string" },
          wait: { type: "string" },
          "inline-data": { type: "string" },
          json: { type: "boolean" },
        },
        positionals: ["QUEUE"],
      },
      io,
    );
    if (!parsed) return 0;
    const [queue] = parsed.positionals as [string];
    const { values } = parsed;
    const leaseMs = values.lease === undefined ? undefined : parseDuration("--lease", values.lease);
    const waitMs =
      values.wait === undefined ? 0 : parseDuration("--wait", values.wait, { allowZero: true });
    const inline = values["inline-data"];
    const inlineDataMax = inline === undefined ? undefined : parseCount("--inline-data", inline);
    if (inlineDataMax === 0) throw usageError("--inline-data: must be more than 0");
    const lease = await ctx.client().dequeue(queue, {
      ...(leaseMs !== undefined ? { leaseMs } : {}),
      ...(inlineDataMax !== undefined ? { inlineDataMax } : {}),
      waitMs,
    });
    if (lease === undefined) {
      const why = waitMs > 0 ? ` after waiting ${formatDuration(waitMs)}` : "";
      throw new CliError(
        "nothing_available",
        `nothing available in queue ${queue}${why}`,
        ExitCode.NothingAvailable,
      );
    }
    const dataBase64 = lease.data === undefined ? undefined : lease.data.toString("base64");
    const view = { ...leaseJson(lease), ...(dataBase64 !== undefined ? { dataBase64 } : {}) };
    await new Output(io, values.json === true).result(
      describe(lease.entry.name, {
        queue: lease.entry.queue,
        metadata: metadataText(lease.entry.metadata),
        lease_token: lease.token,
        endpoint: lease.endpoint,
        lease_until: view.leaseUntil,
        attempts: lease.entry.attempts,
        data_size: lease.entry.dataSize,
        data_base64: dataBase64,
      }),
      view,
    );
    return 0;
  },
};
