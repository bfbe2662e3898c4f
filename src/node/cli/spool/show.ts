import { pipeline } from "node:stream/promises";
import { type DataFile, Expert, SpoolError, SpoolErrorCode } from "../../../spool/index.js";
import { type JsonMetadata, type JsonSpool, openJsonSpool } from "../../spool-description.js";
import { parseCommand } from "../args.js";
import { CliError } from "../cli-error.js";
import type { Command } from "../command.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { describeLines, isEnoent, iso, requireQueue } from "./views.js";

const PATH = "geospool spool show";

interface Found {
  state: "queued" | "checked_out";
  metadata: JsonMetadata;
  attempts: number;
  leaseUntil?: number;
  data: DataFile;
}

export const spoolShow: Command = {
  name: "show",
  summary: "show an entry's metadata, attempts and data size (or its data)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} DIR QUEUE NAME [--data] [--json]

Show the entry NAME of QUEUE, waiting or checked out: its metadata, failed deliveries
(attempts), data size, and lease deadline if checked out. Exit 4 if it is not there.

Options:
  --data   write the entry's data (only) to standard output
  --json   print {name, queue, state, attempts, mtime, dataSize, metadata[, leaseUntil]}`,
        options: { data: { type: "boolean" }, json: { type: "boolean" } },
        positionals: ["DIR", "QUEUE", "NAME"],
      },
      io,
    );
    if (!parsed) return 0;
    const [dir, queueArg, name] = parsed.positionals as [string, string, string];
    const out = new Output(io, parsed.values.json === true);
    const spool = await openJsonSpool(dir);
    const queue = requireQueue(spool, queueArg);
    const found = await find(spool, queue, name);
    if (found === undefined) {
      throw new CliError(
        "not_found",
        `no entry ${name} in queue ${queue} (waiting or checked out)`,
        ExitCode.NotFound,
      );
    }
    if (parsed.values.data === true) {
      await pipeline(found.data.createReadStream(), io.stdout, { end: false }).catch((err) => {
        if (isEnoent(err)) throw missingData(name);
        throw err;
      });
      return 0;
    }
    const size = await found.data.stat().then(
      (st) => st.size,
      (err) => {
        if (isEnoent(err)) return null;
        throw err;
      },
    );
    const mtime = await spool
      .entry(queue, name)
      .stat()
      .then((st) => iso(st.mtimeMs))
      .catch(() => null);
    const leaseUntil = found.leaseUntil === undefined ? undefined : iso(found.leaseUntil);
    const fields = {
      queue,
      state: found.state,
      attempts: found.attempts,
      mtime,
      leaseUntil,
      dataSize: size,
      metadata: found.metadata,
    };
    await out.result(
      describeLines(name, {
        queue,
        state: found.state,
        attempts: found.attempts,
        mtime: mtime ?? "unknown (no registry file)",
        lease_until: leaseUntil,
        data_size: size ?? "missing",
        metadata: found.metadata,
      }),
      { name, ...fields },
    );
    return 0;
  },
};

async function find(spool: JsonSpool, queue: string, name: string): Promise<Found | undefined> {
  const entry = spool.entry(queue, name);
  try {
    const { metadata, attempts } = await entry.direct.read();
    return { state: "queued", metadata, attempts, data: entry.dataFile() };
  } catch (err) {
    if (!(err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound)) throw err;
  }
  const co = await Expert.checkedOutUnsafe(spool, queue, name).catch((err) => {
    if (isEnoent(err)) return undefined;
    throw err;
  });
  if (co === undefined) return undefined;
  return {
    state: "checked_out",
    metadata: co.contents,
    attempts: co.attempts,
    leaseUntil: co.leaseUntil,
    data: co.dataFile(),
  };
}

function missingData(name: string): CliError {
  return new CliError("missing_data", `entry ${name} has no data file`, ExitCode.Failure);
}
