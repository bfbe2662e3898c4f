import { constants } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { CacheReader, OpenNar } from "./cache-reader.js";
import { parseNixCacheInfo } from "./nix-cache-info.js";
import { narPathProblem } from "./request-path.js";
import { parseHashPart } from "./store-path.js";

function isMissing(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP";
}

async function readIfPresent(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/**
 * A binary-cache directory as `nix copy --to file://DIR` or `guix publish --cache` leave
 * it (`nix-cache-info`, `<hash>.narinfo`, `<hash>.ls`, `nar/...`), read as a `CacheReader`.
 * Names are checked before they touch the filesystem and the last component is opened
 * without following a symlink.
 */
export async function openCacheDirectory(dir: string): Promise<CacheReader> {
  const info = parseNixCacheInfo(await readFile(join(dir, "nix-cache-info"), "utf8"));
  return {
    info,
    narinfo: async (hashPart) => readIfPresent(join(dir, `${parseHashPart(hashPart)}.narinfo`)),
    listing: async (hashPart) => readIfPresent(join(dir, `${parseHashPart(hashPart)}.ls`)),
    async openNar(path): Promise<OpenNar | undefined> {
      if (narPathProblem(path) !== undefined) return undefined;
      let file: Awaited<ReturnType<typeof open>>;
      try {
        file = await open(join(dir, path), constants.O_RDONLY | constants.O_NOFOLLOW);
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw err;
      }
      const st = await file.stat().catch(async (err: unknown) => {
        await file.close();
        throw err;
      });
      if (!st.isFile()) {
        await file.close();
        return undefined;
      }
      return {
        size: st.size,
        etag: `"${st.ino.toString(36)}-${st.size.toString(36)}-${Math.trunc(st.mtimeMs).toString(36)}"`,
        read: (range) =>
          file.createReadStream({ autoClose: true, start: range?.start, end: range?.end }),
        readAt: async (buffer, position) =>
          (await file.read(buffer, 0, buffer.length, position)).bytesRead,
        close: () => file.close(),
      };
    },
  };
}
