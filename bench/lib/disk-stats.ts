/**
 * Write requests and flushes (cache flushes: what fsync costs the device) completed by the
 * block device holding a path, from /proc/diskstats: per job, what a workload asks of the
 * disk. Undefined where the path's device has no line there (tmpfs, overlay).
 */
import { readFile, stat } from "node:fs/promises";

export interface DiskCounters {
  writes: number;
  flushes: number;
}

/** The major and minor number of the device holding `path` (Linux dev_t encoding). */
export async function deviceOf(path: string): Promise<{ major: number; minor: number }> {
  const dev = (await stat(path)).dev;
  return {
    major: Math.floor(dev / 256) & 0xfff,
    minor: (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00),
  };
}

export async function diskCounters(device: {
  major: number;
  minor: number;
}): Promise<DiskCounters | undefined> {
  const text = await readFile("/proc/diskstats", "utf8").catch(() => "");
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (Number(f[0]) !== device.major || Number(f[1]) !== device.minor) continue;
    // Fields after the name: 4 writes completed (index 7); flushes completed (index 19, kernels 5.5+).
    const writes = Number(f[7]);
    const flushes = f[19] === undefined ? Number.NaN : Number(f[19]);
    return { writes, flushes };
  }
  return undefined;
}
