import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { formatHash, hashOf } from "./hash.js";
import { compressionOfNarPath, NarStaging } from "./nar-staging.js";

const dir = useTempDir("geospool-staging-");

describe("nar staging", () => {
  it("knows the compression from Nix's and Guix's nar URLs", () => {
    expect(compressionOfNarPath("nar/abc.nar.xz")).toBe("xz");
    expect(compressionOfNarPath("nar/abc.nar.zst")).toBe("zstd");
    expect(compressionOfNarPath("nar/abc.nar.bz2")).toBe("bzip2");
    expect(compressionOfNarPath("nar/abc.nar")).toBe("none");
    expect(compressionOfNarPath("nar/gzip/abc-e2e-a.txt")).toBe("gzip");
    expect(compressionOfNarPath("nar/abc")).toBeUndefined();
  });

  it("hashes what it stages, and leaves nothing of an upload over the limit", async () => {
    let now = 1_000;
    const staging = await NarStaging.open(join(dir.path, "s"), { maxBytes: 100, clock: () => now });
    const nar = Buffer.alloc(90, 7);
    const r = await staging.put("nar/x/a.nar.gz", Readable.from([gzipSync(nar)]));
    expect(r.kind).toBe("staged");
    const staged = staging.get("nar/x/a.nar.gz")!;
    expect(staged.compression).toBe("x");
    const gz = await staging.put("nar/a.nar.gz", Readable.from([gzipSync(nar)]));
    if (gz.kind !== "staged") throw new Error(gz.kind);
    expect(gz.nar.facts.nar).toEqual({ hash: hashOf("sha256", nar), size: 90 });
    expect(formatHash(gz.nar.facts.fileHash)).toBe(formatHash(hashOf("sha256", gzipSync(nar))));
    const big = await staging.put("nar/b.nar", Readable.from([Buffer.alloc(60), Buffer.alloc(60)]));
    expect(big).toEqual({ kind: "too_large", limit: 100 });
    expect(staging.get("nar/b.nar")).toBeUndefined();
    expect(await readdir(join(dir.path, "s"))).toHaveLength(2);

    now += 10_000;
    const swept = await staging.sweep(5_000);
    expect(swept.map((n) => n.path).sort()).toEqual(["nar/a.nar.gz", "nar/x/a.nar.gz"]);
    expect(await readdir(join(dir.path, "s"))).toEqual([]);
  });

  it("starts empty: files left by a crash are removed", async () => {
    const path = join(dir.path, "s2");
    await NarStaging.open(path, { maxBytes: 10 });
    await writeFile(join(path, "leftover"), "x");
    await NarStaging.open(path, { maxBytes: 10 });
    expect(await readdir(path)).toEqual([]);
  });
});
