import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { isErrno } from "../common/errno.js";
import { ioError } from "./errors.js";
import { CHECKOUT } from "./layout.js";
import { nameProblem } from "./names.js";

/**
 * The queues a spool directory holds, sorted, for tools that open a spool they did not make:
 * a queue is a directory at the root, with a valid name, that has a `.checkout` directory.
 * None when `dir` does not exist.
 */
export async function discoverQueues(dir: string): Promise<string[]> {
  let children: string[];
  try {
    children = await readdir(dir);
  } catch (err) {
    if (isErrno(err, "ENOENT", "ENOTDIR")) return [];
    throw ioError("list", dir, err);
  }
  const queues: string[] = [];
  for (const child of children) {
    if (nameProblem(child) !== undefined) continue;
    const st = await stat(join(dir, child, CHECKOUT)).catch(() => undefined);
    if (st?.isDirectory()) queues.push(child);
  }
  return queues.sort();
}
