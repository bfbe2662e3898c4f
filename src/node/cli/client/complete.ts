import { parseCommand } from "../args.js";
import { usageError } from "../cli-error.js";
import { Output } from "../output.js";
import { LEASE_HELP, LEASE_OPTIONS, leasePositionals, resolveLease } from "./lease-args.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { entryJson, toLease } from "./views.js";

const PATH = "geospool client complete";

export const clientComplete: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} QUEUE NAME --lease-token TOKEN [--endpoint HOST:PORT]
         (--save-to QUEUE [--metadata STRING] | --remove) [--json]
       ${PATH} --lease-json JSON|- (--save-to QUEUE [--metadata STRING] | --remove) [--json]

Finish an entry checked out by 'dequeue': save it into a queue (the same or another),
optionally with new metadata, or remove it and its data. Exit 5 when the lease is lost
(expired, released, or held by someone else): nothing is changed.

Options:
  --save-to QUEUE     save the entry into QUEUE
  --metadata STRING   with --save-to: replace its metadata
  --remove            delete the entry and its data
  --json              print {name, queue, action, to, endpoint, entry}

${LEASE_HELP}

${GLOBAL_HINT}`,
        options: {
          ...LEASE_OPTIONS,
          "save-to": { type: "string" },
          metadata: { type: "string" },
          remove: { type: "boolean" },
        },
        positionals: leasePositionals(args),
      },
      io,
    );
    if (!parsed) return 0;
    const { values } = parsed;
    const saveTo = values["save-to"];
    if ((saveTo === undefined) === (values.remove !== true)) {
      throw usageError(
        saveTo === undefined
          ? "client complete: give one of --save-to QUEUE, --remove"
          : "client complete: --save-to and --remove cannot be used together",
      );
    }
    if (values.metadata !== undefined && saveTo === undefined) {
      throw usageError("--metadata: only with --save-to");
    }
    const ref = await resolveLease(values, parsed.positionals, io, ctx);
    const lease = toLease(ref);
    const client = ctx.client([ref.endpoint]);
    const out = new Output(io, values.json === true);
    if (saveTo !== undefined) {
      const saved = await client.save(lease, saveTo, values.metadata);
      await out.result(`saved ${ref.name} to ${saved.queue}`, {
        name: ref.name,
        queue: ref.queue,
        action: "saved",
        to: saved.queue,
        endpoint: ref.endpoint,
        entry: entryJson(saved),
      });
    } else {
      await client.remove(lease);
      await out.result(`removed ${ref.name}`, {
        name: ref.name,
        queue: ref.queue,
        action: "removed",
        endpoint: ref.endpoint,
      });
    }
    return 0;
  },
};
