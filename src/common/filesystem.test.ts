import { realpath } from "node:fs/promises";
import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import {
  describeFilesystem,
  filesystemWarning,
  majorMinorOf,
  parseMountinfo,
} from "./filesystem.js";

describe("the filesystem under a spool", () => {
  it("reads mountinfo lines: optional fields, escaped mount points", () => {
    const text = [
      "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard",
      "30 22 0:26 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw,size=24683772k",
      "31 22 259:65536 /sub /mnt/my\\040disk rw master:2 propagate_from:1 - xfs /dev/nvme0n1p1 rw",
      "broken line",
      "",
    ].join("\n");
    expect(parseMountinfo(text)).toEqual([
      { majorMinor: "253:0", mountPoint: "/", type: "ext4", source: "/dev/vda" },
      { majorMinor: "0:26", mountPoint: "/dev/shm", type: "tmpfs", source: "tmpfs" },
      {
        majorMinor: "259:65536",
        mountPoint: "/mnt/my disk",
        type: "xfs",
        source: "/dev/nvme0n1p1",
      },
    ]);
  });

  it("splits a dev_t as glibc does", () => {
    expect(majorMinorOf(0xfd00)).toBe("253:0");
    expect(majorMinorOf(7 * 256 + 3)).toBe("7:3");
    // A minor above 255 and a major above 4095 use the high bits.
    expect(majorMinorOf((259n << 8n) | (0x100n << 12n))).toBe("259:256");
    expect(majorMinorOf((0x1000n << 32n) | 1n)).toBe("4096:1");
  });

  it("warns about ext4 without a journal only", () => {
    const base = { type: "ext4", source: "/dev/vda", mountPoint: "/" };
    expect(filesystemWarning("/s", { ...base, journal: false })).toMatch(
      /^\/s is on ext4 without a journal \(\/dev\/vda at \/\): .* journaled filesystem/,
    );
    expect(filesystemWarning("/s", { ...base, journal: true })).toBeUndefined();
    expect(filesystemWarning("/s", base)).toBeUndefined();
    expect(filesystemWarning("/s", { ...base, type: "xfs" })).toBeUndefined();
    expect(filesystemWarning("/s", undefined)).toBeUndefined();
  });

  it.runIf(process.platform === "linux")("describes this machine's temp directory", async () => {
    const fs = await describeFilesystem(tmpdir());
    expect(fs).toBeDefined();
    const where = await realpath(tmpdir());
    const mount = fs?.mountPoint ?? "?";
    expect(mount === "/" || where === mount || where.startsWith(`${mount}/`)).toBe(true);
    expect(fs?.type).toMatch(/^[a-z0-9.]+$/);
    // Told for ext4 wherever /proc/fs/jbd2 and /sys/dev/block can be read, as here.
    if (fs?.type === "ext4") expect(typeof fs.journal).toBe("boolean");
    expect(await describeFilesystem("/no/such/directory")).toBeUndefined();
  });
});
