import { Expert, SpoolError, SpoolErrorCode } from "../../../spool/index.js";
import { type JsonSpool, openJsonSpool } from "../../spool-description.js";
import { parseCommand } from "../args.js";
import type { Command } from "../command.js";
import { Output } from "../output.js";
import { isEnoent, iso, requireQueue } from "./views.js";

const PATH = "geospool spool list";
/** Entries whose details are read at once; memory stays bounded by this, not the queue. */
const BATCH = 64;
/** Names per write in the plain listing. */
const NAMES_PER_WRITE = 1000;

export const spoolList: Command = {
  name: "list",
  summary: "list the entries of a queue (or its checkouts), oldest first",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} DIR QUEUE [--checked-out] [--json]

Print the names of the entries waiting in QUEUE, one a line, in name order (oldest first).

Options:
  --checked-out   list the entries checked out of QUEUE instead
  --json          print a JSON array of {name, queue, attempts, mtime} (checkouts also
                  have leaseUntil); mtime is the entry's last transition (enqueue,
                  checkout, save). Details are read a few at a time as they are printed.`,
        options: { "checked-out": { type: "boolean" }, json: { type: "boolean" } },
        positionals: ["DIR", "QUEUE"],
      },
      io,
    );
    if (!parsed) return 0;
    const [dir, queueArg] = parsed.positionals as [string, string];
    const checkedOut = parsed.values["checked-out"] === true;
    const out = new Output(io, parsed.values.json === true);
    const spool = await openJsonSpool(dir);
    const queue = requireQueue(spool, queueArg);
    const names = checkedOut
      ? await spool.listCheckedOutNames(queue)
      : await spool.listNames(queue);
    if (!out.json) {
      for (let i = 0; i < names.length; i += NAMES_PER_WRITE) {
        await out.write(`${names.slice(i, i + NAMES_PER_WRITE).join("\n")}\n`);
      }
      return 0;
    }
    await out.write("[");
    let first = true;
    for (let i = 0; i < names.length; i += BATCH) {
      const batch = names.slice(i, i + BATCH);
      const rows = await Promise.all(
        batch.map((name) => (checkedOut ? checkoutRow : queuedRow)(spool, queue, name)),
      );
      let text = "";
      for (const row of rows) {
        if (row === undefined) continue; // gone since the listing: taken or removed
        text += `${first ? "\n" : ",\n"}${JSON.stringify(row)}`;
        first = false;
      }
      if (text) await out.write(text);
    }
    await out.write(first ? "]\n" : "\n]\n");
    return 0;
  },
};

async function queuedRow(spool: JsonSpool, queue: string, name: string) {
  const entry = spool.entry(queue, name);
  return ifPresent(async () => {
    const [{ attempts }, st] = await Promise.all([entry.direct.read(), entry.stat()]);
    return { name, queue, attempts, mtime: iso(st.mtimeMs) };
  });
}

async function checkoutRow(spool: JsonSpool, queue: string, name: string) {
  return ifPresent(async () => {
    const co = await Expert.checkedOutUnsafe(spool, queue, name);
    if (co === undefined) return undefined;
    const st = await spool.entry(queue, name).stat();
    return {
      name,
      queue,
      attempts: co.attempts,
      mtime: iso(st.mtimeMs),
      leaseUntil: iso(co.leaseUntil),
    };
  });
}

async function ifPresent<T>(f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) return undefined;
    // checkedOutUnsafe reads the file after a stat; a checkout finished in between is ENOENT.
    if (isEnoent(err)) return undefined;
    throw err;
  }
}
