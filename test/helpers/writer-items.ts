import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { WriterItem } from "../../src/spool/batch-writer.js";

/**
 * Directories registry/, data/ and tmp/ under `root` (made here), and a maker of batch
 * writer items in them: `item(name)` with small data and metadata naming it.
 */
export async function writerLayout(root: string): Promise<(name: string) => WriterItem> {
  for (const d of ["registry", "data", "tmp"]) await mkdir(join(root, d), { recursive: true });
  return (name) => ({
    registry: join(root, "registry", name),
    reserve: true,
    data: join(root, "data", name),
    tmp: join(root, "tmp", name),
    dataBytes: Buffer.from(`data of ${name}`),
    metadataBytes: Buffer.from(`metadata of ${name}`),
  });
}
