import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Spool } from "../../src/spool/index.js";
import { benchData, benchMetadata, rawName } from "./spool-payload.js";
import { encodeMetadataFile } from "./spool-raw-baseline.js";
import { benchSpoolable, QUEUE } from "./spool-sides.js";

/**
 * Fill a new spool with `count` waiting entries, fast: the same files the spool writes
 * (registry file, 1 KiB data, metadata file in the queue) but without fsyncs or the tmp +
 * rename step. This is a fixture for the memory measurement, not a measured enqueue; a
 * crash while filling is of no concern.
 */
export async function fillSpool(dir: string, count: number, parallel = 16): Promise<void> {
  const spool = await Spool.create(dir, benchSpoolable());
  const root = spool.dir;
  let next = 0;
  const worker = async () => {
    for (;;) {
      const id = next++;
      if (id >= count) return;
      const name = rawName(0);
      await writeFile(join(root, ".registry", name), "", { flag: "wx" });
      await writeFile(join(root, ".data", name), benchData);
      await writeFile(join(root, QUEUE, name), encodeMetadataFile(benchMetadata(id), 0));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}
