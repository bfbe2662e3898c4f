import { createHash } from "node:crypto";
import { parseCommand, parseCount } from "../args.js";
import { CliError, usageError } from "../cli-error.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { writeBytes } from "./views.js";

const PATH = "geospool client read";
/**
 * Bytes asked for per ReadData call. GeospoolClient.readData gathers a whole reply in
 * memory, so large data is read window by window (each window may come from another node:
 * the data is content-addressed).
 */
const WINDOW = 4 * 1024 * 1024;

export const clientRead: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} NAME [--offset N] [--limit N] [--json]

Write the data of entry NAME to standard output, from byte --offset, at most --limit
bytes. A whole read (no --offset, no --limit) is checked against the entry's sha256.
Exit 4 when the node has no such entry (or not its data yet).

Options:
  --offset N   the first byte to read (default 0)
  --limit N    read at most N bytes (default: to the end)
  --json       print {name, offset, bytes, dataSize, sha256, verified, dataBase64}
               instead of the raw data (for small data)

${GLOBAL_HINT}`,
        options: {
          offset: { type: "string" },
          limit: { type: "string" },
          json: { type: "boolean" },
        },
        positionals: ["NAME"],
      },
      io,
    );
    if (!parsed) return 0;
    const [name] = parsed.positionals as [string];
    const { values } = parsed;
    const start = values.offset === undefined ? 0 : parseCount("--offset", values.offset);
    const limit = values.limit === undefined ? undefined : parseCount("--limit", values.limit);
    if (limit === 0) throw usageError("--limit: must be more than 0");
    const json = values.json === true;
    const client = ctx.client();
    const { entry } = await client.stat(name);
    const whole = start === 0 && limit === undefined;
    const hash = createHash("sha256");
    const kept: Buffer[] = [];
    let offset = start;
    let remaining = limit ?? Number.POSITIVE_INFINITY;
    for (;;) {
      const want = Math.min(WINDOW, remaining);
      const { data } = await client.readData(name, { offset, limit: want });
      hash.update(data);
      if (json) kept.push(data);
      else await writeBytes(io.stdout, data);
      offset += data.length;
      remaining -= data.length;
      if (data.length < want || remaining === 0) break;
    }
    const sha256 = hash.digest("hex");
    if (whole && sha256 !== entry.dataSha256) {
      throw new CliError(
        "data_loss",
        `the data read for ${name} has sha256 ${sha256}, not the entry's ${entry.dataSha256}`,
        ExitCode.Failure,
      );
    }
    if (json) {
      const bytes = Buffer.concat(kept);
      await new Output(io, true).value({
        name,
        offset: start,
        bytes: bytes.length,
        dataSize: entry.dataSize,
        sha256,
        verified: whole,
        dataBase64: bytes.toString("base64"),
      });
    }
    return 0;
  },
};
