import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  formatNixPublicKey,
  formatNixSecretKey,
  generateNixKey,
  parseNixSecretKey,
} from "../cache/nix-key.js";

/**
 * What a dev cluster's binary cache needs and prints: its key, an upload token, a netrc, and
 * a token for GC roots and runs.
 */
export interface DevCache {
  secretKeyFile: string;
  publicKey: string;
  /** The upload token (development only; it is also in the netrc). */
  token: string;
  netrcFile: string;
  /** A token that may add and remove GC roots and run GCs (cache.gc.tokens), and its file. */
  gcToken: string;
  gcTokenFile: string;
}

async function readOr(path: string, make: () => Promise<string>): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as { code?: string }).code !== "ENOENT") throw err;
    return make();
  }
}

/**
 * Make (or reuse, so restarts keep them) `<dir>/cache/`: a signing key `geospool-dev-1`, an
 * upload token and a netrc giving it for 127.0.0.1, for `nix copy --to http://127.0.0.1:...`,
 * and `gc-token` for `geospool cache roots|gc --token-file`.
 */
export async function prepareDevCache(dir: string): Promise<DevCache> {
  const at = join(dir, "cache");
  await mkdir(at, { recursive: true, mode: 0o700 });
  const secretKeyFile = join(at, "geospool-dev-1.secret");
  const secret = await readOr(secretKeyFile, async () => {
    const text = formatNixSecretKey(generateNixKey("geospool-dev-1"));
    await writeFile(secretKeyFile, text, { mode: 0o600 });
    return text;
  });
  const publicKey = formatNixPublicKey(parseNixSecretKey(secret).publicKey);
  await writeFile(join(at, "geospool-dev-1.public"), `${publicKey}\n`);
  const tokenFile = join(at, "upload-token");
  const token = (
    await readOr(tokenFile, async () => {
      const t = `dev-${randomBytes(18).toString("base64url")}`;
      await writeFile(tokenFile, `${t}\n`, { mode: 0o600 });
      return t;
    })
  ).trim();
  const gcTokenFile = join(at, "gc-token");
  const gcToken = (
    await readOr(gcTokenFile, async () => {
      const t = `dev-gc-${randomBytes(18).toString("base64url")}`;
      await writeFile(gcTokenFile, `${t}\n`, { mode: 0o600 });
      return t;
    })
  ).trim();
  const netrcFile = join(at, "netrc");
  await writeFile(netrcFile, `machine 127.0.0.1 login geospool password ${token}\n`, {
    mode: 0o600,
  });
  return { secretKeyFile, publicKey, token, netrcFile, gcToken, gcTokenFile };
}
