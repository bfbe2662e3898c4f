import {
  type CheckedOutEntry,
  describeProblem,
  dirLabel,
  type Problem,
  SpoolErrorCode,
  validateName,
} from "../../../spool/index.js";
import type { JsonMetadata, JsonSpool } from "../../spool-description.js";
import { CliError } from "../cli-error.js";
import { ExitCode } from "../exit-codes.js";

/**
 * A queue argument (or `flag`'s value): a valid name of a queue this spool has; else a
 * usage error (exit 2) and nothing is touched.
 */
export function requireQueue(spool: JsonSpool, queue: string, flag?: string): string {
  validateName("queue", queue);
  if (!spool.queues.includes(queue)) {
    throw new CliError(
      SpoolErrorCode.UnknownQueue,
      `${flag === undefined ? "" : `${flag}: `}unknown queue ${JSON.stringify(queue)} (this spool has: ${spool.queues.join(", ")})`,
      ExitCode.Usage,
    );
  }
  return queue;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A problem as JSON: what, which file, where, when, and the line people read. */
export function problemJson(p: Problem<string>) {
  return {
    kind: p.kind,
    name: p.file.filename,
    ...("dirs" in p ? { dirs: p.dirs.map(dirLabel) } : { dir: dirLabel(p.dir) }),
    mtime: iso(p.file.mtimeMs),
    description: describeProblem(p),
  };
}

/** What `dequeue` prints about the entry it took. */
export function checkoutJson(co: CheckedOutEntry<JsonMetadata, string>) {
  return {
    name: co.name,
    queue: co.queue,
    attempts: co.attempts,
    leaseUntil: iso(co.leaseUntil),
    metadata: co.contents,
  };
}

/** `key: value` lines under a bare first line (the name), for people and `head -1`. */
export function describeLines(name: string, fields: Record<string, unknown>): string[] {
  const lines = [name];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    lines.push(`${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  }
  return lines;
}

export function isEnoent(err: unknown): boolean {
  return typeof err === "object" && err !== null && "code" in err && err.code === "ENOENT";
}
