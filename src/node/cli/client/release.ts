import { parseCommand } from "../args.js";
import { Output } from "../output.js";
import { LEASE_HELP, LEASE_OPTIONS, leasePositionals, resolveLease } from "./lease-args.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { toLease } from "./views.js";

const PATH = "geospool client release";

export const clientRelease: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} QUEUE NAME --lease-token TOKEN [--endpoint HOST:PORT] [--json]
       ${PATH} --lease-json JSON|- [--json]

Hand a checked-out entry back unfinished (a failed delivery): it returns to its queue with
its delivery count raised, or goes to the dead-letter queue once the count reaches the
node's maximum. Exit 5 when the lease is already lost.

Options:
  --json   print {name, queue, action, to, attempts, endpoint}

${LEASE_HELP}

${GLOBAL_HINT}`,
        options: { ...LEASE_OPTIONS },
        positionals: leasePositionals(args),
      },
      io,
    );
    if (!parsed) return 0;
    const ref = await resolveLease(parsed.values, parsed.positionals, io, ctx);
    const r = await ctx.client([ref.endpoint]).release(toLease(ref));
    await new Output(io, parsed.values.json === true).result(
      `released ${ref.name} to ${r.queue} (attempts: ${r.attempts})`,
      {
        name: ref.name,
        queue: ref.queue,
        action: "released",
        to: r.queue,
        attempts: r.attempts,
        endpoint: ref.endpoint,
      },
    );
    return 0;
  },
};
