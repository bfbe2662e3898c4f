import { parseCommand } from "../args.js";
import { usageError } from "../cli-error.js";
import { parseDuration } from "../duration.js";
import { Output } from "../output.js";
import { LEASE_HELP, LEASE_OPTIONS, leasePositionals, resolveLease } from "./lease-args.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { toLease } from "./views.js";

const PATH = "geospool client extend";

export const clientExtend: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} QUEUE NAME --lease-token TOKEN [--endpoint HOST:PORT] --lease DUR [--json]
       ${PATH} --lease-json JSON|- --lease DUR [--json]

Keep a checked-out entry longer: its lease now ends DUR from now. Only while the lease is
still held (exit 5 otherwise).

Options:
  --lease DUR   the new lease, counted from now (required)
  --json        print {name, queue, leaseUntil, endpoint}

${LEASE_HELP}

${GLOBAL_HINT}`,
        options: { ...LEASE_OPTIONS, lease: { type: "string" } },
        positionals: leasePositionals(args),
      },
      io,
    );
    if (!parsed) return 0;
    const { values } = parsed;
    if (values.lease === undefined) throw usageError("--lease: required (e.g. --lease 60s)");
    const leaseMs = parseDuration("--lease", values.lease);
    const ref = await resolveLease(values, parsed.positionals, io, ctx);
    const until = await ctx.client([ref.endpoint]).extendLease(toLease(ref), leaseMs);
    const leaseUntil = new Date(until).toISOString();
    await new Output(io, values.json === true).result(`extended ${ref.name} until ${leaseUntil}`, {
      name: ref.name,
      queue: ref.queue,
      leaseUntil,
      endpoint: ref.endpoint,
    });
    return 0;
  },
};
