import { execFile } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { promisify } from "node:util";

export interface Machine {
  cpus: number;
  cpuModel: string;
  memGB: number;
  node: string;
  platform: string;
  /** `stat -f -c %T` of the directory the spools live in. */
  fsType: string | undefined;
  /** The load average when the bench started (the machine may be shared). */
  loadAvg1m: number;
}

export async function describeMachine(dir: string, loadAvg1m: number): Promise<Machine> {
  const list = cpus();
  let fsType: string | undefined;
  try {
    const { stdout } = await promisify(execFile)("stat", ["-f", "-c", "%T", dir]);
    fsType = stdout.trim();
  } catch {
    fsType = undefined;
  }
  return {
    cpus: list.length,
    cpuModel: list[0]?.model ?? "unknown",
    memGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    fsType,
    loadAvg1m,
  };
}
