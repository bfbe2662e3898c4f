import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import type { BulkEntry, BulkResult } from "../../client/bulk.js";
import { parseCommand, parseCount } from "../args.js";
import { usageError } from "../cli-error.js";
import type { CliIo } from "../command.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { exitCodeOfStatus } from "./errors.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { entryJson } from "./views.js";

const PATH = "geospool client enqueue-many";

/** One entry read from the input, with where it came from (`file:line`, or a file's path). */
type Item = { source: string; entry: BulkEntry } | { source: string; problem: string };

export const clientEnqueueMany: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} QUEUE [--from PATH]... [--batch-entries N] [--concurrency N] [--json]

Create many small entries, sent in EnqueueBatch calls (each a few hundred entries, made
durable together by the node), a few calls under way at once. Prints each entry's name as
the node stores it, in input order. Each entry is stored whole or not at all, on its own:
one refused (bad line, queue, size) does not stop the others; the exit code is then that of
the first failure, and a summary goes to standard error.

Input (--from, repeatable, read in order; standard input when none is given):
  FILE or -    newline-delimited JSON, one entry per line (blank lines skipped):
                 {"data": "text"} or {"dataBase64": "..."}, and optionally
                 "metadata" (text) or "metadataBase64", "queue" (else QUEUE),
                 "idempotencyKey" (else one is made up, so a re-run makes new entries:
                 give keys to make an import safe to run again)
  DIRECTORY    each regular file in it (not recursive, by name) is one entry of QUEUE,
               its contents the data; its idempotency key is derived from the file's name
               and contents, so importing a directory again within the node's dedup
               window makes nothing twice

Options:
  --from PATH          an input file, '-' for standard input, or a directory
  --batch-entries N    entries per EnqueueBatch call (default 500; at most the node's
                       limits.maxBatchEntries)
  --concurrency N      calls under way at once (default 4)
  --json               one JSON object per entry: the entry with deduplicated and source,
                       or {"source", "error": {code, message}}

${GLOBAL_HINT}`,
        options: {
          from: { type: "string", multiple: true },
          "batch-entries": { type: "string" },
          concurrency: { type: "string" },
          json: { type: "boolean" },
        },
        positionals: ["QUEUE"],
      },
      io,
    );
    if (!parsed) return 0;
    const [queue] = parsed.positionals as [string];
    const { values } = parsed;
    const batchEntries = positive("--batch-entries", values["batch-entries"], 500);
    const concurrency = positive("--concurrency", values.concurrency, 4);
    const sources = values.from ?? ["-"];
    if (sources.filter((s) => s === "-").length > 1) {
      throw usageError("--from: standard input ('-') can be read only once");
    }
    const kinds = await Promise.all(sources.map((s) => sourceKind(s)));
    const out = new Output(io, values.json === true);
    const client = ctx.client();

    const sent: string[] = [];
    let ok = 0;
    let deduplicated = 0;
    let failed = 0;
    let firstFailure: ExitCode | undefined;
    const fail = async (source: string, code: string, message: string, exit: ExitCode) => {
      failed++;
      firstFailure ??= exit;
      if (out.json) await out.value({ source, error: { code, message } });
      else await out.note(`geospool: ${source}: ${message}`);
    };
    async function* entries(): AsyncGenerator<BulkEntry> {
      for (const [i, s] of sources.entries()) {
        const items = kinds[i] === "dir" ? readDirectory(s, queue) : readLines(s, io, queue);
        for await (const item of items) {
          if ("problem" in item) {
            await fail(item.source, "invalid_argument", item.problem, ExitCode.Usage);
            continue;
          }
          sent.push(item.source);
          yield item.entry;
        }
      }
    }
    for await (const r of client.enqueueMany(entries(), { batchEntries, concurrency })) {
      const source = sent.shift() ?? "";
      if (r.ok) {
        ok++;
        if (r.deduplicated) deduplicated++;
        await out.result(r.entry.name, {
          ...entryJson(r.entry),
          deduplicated: r.deduplicated,
          source,
        });
      } else {
        await fail(source, codeOf(r), r.message, exitCodeOfStatus(r.code));
      }
    }
    await out.note(
      `enqueued ${ok} entries (${deduplicated} deduplicated)${failed > 0 ? `, ${failed} failed` : ""}`,
    );
    return firstFailure ?? 0;
  },
};

function codeOf(r: Extract<BulkResult, { ok: false }>): string {
  return r.serviceCode || String(r.code);
}

function positive(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = parseCount(flag, text);
  if (n < 1) throw usageError(`${flag}: must be at least 1`);
  return n;
}

async function sourceKind(path: string): Promise<"stdin" | "file" | "dir"> {
  if (path === "-") return "stdin";
  const st = await stat(path).catch((err: { code?: string }) => {
    throw usageError(`--from: cannot read ${path} (${err.code ?? "error"})`);
  });
  if (st.isDirectory()) return "dir";
  if (!st.isFile()) throw usageError(`--from: ${path} is not a file or directory`);
  return "file";
}

/** The entries of a newline-delimited JSON file (or standard input, `-`). */
async function* readLines(path: string, io: CliIo, queue: string): AsyncGenerator<Item> {
  const input = path === "-" ? (io.stdin as Readable) : createReadStream(path);
  const name = path === "-" ? "stdin" : path;
  let n = 0;
  for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
    n++;
    if (line.trim() === "") continue;
    yield parseLine(line, `${name}:${n}`, queue);
  }
}

const LINE_KEYS = new Set([
  "data",
  "dataBase64",
  "metadata",
  "metadataBase64",
  "queue",
  "idempotencyKey",
]);

function parseLine(line: string, source: string, queue: string): Item {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (err) {
    return { source, problem: `not valid JSON (${err instanceof Error ? err.message : err})` };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    return { source, problem: 'each line must be a JSON object, like {"data":"..."}' };
  }
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !LINE_KEYS.has(k));
  if (unknown.length > 0) return { source, problem: `unknown field ${JSON.stringify(unknown[0])}` };
  for (const k of LINE_KEYS) {
    if (o[k] !== undefined && typeof o[k] !== "string") {
      return { source, problem: `field ${JSON.stringify(k)} must be a string` };
    }
  }
  const s = o as Record<string, string | undefined>;
  if (s.data !== undefined && s.dataBase64 !== undefined) {
    return { source, problem: 'give "data" or "dataBase64", not both' };
  }
  if (s.metadata !== undefined && s.metadataBase64 !== undefined) {
    return { source, problem: 'give "metadata" or "metadataBase64", not both' };
  }
  const data = s.dataBase64 !== undefined ? base64(s.dataBase64) : Buffer.from(s.data ?? "");
  const metadata =
    s.metadataBase64 !== undefined ? base64(s.metadataBase64) : Buffer.from(s.metadata ?? "");
  if (data === undefined || metadata === undefined) {
    return { source, problem: "a base64 field is not valid base64" };
  }
  const entry: BulkEntry = { queue: s.queue ?? queue, data, metadata };
  if (s.idempotencyKey !== undefined) entry.idempotencyKey = s.idempotencyKey;
  return { source, entry };
}

function base64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  return Buffer.from(text, "base64");
}

/** Each regular file of `dir` (sorted by name) as one entry, keyed by its name and contents. */
async function* readDirectory(dir: string, queue: string): AsyncGenerator<Item> {
  const files = (await readdir(dir, { withFileTypes: true }))
    .filter((d) => d.isFile())
    .map((d) => d.name)
    .sort();
  for (const file of files) {
    const path = join(dir, file);
    const data = await readFile(path);
    const key = createHash("sha256").update(file).update("\0").update(data).digest("hex");
    yield { source: path, entry: { queue, data, idempotencyKey: `file:${key}` } };
  }
}
