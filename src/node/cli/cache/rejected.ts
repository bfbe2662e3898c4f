import { RejectionLog } from "../../../cache/rejection-log.js";
import { rejectedDirOf } from "../../cache-http/node-cache-config.js";
import { parseCommand } from "../args.js";
import type { Command } from "../command.js";
import { Output } from "../output.js";
import { iso } from "../spool/views.js";
import { loadNodeSettings, NODE_SETTINGS_HELP, splitNodeSettings } from "./node-files.js";

const PATH = "geospool cache rejected";

export const cacheRejected: Command = {
  name: "rejected",
  summary: "the uploads this node rejected, with the reason (never served)",
  async run(args, io) {
    const { settings, rest } = splitNodeSettings(args);
    const parsed = await parseCommand(
      rest,
      {
        path: PATH,
        help: `Usage: ${PATH} [--config FILE] [--<key> VALUE ...] [--narinfo] [--json]

List the narinfo uploads this node rejected, oldest first: when, the reason code, the
store path (or hash part, when the narinfo could not be read), the uploader, and what was
wrong. They are kept on this node only (cache.rejectedDir), never served nor replicated;
the newest cache.keepRejected are kept, none older than cache.rejectedTtl. Reason codes:
  file_size, file_hash   the nar uploaded does not match the narinfo's FileSize/FileHash
  nar_size, nar_hash     the nar inside it does not match NarSize/NarHash
  nar_unreadable         its compression is known but the nar could not be read
  bad_signature          a signature by a trusted key does not verify
  unsigned               no signature by a trusted key (cache.policy require)
  store_dir              its store directory is not in cache.storeDirs
  nar_missing            its nar did not come within cache.narWait
  unparsable             the narinfo could not be parsed, or names another hash part

${NODE_SETTINGS_HELP}

Options:
  --narinfo   also print each narinfo as uploaded
  --json      print a JSON array of {at, reason, hashPart, storePath, by, message, entry}
              (and narinfo with --narinfo)`,
        options: { narinfo: { type: "boolean" }, json: { type: "boolean" } },
        positionals: [],
      },
      io,
    );
    if (!parsed) return 0;
    const out = new Output(io, parsed.values.json === true);
    const withNarinfo = parsed.values.narinfo === true;
    const dir = rejectedDirOf(loadNodeSettings(settings));
    const rows = [];
    for (const r of await RejectionLog.read(dir)) {
      rows.push({
        at: iso(r.at),
        reason: r.reason,
        hashPart: r.hashPart,
        storePath: r.storePath ?? null,
        by: r.by,
        message: r.message,
        entry: r.entry,
        ...(withNarinfo
          ? { narinfo: (await RejectionLog.narinfo(dir, r.entry)).toString("utf8") }
          : {}),
      });
    }
    if (out.json) {
      await out.value(rows);
      return 0;
    }
    if (rows.length === 0) await out.line("no rejections kept");
    for (const r of rows) {
      await out.line(
        `${r.at}  ${r.reason}  ${r.storePath ?? r.hashPart}  by ${r.by}: ${r.message}`,
      );
      if (r.narinfo !== undefined)
        await out.write(`${r.narinfo.trimEnd().replace(/^/gm, "    ")}\n`);
    }
    return 0;
  },
};
