import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, type ReadStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { exclusive, parseCommand } from "../args.js";
import { usageError } from "../cli-error.js";
import type { CliIo } from "../command.js";
import { Output } from "../output.js";
import { acrossEndpoints } from "./failover.js";
import { type ClientContext, type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { entryJson } from "./views.js";

const PATH = "geospool client enqueue";
/** Standard input up to this size is held in memory; more is spilled to a temporary file. */
const STDIN_IN_MEMORY = 16 * 1024 * 1024;

/** Data to upload: bytes, or a file that each attempt reads afresh. */
type Payload = { kind: "bytes"; bytes: Buffer } | { kind: "file"; path: string };

export const clientEnqueue: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} QUEUE [--metadata STRING] [--data STRING | --data-file PATH]
         [--idempotency-key KEY] [--json]

Create an entry in QUEUE and print its name once the node has stored it durably. The data
comes from --data, --data-file, or else standard input when it is not a terminal (else it
is empty). Every try carries the same idempotency key (made up when not given), so a retry
on another node after a lost reply never creates a second entry.

Options:
  --metadata STRING        the entry's metadata (opaque to the node; default empty)
  --data STRING            the data, as UTF-8 text
  --data-file PATH         read the data from PATH (streamed; re-read on a retry)
  --idempotency-key KEY    the same key within the node's dedup window returns the first
                           entry instead of creating another (deduplicated: true)
  --json                   print the entry with deduplicated and endpoint

${GLOBAL_HINT}`,
        options: {
          metadata: { type: "string" },
          data: { type: "string" },
          "data-file": { type: "string" },
          "idempotency-key": { type: "string" },
          json: { type: "boolean" },
        },
        positionals: ["QUEUE"],
      },
      io,
    );
    if (!parsed) return 0;
    const [queue] = parsed.positionals as [string];
    const { values } = parsed;
    exclusive(values, ["data", "data-file"]);
    if (values["idempotency-key"] === "") throw usageError("--idempotency-key: empty");
    const dataFile = values["data-file"];
    if (dataFile !== undefined) await requireReadableFile(dataFile);
    const idempotencyKey = values["idempotency-key"] ?? randomUUID();
    const metadata = values.metadata ?? "";
    const endpoints = ctx.endpoints();

    const spill: { dir?: string } = {};
    try {
      const payload: Payload =
        values.data !== undefined
          ? { kind: "bytes", bytes: Buffer.from(values.data) }
          : dataFile !== undefined
            ? { kind: "file", path: dataFile }
            : await readStdin(io, spill);
      const r = await upload(ctx, endpoints, queue, payload, { metadata, idempotencyKey });
      await new Output(io, values.json === true).result(r.entry.name, {
        ...entryJson(r.entry),
        deduplicated: r.deduplicated,
        endpoint: r.endpoint,
      });
      return 0;
    } finally {
      if (spill.dir) await rm(spill.dir, { recursive: true, force: true });
    }
  },
};

async function upload(
  ctx: ClientContext,
  endpoints: string[],
  queue: string,
  payload: Payload,
  options: { metadata: string; idempotencyKey: string },
) {
  // Bytes: the client fails over by itself.
  if (payload.kind === "bytes") return ctx.client().enqueue(queue, payload.bytes, options);
  // A stream is sent once by the client; fail over here, re-reading the file each time.
  return acrossEndpoints(endpoints, ctx.settings().retryForMs, async (endpoint) => {
    const stream: ReadStream = createReadStream(payload.path);
    try {
      return await ctx.single(endpoint).enqueue(queue, stream, options);
    } finally {
      stream.destroy();
    }
  });
}

/** Standard input as bytes, or (when large) spilled into a file in a temporary directory. */
async function readStdin(io: CliIo, spill: { dir?: string }): Promise<Payload> {
  if (io.stdin.isTTY === true) return { kind: "bytes", bytes: Buffer.alloc(0) };
  const parts: Buffer[] = [];
  let size = 0;
  const input = io.stdin as AsyncIterable<Buffer | string>;
  const iterator = input[Symbol.asyncIterator]();
  for (;;) {
    const next = await iterator.next();
    if (next.done) return { kind: "bytes", bytes: Buffer.concat(parts) };
    const chunk = typeof next.value === "string" ? Buffer.from(next.value) : next.value;
    parts.push(chunk);
    size += chunk.length;
    if (size > STDIN_IN_MEMORY) break;
  }
  spill.dir = await mkdtemp(join(tmpdir(), "geospool-stdin-"));
  const path = join(spill.dir, "data");
  async function* rest(): AsyncGenerator<Buffer> {
    yield* parts.splice(0);
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield typeof next.value === "string" ? Buffer.from(next.value) : next.value;
    }
  }
  await pipeline(rest(), createWriteStream(path, { mode: 0o600 }));
  return { kind: "file", path };
}

async function requireReadableFile(path: string): Promise<void> {
  const st = await stat(path).catch((err: { code?: string }) => {
    throw usageError(`--data-file: cannot read ${path} (${err.code ?? "error"})`);
  });
  if (!st.isFile()) throw usageError(`--data-file: ${path} is not a regular file`);
}
