import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { DataSource } from "../../../spool/index.js";
import { openJsonSpool } from "../../spool-description.js";
import { exclusive, parseCommand, parseJsonObject } from "../args.js";
import { usageError } from "../cli-error.js";
import type { CliIo, Command } from "../command.js";
import { Output } from "../output.js";
import { requireQueue } from "./views.js";

const PATH = "geospool spool enqueue";

export const spoolEnqueue: Command = {
  name: "enqueue",
  summary: "add an entry to a queue; prints its name",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} DIR QUEUE [--metadata JSON] [--data-file PATH | --data STRING] [--json]

Add an entry to QUEUE and print its name once it is durable. The data comes from
--data-file, --data, or else standard input when it is not a terminal (else it is empty).

Options:
  --metadata JSON    the entry's metadata, a JSON object (default {})
  --data-file PATH   read the data from PATH (streamed)
  --data STRING      the data, as UTF-8 text
  --json             print {name, queue}`,
        options: {
          metadata: { type: "string" },
          "data-file": { type: "string" },
          data: { type: "string" },
          json: { type: "boolean" },
        },
        positionals: ["DIR", "QUEUE"],
      },
      io,
    );
    if (!parsed) return 0;
    const [dir, queueArg] = parsed.positionals as [string, string];
    const { values } = parsed;
    exclusive(values, ["data", "data-file"]);
    const metadata =
      values.metadata === undefined ? {} : parseJsonObject("--metadata", values.metadata);
    const dataFile = values["data-file"];
    if (dataFile !== undefined) await requireReadableFile(dataFile);
    const spool = await openJsonSpool(dir);
    const queue = requireQueue(spool, queueArg);
    const entry = await spool.enqueue(queue, metadata, dataSource(values.data, dataFile, io));
    await new Output(io, values.json === true).result(entry.name, { name: entry.name, queue });
    return 0;
  },
};

function dataSource(data: string | undefined, dataFile: string | undefined, io: CliIo): DataSource {
  if (data !== undefined) return data;
  if (dataFile !== undefined) return createReadStream(dataFile);
  if (io.stdin.isTTY === true) return "";
  return io.stdin as AsyncIterable<Uint8Array>;
}

async function requireReadableFile(path: string): Promise<void> {
  const st = await stat(path).catch((err: { code?: string }) => {
    throw usageError(`--data-file: cannot read ${path} (${err.code ?? "error"})`);
  });
  if (!st.isFile()) throw usageError(`--data-file: ${path} is not a regular file`);
}
