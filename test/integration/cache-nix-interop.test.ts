import { cp, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import { addSigLine } from "../../src/cache/narinfo-build.js";
import {
  formatNixPublicKey,
  formatNixSecretKey,
  generateNixKey,
  type NixSecretKey,
  parseNixSecretKey,
} from "../../src/cache/nix-key.js";
import { signNarinfo } from "../../src/cache/nix-signature.js";
import { formatStorePath } from "../../src/cache/store-path.js";
import { fixturePath, NIX_XZ, readFixture } from "../helpers/cache-fixtures.js";
import { HAVE_NIX, NO_NIX_MESSAGE, runNix } from "../helpers/nix-cli.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * Our keys and signatures checked by the real Nix 2.8 client: a binary cache whose every
 * narinfo we signed (with a key we generated) passes `nix store verify`, and keys move
 * between `nix key` and us in both directions.
 */
if (!HAVE_NIX) console.warn(`cache-nix-interop: ${NO_NIX_MESSAGE}`);

const dir = useTempDir("geospool-nix-interop-");

/** The Nix 2.8 xz cache with each narinfo's Sig replaced by one we made with `key`. */
async function resignedCache(key: NixSecretKey): Promise<{ url: string; paths: string[] }> {
  const cache = join(dir.path, "cache");
  await cp(fixturePath(NIX_XZ), cache, { recursive: true });
  const paths: string[] = [];
  for (const file of (await readdir(cache)).filter((f) => f.endsWith(".narinfo"))) {
    const text = await readFile(join(cache, file), "utf8");
    const unsigned = parseNarinfo(text.replace(/^Sig: .*\n/m, ""));
    expect(unsigned.sigs).toEqual([]);
    const signed = addSigLine(unsigned, signNarinfo(unsigned, key));
    await writeFile(join(cache, file), signed);
    paths.push(formatStorePath(unsigned.storePath, unsigned.storeDir));
  }
  return { url: `file://${cache}`, paths: paths.sort() };
}

describe.skipIf(!HAVE_NIX)("cache formats against the real nix (2.8)", () => {
  it("nix store verify accepts a cache we signed, and only under our key", async () => {
    const key = generateNixKey("geospool-interop-1");
    const { url, paths } = await resignedCache(key);
    expect(paths).toHaveLength(3);
    const ours = await runNix(
      [
        "store",
        "verify",
        "--store",
        url,
        "--trusted-public-keys",
        formatNixPublicKey(key.publicKey),
        ...paths,
      ],
      dir.path,
    );
    expect(ours.stderr).not.toMatch(/untrusted|error/);
    expect(ours.code, ours.stderr).toBe(0);

    const theirs = await runNix(
      [
        "store",
        "verify",
        "--store",
        url,
        "--trusted-public-keys",
        readFixture("nix-2.8-test-key.public").toString().trim(),
        ...paths,
      ],
      dir.path,
    );
    expect(theirs.code).not.toBe(0);
    for (const p of paths) expect(theirs.stderr).toContain(`path '${p}' is untrusted`);
  });

  it("nix store verify refuses a narinfo we signed over the wrong NarHash", async () => {
    const key = generateNixKey("geospool-interop-1");
    const { url, paths } = await resignedCache(key);
    const file = join(url.slice("file://".length), "l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo");
    const tampered = parseNarinfo(
      (await readFile(file, "utf8"))
        .replace(/^Sig: .*\n/m, "")
        .replace("sha256:1xcn", "sha256:0xcn"),
    );
    await writeFile(file, addSigLine(tampered, signNarinfo(tampered, key)));
    const app = paths.find((p) => p.endsWith("-geo-app"))!;
    const result = await runNix(
      [
        "store",
        "verify",
        "--store",
        url,
        "--trusted-public-keys",
        formatNixPublicKey(key.publicKey),
        app,
      ],
      dir.path,
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`path '${app}' was modified`);
    // (Nix 2.8's verify hashes the nar but never compares NarSize: uploads must check it.)
  });

  it("keys pass between nix key and us both ways", async () => {
    const made = await runNix(["key", "generate-secret", "--key-name", "from-nix-1"], dir.path);
    expect(made.code, made.stderr).toBe(0);
    const theirs = parseNixSecretKey(made.stdout);
    const theirPublic = await runNix(["key", "convert-secret-to-public"], dir.path, {
      input: made.stdout,
    });
    expect(theirPublic.stdout.trim()).toBe(formatNixPublicKey(theirs.publicKey));

    const ours = generateNixKey("from-us-1");
    const ourPublic = await runNix(["key", "convert-secret-to-public"], dir.path, {
      input: formatNixSecretKey(ours),
    });
    expect(ourPublic.code, ourPublic.stderr).toBe(0);
    expect(ourPublic.stdout.trim()).toBe(formatNixPublicKey(ours.publicKey));

    // A cache signed with nix's key by us verifies in nix under nix's public key.
    const { url, paths } = await resignedCache(theirs);
    const result = await runNix(
      [
        "store",
        "verify",
        "--store",
        url,
        "--trusted-public-keys",
        theirPublic.stdout.trim(),
        ...paths,
      ],
      dir.path,
    );
    expect(result.code, result.stderr).toBe(0);
  });
});
