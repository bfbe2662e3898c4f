import {
  DEFAULT_ALERT_AFTER_CYCLES,
  DEFAULT_CHECK_EVERY_MS,
  Monitor,
  type MonitorEvent,
} from "../../../spool/index.js";
import { openJsonSpool } from "../../spool-description.js";
import { exclusive, parseCommand, parseCount, parseList } from "../args.js";
import { toCliError, usageError } from "../cli-error.js";
import type { Command } from "../command.js";
import { formatDuration, parseDuration } from "../duration.js";
import { Output } from "../output.js";
import { LIMIT_OPTIONS, LIMITS_HELP, parseLimits } from "./limits.js";
import { iso, problemJson } from "./views.js";

const PATH = "geospool spool monitor";
const DEFAULT_REAP_EVERY_MS = 5_000;

export const spoolMonitor: Command = {
  name: "monitor",
  summary: "watch a spool: report lasting problems, return expired leases (until SIGINT/SIGTERM)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} DIR [--create [--queues a,b,c]] [--check-every DUR]
         [--alert-after-cycles N] [--reap-every DUR] [limits] [--no-repair] [--json]

Run until SIGINT or SIGTERM (then exit 0): check the spool every --check-every, print a
'start' event when a problem has lasted more than --alert-after-cycles checks and an 'end'
event when it goes away, return expired leases to their queues, and (unless --no-repair)
repair what is safe before each check. Events are printed one a line, as JSON with --json.

Options:
  --create                 create the spool first if it is missing (queues: --queues,
                           default inbox,outbox,dead)
  --queues LIST            with --create: the queues to have
  --check-every DUR        time between checks (default ${formatDuration(DEFAULT_CHECK_EVERY_MS)})
  --alert-after-cycles N   checks a problem must last before it is reported (default ${DEFAULT_ALERT_AFTER_CYCLES})
  --reap-every DUR         time between expired-lease sweeps (default ${formatDuration(DEFAULT_REAP_EVERY_MS)})
${LIMITS_HELP}
  --repair                 before each check, fix what is safe (see 'fsck --help'); the
                           default
  --no-repair              only report
  --json                   events as JSON lines: {event, at, ...}`,
        options: {
          create: { type: "boolean" },
          queues: { type: "string" },
          "check-every": { type: "string" },
          "alert-after-cycles": { type: "string" },
          "reap-every": { type: "string" },
          ...LIMIT_OPTIONS,
          repair: { type: "boolean" },
          "no-repair": { type: "boolean" },
          json: { type: "boolean" },
        },
        positionals: ["DIR"],
      },
      io,
    );
    if (!parsed) return 0;
    const [dir] = parsed.positionals as [string];
    const { values } = parsed;
    if (values.queues !== undefined && values.create !== true) {
      throw usageError("--queues: only with --create");
    }
    const checkEveryMs =
      values["check-every"] === undefined
        ? DEFAULT_CHECK_EVERY_MS
        : parseDuration("--check-every", values["check-every"]);
    const alertAfterCycles =
      values["alert-after-cycles"] === undefined
        ? DEFAULT_ALERT_AFTER_CYCLES
        : parseCount("--alert-after-cycles", values["alert-after-cycles"]);
    const reapEveryMs =
      values["reap-every"] === undefined
        ? DEFAULT_REAP_EVERY_MS
        : parseDuration("--reap-every", values["reap-every"]);
    const queues = values.queues === undefined ? undefined : parseList(values.queues);
    const out = new Output(io, values.json === true);
    const signal = io.shutdownSignal();
    const spool = await openJsonSpool(dir, { create: values.create === true, queues });
    const monitor = new Monitor(spool, parseLimits(spool, values));
    exclusive(values, ["repair", "no-repair"]);
    // Repairing is what an unattended daemon should do (`npm start` relies on it); fsck
    // is the command that only looks.
    const repair = values["no-repair"] !== true;

    // Events may come from the reaper and the daemon at once; keep lines whole and in order.
    let printing = Promise.resolve();
    const emit = (
      event: string,
      fields: Record<string, unknown>,
      human: string,
      atMs = Date.now(),
    ) => {
      const at = iso(atMs);
      printing = printing.then(() =>
        out.json ? out.value({ event, at, ...fields }) : out.line(`${at} ${human}`),
      );
      return printing;
    };

    const first = spool.queues.includes("inbox") ? "inbox" : spool.queues[0];
    await emit(
      "ready",
      { dir, queues: spool.queues, checkEveryMs, alertAfterCycles, repair },
      `monitoring ${dir} (queues: ${spool.queues.join(", ")}); check every ${formatDuration(checkEveryMs)}, alert after ${alertAfterCycles} checks, repair ${repair ? "on" : "off"}`,
    );
    await out.note(
      `From another terminal:\n  ${io.program} spool enqueue ${dir} ${first} --data hello\n  ${io.program} spool dequeue ${dir} ${first} --wait 10s\nStop with Ctrl-C.`,
    );

    const emitError = (err: unknown) => {
      const e = toCliError(err);
      return emit("error", { code: e.code, message: e.message }, `error ${e.code}: ${e.message}`);
    };
    const reaper = spool.startLeaseReaper(reapEveryMs, {
      signal,
      onExpired: (e) =>
        void emit(
          "lease_expired",
          { name: e.name, queue: e.queue, to: e.to, attempts: e.attempts },
          `lease expired: ${e.name} returned from ${e.queue} to ${e.to} (attempt ${e.attempts})`,
        ),
      onError: (err) => void emitError(err),
    });
    try {
      await monitor.daemon({
        signal,
        checkEveryMs,
        alertAfterCycles,
        repair,
        onEvent: (e: MonitorEvent<string>) =>
          emit(
            e.kind,
            { problem: problemJson(e.problem) },
            `${e.kind === "start" ? "problem:" : "resolved:"} ${problemJson(e.problem).description}`,
            e.at,
          ),
        onRepair: (a) =>
          void emit(
            "repaired",
            { problem: problemJson(a.problem), action: a.action },
            `repaired: ${problemJson(a.problem).description}: ${a.action}`,
          ),
        onError: (err) => void emitError(err),
      });
    } finally {
      reaper.stop();
    }
    await emit("stopped", { dir }, `stopped monitoring ${dir}`);
    return 0;
  },
};
