import { createReadStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import type { StoredCacheEntry } from "../../../cache/cache-inventory.js";
import { canDecompress, readableCompressions } from "../../../cache/decompress.js";
import { formatHash } from "../../../cache/hash.js";
import { completeNarFacts, narDigester } from "../../../cache/nar-digest.js";
import { compressionOfNarPath } from "../../../cache/nar-staging.js";
import { parseNarinfo } from "../../../cache/narinfo.js";
import { fileHashOfDigest } from "../../../cache/spool-cache-store.js";
import { checkNarContent } from "../../../cache/upload-check.js";
import { parseCommand } from "../args.js";
import type { Command } from "../command.js";
import { ExitCode } from "../exit-codes.js";
import { Output } from "../output.js";
import { isEnoent } from "../spool/views.js";
import {
  loadNodeSettings,
  NODE_SETTINGS_HELP,
  readCacheEntries,
  splitNodeSettings,
} from "./node-files.js";

const PATH = "geospool cache verify";

interface Verdict {
  entry: string;
  hashPart: string;
  url: string;
  compression: string;
  status: "ok" | "corrupt";
  /** How far the content was checked (as on upload). */
  checked: string;
  problems: Array<{ reason: string; message: string }>;
  /** Why NarHash/NarSize were not checked, when they were not. */
  narHashNotChecked?: string;
}

/** Re-read one entry's nar and check it against its narinfo and the entry's own digest. */
export async function verifyEntry(e: StoredCacheEntry): Promise<Verdict> {
  const info = parseNarinfo(Buffer.from(e.record.narinfo, "utf8"));
  const file = info.files.find((f) => f.url === e.record.url);
  const compression = file?.compression ?? compressionOfNarPath(e.record.url) ?? "bzip2";
  const base = { entry: e.entry, hashPart: e.record.hashPart, url: e.record.url, compression };
  const { sink, facts } = narDigester(compression);
  try {
    await pipeline(createReadStream(e.dataPath), sink);
  } catch (err) {
    if (!isEnoent(err)) throw err;
    return {
      ...base,
      status: "corrupt",
      checked: "none",
      problems: [{ reason: "missing", message: `its data file ${e.dataPath} is missing` }],
    };
  }
  // zstd, xz, bzip2 and lzip are read again from the file, no further than the NarSize declared.
  const found = await completeNarFacts(await facts, e.dataPath, compression, info.narSize);
  const problems: Verdict["problems"] = [];
  if (found.fileSize !== e.size) {
    problems.push({
      reason: "entry_size",
      message: `the entry recorded ${e.size} bytes, its data file has ${found.fileSize}`,
    });
  }
  const digest = fileHashOfDigest(e.sha256);
  if (formatHash(found.fileHash) !== digest) {
    problems.push({
      reason: "entry_digest",
      message: `the entry recorded ${digest}, its data hashes to ${formatHash(found.fileHash)}`,
    });
  }
  let checked = "none";
  if (file === undefined) {
    problems.push({ reason: "no_file", message: `its narinfo has no URL ${e.record.url}` });
  } else {
    const content = checkNarContent(info, file, found);
    if (content.kind === "reject")
      problems.push({ reason: content.reason, message: content.message });
    else checked = content.contentChecked;
  }
  const readable = canDecompress(compression);
  return {
    ...base,
    status: problems.length === 0 ? "ok" : "corrupt",
    checked,
    problems,
    ...(readable
      ? {}
      : {
          narHashNotChecked: `${compression} cannot be decompressed here (only ${readableCompressions().join(", ")} can)`,
        }),
  };
}

export const cacheVerify: Command = {
  name: "verify",
  summary: "re-check the stored nars against their hashes; exit 1 when any is corrupt",
  async run(args, io) {
    const { settings, rest } = splitNodeSettings(args);
    const parsed = await parseCommand(
      rest,
      {
        path: PATH,
        help: `Usage: ${PATH} [--config FILE] [--<key> VALUE ...] [--json]

Read every nar this node stores (each entry of its cache queue, served or not) and check
it against the digest and size its entry recorded and against its narinfo: FileSize and
FileHash, and NarSize and NarHash where the compression can be read here (none, gzip,
br, zstd, xz; bzip2 and lzip when the bzip2 and lzip tools are installed). For any other
the NarHash is not checked, and the output says so. Prints one line per entry (ok or CORRUPT, with what was wrong)
and a summary. Exit 0 when none is corrupt, 1 when any is.

${NODE_SETTINGS_HELP}

Options:
  --json   print {entries:[{entry, hashPart, url, compression, status, checked,
           problems:[{reason, message}], narHashNotChecked?}], ok, corrupt}`,
        options: { json: { type: "boolean" } },
        positionals: [],
      },
      io,
    );
    if (!parsed) return 0;
    const out = new Output(io, parsed.values.json === true);
    const entries = await readCacheEntries(loadNodeSettings(settings));
    const verdicts: Verdict[] = [];
    for (const e of entries) {
      const v = await verifyEntry(e);
      verdicts.push(v);
      if (out.json) continue;
      const what =
        v.status === "ok"
          ? `ok (${v.checked}${v.narHashNotChecked === undefined ? "" : `; NarHash not checked: ${v.narHashNotChecked}`})`
          : `CORRUPT: ${v.problems.map((p) => `${p.reason}: ${p.message}`).join("; ")}`;
      await out.line(`${v.entry}  ${v.url}  ${what}`);
    }
    const corrupt = verdicts.filter((v) => v.status === "corrupt").length;
    const ok = verdicts.length - corrupt;
    if (out.json) await out.value({ entries: verdicts, ok, corrupt });
    else await out.line(`${verdicts.length} nars checked: ${ok} ok, ${corrupt} corrupt`);
    return corrupt === 0 ? ExitCode.Ok : ExitCode.ProblemsRemain;
  },
};
