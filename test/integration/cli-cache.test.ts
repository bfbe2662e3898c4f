import { cp, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import { parseNixPublicKey, parseNixSecretKey } from "../../src/cache/nix-key.js";
import { checkNarinfoSignatures, signNarinfo } from "../../src/cache/nix-signature.js";
import { fixturePath, NIX_XZ } from "../helpers/cache-fixtures.js";
import { buildCli, type CliResult, jsonError, runBuiltCli } from "../helpers/cli-build.js";
import { HAVE_NIX, NO_NIX_MESSAGE, runNix } from "../helpers/nix-cli.js";
import { useTempDir } from "../helpers/tmp.js";

/** `geospool cache keygen`, run as a real process; its keys used by the real nix. */
let built: Awaited<ReturnType<typeof buildCli>> | undefined;
beforeAll(async () => {
  built = await buildCli();
});
afterAll(async () => {
  await built?.cleanup();
});

const dir = useTempDir("geospool-cli-cache-");

function cli(args: string[]): Promise<CliResult> {
  return runBuiltCli(built!.main, args, { cwd: dir.path });
}

describe("geospool cache keygen", () => {
  it("is listed, and documents itself", async () => {
    const top = await cli(["--help"]);
    expect(top.stdout).toMatch(/\n {2}cache +the Nix\/Guix binary cache/);
    const group = await cli(["cache", "--help"]);
    expect(group.code).toBe(0);
    expect(group.stdout).toContain("  keygen  ");
    const help = await cli(["cache", "keygen", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--force");
  });

  it("writes a private secret key and its public key in Nix's format", async () => {
    const r = await cli(["cache", "keygen", "cache.example.org-1", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, string>;
    expect(out).toEqual({
      name: "cache.example.org-1",
      secretKeyFile: join(dir.path, "cache.example.org-1.secret"),
      publicKeyFile: join(dir.path, "cache.example.org-1.public"),
      publicKey: expect.stringMatching(/^cache\.example\.org-1:[A-Za-z0-9+/]{43}=$/),
    });
    expect((await stat(out.secretKeyFile!)).mode & 0o777).toBe(0o600);
    const secret = parseNixSecretKey(await readFile(out.secretKeyFile!, "utf8"));
    const pub = parseNixPublicKey(await readFile(out.publicKeyFile!, "utf8"));
    expect(Buffer.from(secret.publicKey.key).equals(pub.key)).toBe(true);
    expect(await readFile(out.publicKeyFile!, "utf8")).toBe(`${out.publicKey}\n`);

    const missingDir = await cli(["cache", "keygen", "k-2", "--dir", "no-such-dir"]);
    expect(missingDir.code).toBe(10);
    expect(missingDir.stderr).toMatch(/ENOENT.*no-such-dir\/k-2\.secret/);
    const human2 = await cli([
      "cache",
      "keygen",
      "k-2",
      "--secret-file",
      "s",
      "--public-file",
      "p",
    ]);
    expect(human2.code, human2.stderr).toBe(0);
    expect(human2.stdout).toMatch(
      /^secret key: .*\/s \(keep it private\)\npublic key: .*\/p\nk-2:/,
    );
  });

  it("never overwrites key files without --force, and leaves them as they were", async () => {
    expect((await cli(["cache", "keygen", "k-1"])).code).toBe(0);
    const before = await readFile(join(dir.path, "k-1.secret"), "utf8");
    const again = await cli(["cache", "keygen", "k-1", "--json"]);
    expect(again.code).toBe(10);
    expect(jsonError(again)).toEqual({
      code: "exists",
      message: `cache keygen: ${join(dir.path, "k-1.secret")} exists (use --force to replace it)`,
    });
    expect(await readFile(join(dir.path, "k-1.secret"), "utf8")).toBe(before);

    // The public file in the way: the new secret is not left behind either.
    await writeFile(join(dir.path, "k-3.public"), "keep me\n");
    const blocked = await cli(["cache", "keygen", "k-3"]);
    expect(blocked.code).toBe(10);
    expect(await readdir(dir.path)).not.toContain("k-3.secret");
    expect(await readFile(join(dir.path, "k-3.public"), "utf8")).toBe("keep me\n");

    const forced = await cli(["cache", "keygen", "k-1", "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(await readFile(join(dir.path, "k-1.secret"), "utf8")).not.toBe(before);
    expect((await stat(join(dir.path, "k-1.secret"))).mode & 0o777).toBe(0o600);
    expect((await readdir(dir.path)).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("refuses a bad or missing NAME with exit 2 naming it", async () => {
    const bad = await cli(["cache", "keygen", "a:b", "--json"]);
    expect(bad.code).toBe(2);
    expect(jsonError(bad).message).toMatch(
      /NAME "a:b": key name must be printable ASCII without ':'/,
    );
    const missing = await cli(["cache", "keygen"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cache keygen: missing NAME/);
    expect(await readdir(dir.path)).toEqual([]);
  });

  it.skipIf(!HAVE_NIX)("makes keys the real nix signs with and verifies under", async () => {
    const r = await cli(["cache", "keygen", "interop-1", "--json"]);
    const { secretKeyFile, publicKeyFile, publicKey } = JSON.parse(r.stdout) as Record<
      string,
      string
    >;
    const derived = await runNix(["key", "convert-secret-to-public"], dir.path, {
      input: await readFile(secretKeyFile!, "utf8"),
    });
    expect(derived.stdout.trim()).toBe(publicKey);

    const cache = join(dir.path, "cache");
    await cp(fixturePath(NIX_XZ), cache, { recursive: true });
    const storePaths: string[] = [];
    for (const f of (await readdir(cache)).filter((n) => n.endsWith(".narinfo"))) {
      const text = (await readFile(join(cache, f), "utf8")).replace(/^Sig: .*\n/m, "");
      await writeFile(join(cache, f), text);
      const info = parseNarinfo(text);
      storePaths.push(`${info.storeDir}/${info.storePath.hashPart}-${info.storePath.name}`);
    }
    expect(storePaths).toHaveLength(3);
    const signed = await runNix(
      ["store", "sign", "--store", `file://${cache}`, "--key-file", secretKeyFile!, ...storePaths],
      dir.path,
    );
    expect(signed.code, signed.stderr).toBe(0);
    const trusted = [parseNixPublicKey(await readFile(publicKeyFile!, "utf8"))];
    const secret = parseNixSecretKey(await readFile(secretKeyFile!, "utf8"));
    for (const f of (await readdir(cache)).filter((n) => n.endsWith(".narinfo"))) {
      const info = parseNarinfo(await readFile(join(cache, f)));
      expect(checkNarinfoSignatures(info, trusted)).toEqual([
        { kind: "valid", keyName: "interop-1" },
      ]);
      expect(info.sigs).toEqual([signNarinfo(info, secret)]);
    }
    const verified = await runNix(
      [
        "store",
        "verify",
        "--store",
        `file://${cache}`,
        "--trusted-public-keys",
        publicKey!,
        ...storePaths,
      ],
      dir.path,
    );
    expect(verified.code, verified.stderr).toBe(0);
  });
  if (!HAVE_NIX) console.warn(`cli-cache: ${NO_NIX_MESSAGE}`);
});
