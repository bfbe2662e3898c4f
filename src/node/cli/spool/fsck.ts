import { Monitor, type Problem, type RepairAction } from "../../../spool/index.js";
import { openJsonSpool } from "../../spool-description.js";
import { parseCommand } from "../args.js";
import type { Command } from "../command.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { LIMIT_OPTIONS, LIMITS_HELP, parseLimits } from "./limits.js";
import { problemJson } from "./views.js";

const PATH = "geospool spool fsck";

export const spoolFsck: Command = {
  name: "fsck",
  summary: "check a spool for stale, orphaned and duplicated files (and repair what is safe)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} DIR [limits] [--repair] [--json]

Check the spool once and print each problem, one a line. Exit 0 when there are none,
1 when problems remain (after repair, with --repair).

Options:
${LIMITS_HELP}
  --repair                 fix what is safe: delete stale tmp files and abandoned data,
                           restore lost registry files, return expired leases
  --json                   print {problems: [...], repaired: [{problem, action}]}`,
        options: { ...LIMIT_OPTIONS, repair: { type: "boolean" }, json: { type: "boolean" } },
        positionals: ["DIR"],
      },
      io,
    );
    if (!parsed) return 0;
    const [dir] = parsed.positionals as [string];
    const { values } = parsed;
    const out = new Output(io, values.json === true);
    const spool = await openJsonSpool(dir);
    const monitor = new Monitor(spool, parseLimits(spool, values));
    let repaired: RepairAction<string>[] = [];
    let problems: Problem<string>[];
    if (values.repair === true) {
      const report = await monitor.repair();
      repaired = report.repaired;
      problems = report.remaining;
    } else {
      problems = await monitor.fsck();
    }
    if (out.json) {
      await out.value({
        problems: problems.map(problemJson),
        repaired: repaired.map((a) => ({ problem: problemJson(a.problem), action: a.action })),
      });
    } else {
      const lines = [
        ...repaired.map((a) => `repaired: ${problemJson(a.problem).description}: ${a.action}`),
        ...problems.map((p) => problemJson(p).description),
      ];
      if (problems.length === 0) lines.push("no problems");
      await out.write(`${lines.join("\n")}\n`);
    }
    return problems.length === 0 ? ExitCode.Ok : ExitCode.ProblemsRemain;
  },
};
