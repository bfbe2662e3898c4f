import { openJsonSpool } from "../../spool-description.js";
import { parseCommand, parseList } from "../args.js";
import { usageError } from "../cli-error.js";
import type { Command } from "../command.js";
import { Output } from "../output.js";

const PATH = "geospool spool create";

export const spoolCreate: Command = {
  name: "create",
  summary: "create a spool directory (or add queues to one)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} DIR [--queues a,b,c] [--json]

Create the spool DIR (and any parent directory). Queues default to inbox,outbox,dead
(dead is the dead-letter queue). On an existing spool, adds the queues it lacks.
A non-empty directory that is not a spool is refused and left untouched.

Options:
  --queues LIST   comma-separated queue names (default: inbox,outbox,dead)
  --json          print {dir, queues}`,
        options: { queues: { type: "string" }, json: { type: "boolean" } },
        positionals: ["DIR"],
      },
      io,
    );
    if (!parsed) return 0;
    const [dir] = parsed.positionals as [string];
    const { values } = parsed;
    let queues: string[] | undefined;
    if (values.queues !== undefined) {
      queues = parseList(values.queues);
      if (queues.length === 0) throw usageError("--queues: give at least one queue name");
    }
    const spool = await openJsonSpool(dir, { create: true, queues });
    const out = new Output(io, values.json === true);
    await out.result(`spool ${dir} ready; queues: ${spool.queues.join(", ")}`, {
      dir,
      queues: spool.queues,
    });
    return 0;
  },
};
