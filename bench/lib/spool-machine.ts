import { closeSync, constants, mkdirSync, openSync, rmSync, unlinkSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { describeFilesystem, type FilesystemInfo } from "../../src/common/filesystem.js";

export interface Machine {
  cpus: number;
  cpuModel: string;
  memGB: number;
  node: string;
  platform: string;
  /**
   * The filesystem type of the directory the spools live in, from its mount ("ext4", with
   * "without a journal" where it has none); `stat -f` called this machine's ext4 "ext2/ext3".
   */
  fsType: string | undefined;
  /** The mount holding that directory, and for ext4 whether it has a journal. */
  filesystem: FilesystemInfo | undefined;
  /** The load average when the bench started (the machine may be shared). */
  loadAvg1m: number;
  /**
   * Kernel CPU (µs) to make one empty file (O_CREAT|O_EXCL, close) in a directory three
   * levels under the bench's: about 25 on a fresh ext4, 65 to 1,100 on this machine's root
   * filesystem depending on the directory (docs/benchmarks.md, "File creation on this
   * machine"). A spool makes three files per entry, so its figures move with this one.
   */
  fileCreateUs: number | undefined;
}

/**
 * `fileCreateUs`: the system CPU of `n` file creations in a fresh directory under `dir`.
 * The kernel accounts CPU time in ticks of a few milliseconds, so `n` is large enough for
 * many ticks even at 25 µs a file (300 gave 0 once on a fresh ext4).
 */
export function measureFileCreate(dir: string, n = 2000): number | undefined {
  const where = join(dir, ".fs-calibration", "a", "b");
  try {
    mkdirSync(where, { recursive: true });
    return Math.round(fileCreateUsIn(where, n) * 10) / 10;
  } catch {
    return undefined;
  } finally {
    rmSync(join(dir, ".fs-calibration"), { recursive: true, force: true });
  }
}

/**
 * Kernel CPU (µs) per file made (O_CREAT|O_EXCL) right in `dir`, an existing directory; the
 * files are removed after. Unlike `measureFileCreate`, no fresh directory is made: the
 * figure is that of `dir`'s own block group (a spool's `.data`, say).
 */
export function fileCreateUsIn(dir: string, n: number): number {
  const flags = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY;
  const paths = Array.from({ length: n }, (_, i) => join(dir, `fc${i}`));
  const before = process.cpuUsage();
  for (const p of paths) closeSync(openSync(p, flags, 0o644));
  const used = process.cpuUsage(before);
  for (const p of paths) unlinkSync(p);
  return used.system / n;
}

/** The line a bench prints about `fileCreateUs` of its directory `dir`. */
export function fileCreateLine(dir: string, us: number | undefined): string {
  return `file creation in ${dir}: ${us ?? "?"} µs of kernel CPU each`;
}

export async function describeMachine(dir: string, loadAvg1m: number): Promise<Machine> {
  const list = cpus();
  const filesystem = await describeFilesystem(dir);
  const fsType =
    filesystem === undefined
      ? undefined
      : `${filesystem.type}${filesystem.journal === false ? " without a journal" : ""}`;
  return {
    cpus: list.length,
    cpuModel: list[0]?.model ?? "unknown",
    memGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    fsType,
    filesystem,
    loadAvg1m,
    fileCreateUs: measureFileCreate(dir),
  };
}
