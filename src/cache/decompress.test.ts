import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  fixturePath,
  NIX_XZ,
  NIX_ZSTD,
  narinfoFixtures,
  readFixture,
} from "../../test/helpers/cache-fixtures.js";
import { canDecompress, readableCompressions, readNarFile } from "./decompress.js";
import { formatHash } from "./hash.js";
import { completeNarFacts, narDigester } from "./nar-digest.js";
import { parseNarinfo } from "./narinfo.js";
import { checkUpload, type UploadRules } from "./upload-check.js";

const RULES: UploadRules = {
  policy: "allow-unsigned",
  storeDirs: ["/nix/store"],
  trustedNixKeys: [],
  trustedGuixKeys: [],
};
const MiB = 1024 * 1024;

/** The bzip2 and lzip tools are installed (.ci/run installs them; without them, skipped). */
const HAVE_TOOLS = canDecompress("bzip2") && canDecompress("lzip");
if (!HAVE_TOOLS) {
  console.warn("decompress: bzip2/lzip tests skipped: apt-get install bzip2 lzip (.ci/run does)");
}

/** The bzip2 and lzip processes this process started that still run. */
function decodersRunningNow(): string[] {
  const out = execFileSync("ps", ["-o", "comm=", "--ppid", String(process.pid)], {
    encoding: "utf8",
  });
  return out
    .split("\n")
    .map((l) => l.trim())
    .filter((c) => c === "bzip2" || c === "lzip" || c === "sh");
}

/** What the upload path finds for the fixture nar of `narinfo`: inline facts, then the file read. */
async function uploadFacts(cache: string, narinfo: Buffer, narSize?: number) {
  const info = parseNarinfo(narinfo);
  const { sink, facts } = narDigester(info.compression);
  sink.end(readFixture(cache, info.url));
  const inline = await facts;
  expect(inline.nar).toBeUndefined();
  return completeNarFacts(
    inline,
    fixturePath(cache, info.url),
    info.compression,
    narSize ?? info.narSize,
  );
}

describe.each([NIX_XZ, NIX_ZSTD])("the nars of Nix 2.8's %s cache", (cache) => {
  it("decompress to their NarHash and NarSize", async () => {
    for (const [, bytes] of narinfoFixtures(cache)) {
      const info = parseNarinfo(bytes);
      const read = await readNarFile(fixturePath(cache, info.url), info.compression, info.narSize);
      expect(read.kind).toBe("read");
      if (read.kind !== "read") return;
      expect(read.size).toBe(info.narSize);
      expect(formatHash(read.hash)).toBe(formatHash(info.narHash));
      const verdict = checkUpload(info, info.files[0]!, await uploadFacts(cache, bytes), RULES);
      expect(verdict).toMatchObject({ kind: "accept", contentChecked: "file_hash_and_nar_hash" });
    }
  });

  it("reject a narinfo whose NarHash was tampered with", async () => {
    const [, bytes] = narinfoFixtures(cache)[1]!;
    const info = parseNarinfo(bytes);
    const other = parseNarinfo(narinfoFixtures(cache)[0]![1]).narHash;
    const tampered = parseNarinfo(
      Buffer.from(bytes.toString().replace(/^NarHash: .*$/m, `NarHash: ${formatHash(other)}`)),
    );
    const verdict = checkUpload(
      tampered,
      tampered.files[0]!,
      await uploadFacts(cache, bytes),
      RULES,
    );
    expect(verdict).toMatchObject({ kind: "reject", reason: "nar_hash" });
    expect(info.narHash).not.toEqual(other);
  });

  it("reject a NarSize smaller than the nar, reading no further than it", async () => {
    const [, bytes] = narinfoFixtures(cache)[0]!;
    const info = parseNarinfo(bytes);
    const small = parseNarinfo(
      Buffer.from(bytes.toString().replace(/^NarSize: .*$/m, `NarSize: ${info.narSize - 8}`)),
    );
    const facts = await uploadFacts(cache, bytes, small.narSize);
    expect(facts.narPastSize?.limit).toBe(info.narSize - 8);
    expect(checkUpload(small, small.files[0]!, facts, RULES)).toMatchObject({
      kind: "reject",
      reason: "nar_size",
    });
  });
});

describe("a decompression bomb (256 MiB of zeros) declared as a small nar", () => {
  it.each([
    ["xz", "zeros-256m.nar.xz"],
    ["zstd", "zeros-256m.nar.zst"],
    ...(HAVE_TOOLS
      ? [
          ["lzip", "zeros-256m.nar.lz"],
          ["bzip2", "zeros-256m.nar.bz2"],
        ]
      : []),
  ])("%s: reading stops at the declared NarSize", async (compression, file) => {
    const read = await readNarFile(fixturePath("bombs", file), compression, MiB);
    expect(read.kind).toBe("too_large");
    if (read.kind !== "too_large") return;
    // Stopped within one decompressed chunk of the bound, not after 256 MiB.
    expect(read.read).toBeLessThan(2 * MiB);
  });

  it("leaves the xz decoder free for the next nar", async () => {
    await readNarFile(fixturePath("bombs", "zeros-256m.nar.xz"), "xz", MiB);
    const [, bytes] = narinfoFixtures(NIX_XZ)[0]!;
    const info = parseNarinfo(bytes);
    const read = await readNarFile(fixturePath(NIX_XZ, info.url), "xz", info.narSize);
    expect(read).toMatchObject({ kind: "read", size: info.narSize });
  });

  it("a corrupt stream is unreadable, not a crash", async () => {
    const read = await readNarFile(fixturePath(NIX_XZ, "nix-cache-info"), "zstd", MiB);
    expect(read.kind).toBe("unreadable");
    const xz = await readNarFile(fixturePath(NIX_XZ, "nix-cache-info"), "xz", MiB);
    expect(xz.kind).toBe("unreadable");
    for (const compression of HAVE_TOOLS ? ["bzip2", "lzip"] : []) {
      const read = await readNarFile(fixturePath(NIX_XZ, "nix-cache-info"), compression, MiB);
      expect(read).toMatchObject({ kind: "unreadable" });
      // What the tool said, not only that it failed.
      expect(read.kind === "unreadable" && read.message).toMatch(/bzip2 file|lzip format/);
    }
    expect(await readNarFile(fixturePath(NIX_XZ, "nix-cache-info"), "lz4", MiB)).toEqual({
      kind: "unknown_compression",
    });
  });
});

describe.skipIf(!HAVE_TOOLS)("bzip2 and lzip nars, read by the bzip2 and lzip tools", () => {
  // l493…'s nar from the Nix 2.8 xz cache, decompressed and compressed again by the tools.
  const [, bytes] = narinfoFixtures(NIX_XZ).find(([f]) => f.startsWith("l493h11"))!;
  const info = parseNarinfo(bytes);

  it.each([
    ["lzip", "l493h11hsb577v1lhgwxzcmxh4q2m02w.nar.lz"],
    ["bzip2", "l493h11hsb577v1lhgwxzcmxh4q2m02w.nar.bz2"],
  ])("%s: decompress to the narinfo's NarHash and NarSize", async (compression, file) => {
    expect(canDecompress(compression)).toBe(true);
    expect(readableCompressions()).toContain(compression);
    const read = await readNarFile(fixturePath("recompressed", file), compression, info.narSize);
    expect(read.kind).toBe("read");
    if (read.kind !== "read") return;
    expect(read.size).toBe(info.narSize);
    expect(formatHash(read.hash)).toBe(formatHash(info.narHash));
    // Declared one byte smaller: the nar is larger than its narinfo says.
    const less = await readNarFile(
      fixturePath("recompressed", file),
      compression,
      info.narSize - 1,
    );
    expect(less.kind).toBe("too_large");
  });

  it("lzip without FileHash (as Guix writes): accepted on its NarHash, rejected when tampered", async () => {
    const file = "l493h11hsb577v1lhgwxzcmxh4q2m02w.nar.lz";
    const size = readFixture("recompressed", file).length;
    const text = (narHash: string) =>
      Buffer.from(
        bytes
          .toString()
          .replace(/^URL: .*$/m, `URL: ${file}`)
          .replace(/^Compression: .*$/m, "Compression: lzip")
          .replace(/^FileHash: .*\n/m, "")
          .replace(/^FileSize: .*$/m, `FileSize: ${size}`)
          .replace(/^NarHash: .*$/m, `NarHash: ${narHash}`),
      );
    const good = text(formatHash(info.narHash));
    expect(parseNarinfo(good).files[0]!.fileHash).toBeUndefined();
    const facts = await uploadFacts("recompressed", good);
    expect(
      checkUpload(parseNarinfo(good), parseNarinfo(good).files[0]!, facts, RULES),
    ).toMatchObject({
      kind: "accept",
      contentChecked: "nar_hash",
    });
    const other = formatHash(parseNarinfo(narinfoFixtures(NIX_XZ)[0]![1]).narHash);
    const bad = parseNarinfo(text(other));
    expect(checkUpload(bad, bad.files[0]!, facts, RULES)).toMatchObject({
      kind: "reject",
      reason: "nar_hash",
    });
  });

  it("lzip: a header asking for a 256 MiB dictionary fails on the memory cap", async () => {
    const read = await readNarFile(fixturePath("bombs", "big-dictionary.nar.lz"), "lzip", MiB);
    expect(read).toMatchObject({ kind: "unreadable" });
    expect(read.kind === "unreadable" && read.message).toMatch(/memory/i);
  });

  it("many reads at once, each cut short, leave no decoder behind", async () => {
    const reads = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        readNarFile(
          fixturePath("bombs", i % 2 === 0 ? "zeros-256m.nar.lz" : "zeros-256m.nar.bz2"),
          i % 2 === 0 ? "lzip" : "bzip2",
          MiB,
        ),
      ),
    );
    expect(reads.map((r) => r.kind)).toEqual(Array(8).fill("too_large"));
    // A read is over once its decoder exited: none is left running.
    expect(decodersRunningNow()).toEqual([]);
    const read = await readNarFile(
      fixturePath("recompressed", "l493h11hsb577v1lhgwxzcmxh4q2m02w.nar.lz"),
      "lzip",
      info.narSize,
    );
    expect(read).toMatchObject({ kind: "read", size: info.narSize });
  });

  it.each([
    ["lzip", "l493h11hsb577v1lhgwxzcmxh4q2m02w.nar.lz"],
    ["bzip2", "l493h11hsb577v1lhgwxzcmxh4q2m02w.nar.bz2"],
  ])("%s: bytes after a complete stream are ignored, every time", async (compression, file) => {
    // The tools stop at the end of the stream and exit 0; the rest of the file must not
    // decide the verdict by timing (a write into the closed pipe) or hang the read.
    const dir = mkdtempSync(join(tmpdir(), "geospool-trailing-"));
    try {
      const path = join(dir, file);
      writeFileSync(
        path,
        Buffer.concat([readFixture("recompressed", file), Buffer.alloc(200_000, 0x5a)]),
      );
      const reads = await Promise.all(
        Array.from({ length: 6 }, () => readNarFile(path, compression, info.narSize)),
      );
      for (const r of reads) {
        expect(r.kind).toBe("read");
        if (r.kind === "read") expect(formatHash(r.hash)).toBe(formatHash(info.narHash));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
