import { parseCommand } from "../args.js";
import { Output } from "../output.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { describe, entryJson, metadataText } from "./views.js";

const PATH = "geospool client stat";

export const clientStat: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} NAME [--queue QUEUE] [--json]

Describe the entry NAME as the node that answers sees it: its queue, whether it is queued
or checked out, deliveries, data size and sha256, metadata. Exit 4 when the node has no
such entry.

Options:
  --queue QUEUE   where the entry is expected (a hint: a wrong one only costs a wider
                  search)
  --json          print the entry with its state ("queued" or "checked_out")

${GLOBAL_HINT}`,
        options: { queue: { type: "string" }, json: { type: "boolean" } },
        positionals: ["NAME"],
      },
      io,
    );
    if (!parsed) return 0;
    const [name] = parsed.positionals as [string];
    const { values } = parsed;
    const { entry, state } = await ctx.client().stat(name, values.queue);
    const view = { ...entryJson(entry), state };
    await new Output(io, values.json === true).result(
      describe(entry.name, {
        queue: entry.queue,
        state,
        attempts: entry.attempts,
        data_size: entry.dataSize,
        data_sha256: entry.dataSha256,
        enqueued_at: view.enqueuedAt,
        lease_until: view.leaseUntil,
        metadata: metadataText(entry.metadata),
      }),
      view,
    );
    return 0;
  },
};
