import { DEFAULT_LEASE_MS, QueueReader } from "../../../spool/index.js";
import { type JsonSpool, openJsonSpool } from "../../spool-description.js";
import { parseCommand } from "../args.js";
import { CliError } from "../cli-error.js";
import type { CliIo, Command } from "../command.js";
import { formatDuration, parseDuration } from "../duration.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { checkoutJson, describeLines, requireQueue } from "./views.js";

const PATH = "geospool spool dequeue";

export const spoolDequeue: Command = {
  name: "dequeue",
  summary: "check out the next entry of a queue, with a lease",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} DIR QUEUE [--lease DUR] [--wait DUR] [--json]

Check out the oldest entry of QUEUE and print its name (first line), metadata and lease
deadline. Finish it before the lease ends with 'geospool spool complete'; otherwise it
returns to QUEUE (or to the dead-letter queue after too many attempts).
Durations: 500ms, 30s, 10m, 1h or milliseconds. Exit 3 when nothing is available.

Options:
  --lease DUR   lease length (default ${formatDuration(DEFAULT_LEASE_MS)})
  --wait DUR    wait up to DUR for an entry to arrive (default: do not wait)
  --json        print {name, queue, attempts, leaseUntil, metadata}`,
        options: {
          lease: { type: "string" },
          wait: { type: "string" },
          json: { type: "boolean" },
        },
        positionals: ["DIR", "QUEUE"],
      },
      io,
    );
    if (!parsed) return 0;
    const [dir, queueArg] = parsed.positionals as [string, string];
    const { values } = parsed;
    const leaseMs = values.lease === undefined ? undefined : parseDuration("--lease", values.lease);
    const waitMs =
      values.wait === undefined ? 0 : parseDuration("--wait", values.wait, { allowZero: true });
    const spool = await openJsonSpool(dir);
    const queue = requireQueue(spool, queueArg);
    const r = await take(spool, queue, leaseMs, waitMs, io);
    if (r.kind === "interrupted") {
      throw new CliError("interrupted", "interrupted while waiting", ExitCode.Interrupted);
    }
    if (r.kind !== "checked_out") {
      const why = waitMs > 0 ? ` after waiting ${formatDuration(waitMs)}` : "";
      throw new CliError(
        "nothing_available",
        `nothing available in queue ${queue}${why}`,
        ExitCode.NothingAvailable,
      );
    }
    const view = checkoutJson(r.entry);
    await new Output(io, values.json === true).result(
      describeLines(view.name, {
        queue: view.queue,
        attempts: view.attempts,
        lease_until: view.leaseUntil,
        metadata: view.metadata,
      }),
      view,
    );
    return 0;
  },
};

async function take(
  spool: JsonSpool,
  queue: string,
  leaseMs: number | undefined,
  waitMs: number,
  io: CliIo,
) {
  const reader = new QueueReader(spool, queue, { leaseMs });
  try {
    if (waitMs === 0) return await reader.dequeueAvailable();
    const shutdown = io.shutdownSignal();
    // A referenced timer (AbortSignal.timeout's is not) keeps the process alive while waiting.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), waitMs);
    try {
      const r = await reader.dequeue(AbortSignal.any([shutdown, timeout.signal]));
      if (r.kind === "stopped" && shutdown.aborted) return { kind: "interrupted" } as const;
      return r;
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await reader.close();
  }
}
