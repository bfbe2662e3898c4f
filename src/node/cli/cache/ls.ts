import { type ServedPath, servedPaths, signerNames } from "../../../cache/cache-inventory.js";
import { parseCommand } from "../args.js";
import type { Command } from "../command.js";
import { Output } from "../output.js";
import {
  loadNodeSettings,
  NODE_SETTINGS_HELP,
  readCacheEntries,
  splitNodeSettings,
  table,
} from "./node-files.js";

const PATH = "geospool cache ls";

/** One served narinfo as `ls` prints it. */
export function servedRow(p: ServedPath) {
  const { narinfo, served } = p;
  const file = narinfo.files.find((f) => f.url === served.record.url) ?? narinfo.files[0];
  return {
    storePath: `${narinfo.storeDir}/${narinfo.storePath.hashPart}-${narinfo.storePath.name}`,
    hashPart: p.hashPart,
    narSize: narinfo.narSize,
    fileSize: file?.fileSize ?? served.size,
    compression: file?.compression ?? "bzip2",
    url: served.record.url,
    signatures: signerNames(narinfo),
    trust: served.record.trust,
    origin: served.record.origin,
    entry: served.entry,
    entries: p.holders.length,
  };
}

export const cacheLs: Command = {
  name: "ls",
  summary: "list the narinfos this node serves",
  async run(args, io) {
    const { settings, rest } = splitNodeSettings(args);
    const parsed = await parseCommand(
      rest,
      {
        path: PATH,
        help: `Usage: ${PATH} [--config FILE] [--<key> VALUE ...] [--json]

List the narinfos this node serves, one a line in hash-part order: store path, NarSize,
FileSize and Compression of the nar served, the names of the keys that signed it (Guix
signers as guix:<host>; "-" for none) and the node that accepted it. Read from the node's
spool (its cache queue) by the rule every node serves by; entries replicated from other
nodes count once they are in this node's spool.

${NODE_SETTINGS_HELP}

Options:
  --json   print a JSON array of {storePath, hashPart, narSize, fileSize, compression, url,
           signatures, trust, origin, entry, entries}`,
        options: { json: { type: "boolean" } },
        positionals: [],
      },
      io,
    );
    if (!parsed) return 0;
    const out = new Output(io, parsed.values.json === true);
    const config = loadNodeSettings(settings);
    const rows = [...servedPaths(await readCacheEntries(config)).values()].map(servedRow);
    if (out.json) {
      await out.value(rows);
      return 0;
    }
    if (rows.length === 0) {
      await out.line("nothing served");
      return 0;
    }
    const header = ["STORE PATH", "NAR SIZE", "FILE SIZE", "COMPRESSION", "SIGNED BY", "ORIGIN"];
    const cells = rows.map((r) => [
      r.storePath,
      String(r.narSize),
      String(r.fileSize),
      r.compression,
      r.signatures.length === 0 ? "-" : r.signatures.join(","),
      r.origin,
    ]);
    await out.line(table(header, cells));
    return 0;
  },
};
