import { createReadStream } from "node:fs";
import { appendFile, mkdir, open, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { CacheWriter } from "./cache-writer.js";
import { narDigester } from "./nar-digest.js";
import { compressionOfNarPath, moveInto } from "./nar-staging.js";
import { narPathProblem } from "./request-path.js";

async function writeDurably(path: string, bytes: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const file = await open(tmp, "wx", 0o644);
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  await moveInto(tmp, path);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * A binary-cache directory (the `file://` layout that `openCacheDirectory` reads) as a
 * `CacheWriter`: nars are moved in from staging, then the listing, then the narinfo (the
 * visibility point), each fsynced. The first narinfo stored for a hash part stays (the
 * served-rule's "first upload"); rejections go to `rejected.jsonl`, which is never served.
 */
export function cacheDirectoryWriter(dir: string): CacheWriter {
  return {
    async storedNarFacts(path) {
      if (narPathProblem(path) !== undefined || !(await exists(join(dir, path)))) return undefined;
      const { sink, facts } = narDigester(compressionOfNarPath(path));
      await pipeline(createReadStream(join(dir, path)), sink);
      return facts;
    },
    async commit(upload) {
      const hashPart = upload.narinfo.storePath.hashPart;
      const target = join(dir, `${hashPart}.narinfo`);
      // A nar is put in place even beside a narinfo already stored (a Guix narinfo's
      // second compression comes as a second commit of the same narinfo).
      if (upload.nar !== undefined) {
        const narTarget = join(dir, upload.nar.path);
        if (await exists(narTarget)) await rm(upload.nar.file, { force: true });
        else {
          await mkdir(dirname(narTarget), { recursive: true });
          await moveInto(upload.nar.file, narTarget);
        }
      }
      if (await exists(target)) return "already_served";
      if (upload.listing !== undefined)
        await writeDurably(join(dir, `${hashPart}.ls`), upload.listing);
      await writeDurably(target, upload.served);
      return "stored";
    },
    async reject({ narinfo, ...rejection }) {
      const line = { ...rejection, narinfo: narinfo?.toString("utf8") };
      await appendFile(join(dir, "rejected.jsonl"), `${JSON.stringify(line)}\n`);
    },
  };
}
