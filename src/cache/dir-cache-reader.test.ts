import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { describe, expect, it } from "vitest";
import { fixturePath, NIX_XZ, readFixture } from "../../test/helpers/cache-fixtures.js";
import { useTempDir } from "../../test/helpers/tmp.js";
import { openCacheDirectory } from "./dir-cache-reader.js";

const dir = useTempDir("geospool-dir-cache-");

describe("a binary-cache directory as a CacheReader", () => {
  it("reads narinfos, listings and nar ranges, and misses as undefined", async () => {
    const reader = await openCacheDirectory(fixturePath(NIX_XZ));
    expect(reader.info.storeDir).toBe("/nix/store");
    const hash = "l493h11hsb577v1lhgwxzcmxh4q2m02w";
    expect((await reader.narinfo(hash))!.equals(readFixture(NIX_XZ, `${hash}.narinfo`))).toBe(true);
    expect(await reader.narinfo("aaaah11hsb577v1lhgwxzcmxh4q2m02w")).toBeUndefined();
    expect(await reader.listing(hash)).toBeDefined();
    await expect(reader.narinfo("../x")).rejects.toThrow(/hash part/);
    const path = "nar/0l8gkfq1153q73v79qb2p2ddh7ywk95mp38hr7k6019ybfjvkbqp.nar.xz";
    const nar = await reader.openNar(path);
    expect(nar!.size).toBe(240);
    const part = await buffer(nar!.read({ start: 0, end: 5 }));
    expect(part).toEqual(readFixture(NIX_XZ, path).subarray(0, 6));
    expect(await reader.openNar("nar/nope.nar.xz")).toBeUndefined();
    expect(await reader.openNar("nar/../nix-cache-info")).toBeUndefined();
  });

  it("does not follow a symlink out of the cache, nor open a directory", async () => {
    await writeFile(join(dir.path, "nix-cache-info"), "StoreDir: /nix/store\n");
    await mkdir(join(dir.path, "nar", "gzip"), { recursive: true });
    await symlink("/etc/passwd", join(dir.path, "nar", "passwd.nar"));
    const reader = await openCacheDirectory(dir.path);
    expect(await reader.openNar("nar/passwd.nar")).toBeUndefined();
    expect(await reader.openNar("nar/gzip")).toBeUndefined();
  });
});
