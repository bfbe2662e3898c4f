import { Expert } from "../../../spool/index.js";
import { openJsonSpool } from "../../spool-description.js";
import { parseCommand, parseJsonObject } from "../args.js";
import { CliError, usageError } from "../cli-error.js";
import type { Command } from "../command.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { requireQueue } from "./views.js";

const PATH = "geospool spool complete";

export const spoolComplete: Command = {
  name: "complete",
  summary: "finish a checkout: save it to a queue, remove it, or release it",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} DIR QUEUE NAME (--save-to QUEUE [--metadata JSON] | --remove | --release) [--json]

Finish the checkout of NAME made from QUEUE by an earlier 'geospool spool dequeue'.
Exit 4 if there is no such checkout; exit 5 if its lease has ended (nothing is changed:
the entry goes back to its queue, or may already be with another holder).

Options:
  --save-to QUEUE    move the entry into QUEUE
  --metadata JSON    with --save-to: replace its metadata with this JSON object
  --remove           delete the entry and its data
  --release          give it back unfinished: it counts as a failed delivery and returns
                     to QUEUE (or to the dead-letter queue after too many attempts)
  --json             print {name, queue, action, to}`,
        options: {
          "save-to": { type: "string" },
          metadata: { type: "string" },
          remove: { type: "boolean" },
          release: { type: "boolean" },
          json: { type: "boolean" },
        },
        positionals: ["DIR", "QUEUE", "NAME"],
      },
      io,
    );
    if (!parsed) return 0;
    const [dir, queueArg, name] = parsed.positionals as [string, string, string];
    const { values } = parsed;
    const chosen = [
      values["save-to"] !== undefined && "--save-to",
      values.remove === true && "--remove",
      values.release === true && "--release",
    ].filter((x): x is string => typeof x === "string");
    if (chosen.length !== 1) {
      throw usageError(
        chosen.length === 0
          ? `spool complete: give one of --save-to QUEUE, --remove, --release`
          : `spool complete: ${chosen.join(" and ")} cannot be used together`,
      );
    }
    if (values.metadata !== undefined && values["save-to"] === undefined) {
      throw usageError("--metadata: only with --save-to");
    }
    const metadata =
      values.metadata === undefined ? undefined : parseJsonObject("--metadata", values.metadata);
    const spool = await openJsonSpool(dir);
    const queue = requireQueue(spool, queueArg);
    const saveTo =
      values["save-to"] === undefined
        ? undefined
        : requireQueue(spool, values["save-to"], "--save-to");
    const co = await Expert.checkedOutUnsafe(spool, queue, name);
    if (co === undefined) {
      throw new CliError("not_found", `no checkout ${name} in queue ${queue}`, ExitCode.NotFound);
    }
    let action: "saved" | "removed" | "released";
    let to: string | undefined;
    let r: { kind: "done" | "lease_lost" };
    if (saveTo !== undefined) {
      if (metadata !== undefined) co.update(() => metadata);
      action = "saved";
      to = saveTo;
      r = await co.save(saveTo);
    } else if (values.remove === true) {
      action = "removed";
      r = await co.remove();
    } else {
      action = "released";
      const released = await co.release();
      to = released.to;
      r = released;
    }
    if (r.kind === "lease_lost") {
      throw new CliError(
        "lease_lost",
        `the lease on ${name} has ended; nothing was changed (it returns to ${queue}, or another holder has it)`,
        ExitCode.LeaseLost,
      );
    }
    const human = to === undefined ? `${action} ${name}` : `${action} ${name} to ${to}`;
    await new Output(io, values.json === true).result(human, {
      name,
      queue,
      action,
      ...(to === undefined ? {} : { to }),
    });
    return 0;
  },
};
