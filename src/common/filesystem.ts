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
   * ext2, ext3 and ext4 only: whether it has a journal; undefined for other filesystems
   * and where that cannot be told.
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
 * Of `mounts`, the one holding `where` (a real path) on the device `majorMinor`: of several
 * (bind mounts), the one with the longest mount point that contains `where`.
 */
export function pickMount(
  mounts: readonly MountinfoLine[],
  where: string,
  majorMinor: string,
): MountinfoLine | undefined {
  const inside = (m: MountinfoLine) =>
    m.mountPoint === "/" || where === m.mountPoint || where.startsWith(`${m.mountPoint}/`);
  return mounts
    .filter((m) => m.majorMinor === majorMinor && inside(m))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
}

/** The filesystem types the ext4 driver mounts, each with or without a journal. */
const EXT_TYPES = new Set(["ext2", "ext3", "ext4"]);

/**
 * The filesystem holding `dir` (Linux: /proc/self/mountinfo, /sys/dev/block, and
 * /sys/fs/ext4 or /proc/fs/jbd2); undefined where that cannot be read (another platform,
 * no /proc) or where `dir`'s device is no mount's (btrfs subvolumes, overlays).
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
  const mount = pickMount(mounts, where, majorMinor);
  if (mount === undefined) return undefined;
  const info: FilesystemInfo = {
    type: mount.type,
    source: mount.source,
    mountPoint: mount.mountPoint,
  };
  if (EXT_TYPES.has(mount.type)) {
    const journal = await hasJournal(majorMinor);
    if (journal !== undefined) info.journal = journal;
  }
  return info;
}

/**
 * Whether the ext2/3/4 filesystem on the block device `majorMinor` has a journal: its
 * /sys/fs/ext4/<device>/journal_task says "<none>" without one (and names the journal
 * thread with one, internal or on another device); where that file is missing, whether
 * /proc/fs/jbd2 lists an internal journal of the device. Undefined when neither can be read.
 */
async function hasJournal(majorMinor: string): Promise<boolean | undefined> {
  let kernelName: string;
  try {
    kernelName = basename(await realpath(`/sys/dev/block/${majorMinor}`));
  } catch {
    return undefined;
  }
  try {
    const task = await readFile(`/sys/fs/ext4/${kernelName}/journal_task`, "utf8");
    return task.trim() !== "<none>";
  } catch {
    // An older kernel: see what jbd2 lists.
  }
  try {
    return journalListed(kernelName, await readdir("/proc/fs/jbd2"));
  } catch {
    return undefined;
  }
}

/**
 * Whether /proc/fs/jbd2's `entries` hold an internal journal of the device `kernelName`:
 * they are named "<device>-<journal inode>" ("vda-8", "dm-0-8").
 */
export function journalListed(kernelName: string, entries: readonly string[]): boolean {
  const prefix = `${kernelName}-`;
  return entries.some((j) => j.startsWith(prefix) && /^\d+$/.test(j.slice(prefix.length)));
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
  if (fs === undefined || !EXT_TYPES.has(fs.type) || fs.journal !== false) return undefined;
  return (
    `${dir} is on ${fs.type} without a journal (${fs.source} at ${fs.mountPoint}): there every file ` +
    "creation scans the inodes deleted in the last minutes, and a spool creates three files " +
    "per entry and deletes them once it is finished, so under steady traffic a creation can " +
    "cost up to about a millisecond of CPU (about 25 µs with a journal). For speed, put the spool " +
    "on a journaled filesystem (mkfs.ext4's default, or xfs)."
  );
}
