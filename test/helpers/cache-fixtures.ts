import { readdirSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Binary-cache directories written by real Nix 2.8 and Guix 1.5 clients (see
 * test/fixtures/cache/README.md for what each holds and the facts found about them).
 */
export const CACHE_FIXTURES = fileURLToPath(new URL("../fixtures/cache/", import.meta.url));

export const NIX_XZ = "nix-2.8-cache-xz";
export const NIX_ZSTD = "nix-2.8-cache-zstd";
export const GUIX = "guix-1.5-publish-cache";

/** The public key that signed the Nix fixture caches (its secret is beside it). */
export const TEST_KEY = readFileSync(
  join(CACHE_FIXTURES, "nix-2.8-test-key.public"),
  "utf8",
).trim();

/** The public key (libgcrypt s-expression) of the Guix VM that signed the Guix fixture cache. */
export const GUIX_KEY_TEXT =
  "(public-key (ecc (curve Ed25519) (q #239E994B9C3302A466FD5034D7FF90FEA287312BA1093E72DD195D036100C1FC#)))";

/** Write GUIX_KEY_TEXT as a `signing-key.pub` in `dir` (for cache.trustedGuixKeysFile). */
export async function writeGuixKeyFile(dir: string): Promise<string> {
  const file = join(dir, "guix-signing-key.pub");
  await writeFile(file, `${GUIX_KEY_TEXT}\n`);
  return file;
}

/** The fixture caches' application: it references the library (3wwj8mpk...-geo-lib). */
export const APP_PATH = "/nix/store/l493h11hsb577v1lhgwxzcmxh4q2m02w-geo-app";

export function fixturePath(...parts: string[]): string {
  return join(CACHE_FIXTURES, ...parts);
}

export function readFixture(...parts: string[]): Buffer {
  return readFileSync(fixturePath(...parts));
}

/** The narinfo files of one fixture cache: [file name, bytes]. */
export function narinfoFixtures(cache: string): [string, Buffer][] {
  return readdirSync(fixturePath(cache))
    .filter((f) => f.endsWith(".narinfo"))
    .sort()
    .map((f) => [f, readFixture(cache, f)]);
}
