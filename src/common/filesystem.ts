import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { basename } from "node:path";

/** What a directory's filesystem is, as far as the spool's speed is concerned. */
export interface FilesystemInfo {
  /** The filesystem type of the mount holding the directory ("ext4", "xfs", "tmpfs"...). */
  type: string;
  /** The mount's source ("/dev/vda"). */
  source: string;
  /** The mount point. */
  mountPoint: string;
  /**
   * ext4 only: whether it has a journal (a jbd2 journal of its device is listed in
   * /proc/fs/jbd2); undefined for other filesystems and where that cannot be told.
   */
  journal?: boolean;
}

/** One line of /proc/self/mountinfo: its device, mount point, type and source. */
export interface MountinfoLine {
  majorMinor: string;
  mountPoint: string;
  type: string;
  source: string;
}

/**
 * Parse /proc/self/mountinfo (proc(5)): `id parent major:minor root mountpoint options
 * [optional fields...] - type source superoptions`. Mount points escape space, tab,
 * newline and backslash as octal (`\040`).
 */
export function parseMountinfo(text: string): MountinfoLine[] {
  const out: MountinfoLine[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash < 6 || fields.length < dash + 3) continue;
    out.push({
      majorMinor: fields[2] as string,
      mountPoint: unescapeOctal(fields[4] as string),
      type: fields[dash + 1] as string,
      source: unescapeOctal(fields[dash + 2] as string),
    });
  }
  return out;
}

function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Linux's dev_t as "major:minor" (glibc's gnu_dev_major/minor). */
export function majorMinorOf(dev: number | bigint): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n);
  const minor = (d & 0xffn) | ((d >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

/**
 * The filesystem holding `dir` (Linux: /proc/self/mountinfo, /sys/dev/block and
 * /proc/fs/jbd2); undefined where that cannot be read (another platform, no /proc).
 * The mount is the one whose device is `dir`'s; of several (bind mounts), the one with
 * the longest mount point that contains `dir`.
 */
export async function describeFilesystem(dir: string): Promise<FilesystemInfo | undefined> {
  let mounts: MountinfoLine[];
  let where: string;
  let majorMinor: string;
  try {
    where = await realpath(dir);
    majorMinor = majorMinorOf((await stat(where, { bigint: true })).dev);
    mounts = parseMountinfo(await readFile("/proc/self/mountinfo", "utf8"));
  } catch {
    return undefined;
  }
  const inside = (m: MountinfoLine) =>
    m.mountPoint === "/" || where === m.mountPoint || where.startsWith(`${m.mountPoint}/`);
  const mount = mounts
    .filter((m) => m.majorMinor === majorMinor && inside(m))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
  if (mount === undefined) return undefined;
  const info: FilesystemInfo = {
    type: mount.type,
    source: mount.source,
    mountPoint: mount.mountPoint,
  };
  if (mount.type === "ext4") {
    const journal = await hasJbd2Journal(majorMinor);
    if (journal !== undefined) info.journal = journal;
  }
  return info;
}

/**
 * Whether the block device `majorMinor` has a jbd2 journal: /proc/fs/jbd2 lists one
 * directory per journal, named after the device's kernel name and the journal's inode
 * ("vda-8"). Undefined when the device's kernel name or the list cannot be read.
 */
async function hasJbd2Journal(majorMinor: string): Promise<boolean | undefined> {
  try {
    const kernelName = basename(await realpath(`/sys/dev/block/${majorMinor}`));
    const journals = await readdir("/proc/fs/jbd2");
    return journals.some((j) => j.startsWith(`${kernelName}-`));
  } catch {
    return undefined;
  }
}

/**
 * A warning for a spool on `fs`, or undefined when there is nothing to say. ext4 without a
 * journal keeps an inode freed in the last minute (six while its inode table block is
 * dirty) from reuse by scanning, at every file creation, the free inodes of the group from
 * its start and reading each one's deletion time; a spool makes three files per entry and
 * deletes them when it is finished, so under steady traffic each creation walks thousands
 * of recently deleted inodes (0.2 to 1 ms of CPU each measured, against about 25 µs on a
 * journaled ext4; docs/benchmarks.md, "File creation on this machine").
 */
export function filesystemWarning(dir: string, fs: FilesystemInfo | undefined): string | undefined {
  if (fs?.type !== "ext4" || fs.journal !== false) return undefined;
  return (
    `${dir} is on ext4 without a journal (${fs.source} at ${fs.mountPoint}): there every file ` +
    "creation scans the inodes deleted in the last minutes, and a spool creates three files " +
    "per entry and deletes them once it is finished, so under steady traffic a creation can " +
    "cost up to a millisecond of CPU (about 25 µs with a journal). For speed, put the spool " +
    "on a journaled filesystem (mkfs.ext4's default, or xfs)."
  );
}
