import { unlink } from "node:fs/promises";
import type { Spool } from "../../spool/index.js";

/** Give back a reserved name that was never used (its registry file only). */
export async function unlinkRegistryIfUnused<M, Q extends string>(
  spool: Spool<M, Q>,
  name: string,
): Promise<void> {
  if (await spool.locate(name)) return;
  await unlink(spool.core.layout.registryFile(name)).catch(() => undefined);
}
