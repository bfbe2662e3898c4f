import { servedPaths } from "../../../cache/cache-inventory.js";
import { parseHashPart } from "../../../cache/store-path.js";
import { parseCommand } from "../args.js";
import { CliError, usageError } from "../cli-error.js";
import type { Command } from "../command.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { iso } from "../spool/views.js";
import { servedRow } from "./ls.js";
import {
  loadNodeSettings,
  NODE_SETTINGS_HELP,
  readCacheEntries,
  splitNodeSettings,
  table,
} from "./node-files.js";

const PATH = "geospool cache show";

/** The hash part of `HASHPART`, `<hash>.narinfo`, `<hash>-<name>` or `/nix/store/<hash>-<name>`. */
export function hashPartArgument(arg: string): string {
  const base = arg.slice(arg.lastIndexOf("/") + 1);
  try {
    return parseHashPart(base.split(/[-.]/)[0]!);
  } catch (err) {
    throw usageError(
      `cache show: ${JSON.stringify(arg)} is not a hash part or store path: ${(err as Error).message}`,
    );
  }
}

export const cacheShow: Command = {
  name: "show",
  summary: "the narinfo served for a store path, and the entries holding it",
  async run(args, io) {
    const { settings, rest } = splitNodeSettings(args);
    const parsed = await parseCommand(
      rest,
      {
        path: PATH,
        help: `Usage: ${PATH} HASHPART|STOREPATH [--config FILE] [--<key> VALUE ...] [--json]

Print the narinfo this node serves for a store path (given as its 32-character hash part,
as /nix/store/<hash>-<name>, or as <hash>-<name>), byte for byte, then every entry of the
cache queue holding an upload of it: the one served and the others (another compression,
another region's upload), with the nar each holds. Exit 4 when nothing is served for it.

${NODE_SETTINGS_HELP}

Options:
  --json   print {storePath, hashPart, narSize, fileSize, compression, url, signatures,
           trust, origin, entry, narinfo, entries:[{entry, served, url, origin, acceptedAt,
           trust, by, dataSize, sha256}]}`,
        options: { json: { type: "boolean" } },
        positionals: ["HASHPART"],
      },
      io,
    );
    if (!parsed) return 0;
    const hashPart = hashPartArgument(parsed.positionals[0]!);
    const out = new Output(io, parsed.values.json === true);
    const config = loadNodeSettings(settings);
    const found = servedPaths(await readCacheEntries(config)).get(hashPart);
    if (found === undefined) {
      throw new CliError("not_found", `nothing is served for ${hashPart}`, ExitCode.NotFound);
    }
    const entries = found.holders.map((h) => ({
      entry: h.entry,
      served: h.entry === found.served.entry,
      url: h.record.url,
      origin: h.record.origin,
      acceptedAt: iso(h.record.hlc),
      trust: h.record.trust,
      by: h.record.by,
      dataSize: h.size,
      sha256: h.sha256,
    }));
    const narinfo = found.served.record.narinfo;
    if (out.json) {
      await out.value({ ...servedRow(found), narinfo, entries });
      return 0;
    }
    const rows = entries.map((e) => [
      e.served ? "served" : "held",
      e.entry,
      e.url,
      e.origin,
      e.trust,
      e.by,
      e.acceptedAt,
    ]);
    const header = ["", "ENTRY", "NAR", "ORIGIN", "TRUST", "BY", "ACCEPTED"];
    await out.write(`${narinfo}${narinfo.endsWith("\n") ? "" : "\n"}\n${table(header, rows)}\n`);
    return 0;
  },
};
