import { readFile, realpath } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename } from "node:path";
import { describe, expect, it } from "vitest";
import {
  describeFilesystem,
  filesystemWarning,
  journalListed,
  majorMinorOf,
  parseMountinfo,
  pickMount,
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

  it("picks the mount of the directory's device with the longest mount point holding it", () => {
    const m = (majorMinor: string, mountPoint: string) => ({
      majorMinor,
      mountPoint,
      type: "ext4",
      source: "/dev/x",
    });
    const mounts = [m("253:0", "/"), m("253:0", "/srv/spool"), m("8:1", "/srv"), m("253:0", "/sr")];
    // A bind mount of the same device deeper in the tree wins; a mount of another device
    // above it (the directory's device says it is not on it) and a name prefix do not.
    expect(pickMount(mounts, "/srv/spool/q", "253:0")?.mountPoint).toBe("/srv/spool");
    expect(pickMount(mounts, "/srv/spool", "253:0")?.mountPoint).toBe("/srv/spool");
    expect(pickMount(mounts, "/srv/other", "8:1")?.mountPoint).toBe("/srv");
    expect(pickMount(mounts, "/srvx", "253:0")?.mountPoint).toBe("/");
    expect(pickMount(mounts, "/srv/other", "9:9")).toBeUndefined();
  });

  it("tells a device's internal journal in /proc/fs/jbd2 from another device's", () => {
    expect(journalListed("vda", ["vda-8"])).toBe(true);
    expect(journalListed("dm-0", ["dm-0-8"])).toBe(true);
    expect(journalListed("dm-1", ["dm-10-8"])).toBe(false);
    expect(journalListed("loop1", ["loop10-8", "loop11-8"])).toBe(false);
    expect(journalListed("vda", [])).toBe(false);
    // An external journal is listed under its own device only.
    expect(journalListed("sda1", ["sdb1"])).toBe(false);
  });

  it("warns about ext2, ext3 and ext4 without a journal only", () => {
    const base = { type: "ext4", source: "/dev/vda", mountPoint: "/" };
    expect(filesystemWarning("/s", { ...base, journal: false })).toMatch(
      /^\/s is on ext4 without a journal \(\/dev\/vda at \/\): .* journaled filesystem/,
    );
    expect(filesystemWarning("/s", { ...base, journal: true })).toBeUndefined();
    expect(filesystemWarning("/s", base)).toBeUndefined();
    expect(filesystemWarning("/s", { ...base, type: "xfs", journal: false })).toBeUndefined();
    expect(filesystemWarning("/s", { ...base, type: "ext2", journal: false })).toMatch(
      /^\/s is on ext2 without a journal/,
    );
    expect(filesystemWarning("/s", undefined)).toBeUndefined();
  });

  it.runIf(process.platform === "linux")("describes this machine's temp directory", async () => {
    const fs = await describeFilesystem(tmpdir());
    expect(fs).toBeDefined();
    const where = await realpath(tmpdir());
    const mount = fs?.mountPoint ?? "?";
    expect(mount === "/" || where === mount || where.startsWith(`${mount}/`)).toBe(true);
    expect(fs?.type).toMatch(/^[a-z0-9.]+$/);
    // Told for ext4 wherever /sys can be read, as here, and as the kernel says it.
    if (fs?.type === "ext4") {
      expect(typeof fs.journal).toBe("boolean");
      const task = await readFile(`/sys/fs/ext4/${basename(fs.source)}/journal_task`, "utf8").catch(
        () => undefined,
      );
      if (task !== undefined) expect(fs.journal).toBe(task.trim() !== "<none>");
    }
    expect(await describeFilesystem("/no/such/directory")).toBeUndefined();
  });
});
