import { randomBytes } from "node:crypto";
import { SpoolError, SpoolErrorCode } from "./errors.js";

/** Longest entry or queue name accepted (bytes; well under NAME_MAX = 255). */
export const MAX_NAME_LENGTH = 200;

/**
 * Entry names and queue directory names: letters, digits and `._:@+=-`, not starting with
 * a dot, at most MAX_NAME_LENGTH characters. `~` is reserved for the spool's own temporary
 * files (`<name>~<tag>`), and `/`, NUL and `..` can never appear, so a name can never
 * address a path outside its directory.
 */
const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._:@+=-]*$/;

export function nameProblem(name: unknown): string | undefined {
  if (typeof name !== "string") return "is not a string";
  if (name.length === 0) return "is empty";
  if (name.length > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} characters`;
  if (name.includes("\0")) return "contains NUL";
  if (name.includes("/") || name.includes("\\")) return "contains a path separator";
  if (name.startsWith(".")) return "starts with a dot";
  if (!NAME_PATTERN.test(name)) return "contains a character outside [A-Za-z0-9._:@+=-]";
  return undefined;
}

export function validateName(kind: "entry" | "queue", name: unknown): string {
  const problem = nameProblem(name);
  if (problem !== undefined) {
    const shown = typeof name === "string" ? JSON.stringify(name.slice(0, 80)) : String(name);
    throw new SpoolError(SpoolErrorCode.InvalidName, `invalid ${kind} name ${shown}: ${problem}`);
  }
  return name as string;
}

/**
 * Makes candidate names for new entries. `attempt` counts how many candidates were already
 * taken in this reservation (0 for the first try).
 */
export interface NameGenerator {
  next(attempt: number): string;
}

let processCounter = 0;

/**
 * The default generator: `<ms since epoch, 12 hex>-<per-process counter, 8 hex>-<node id>-<random>`.
 * Names sort by creation time across processes (to the millisecond) and strictly within one
 * process, so listing order is first-in first-out; the node id and 48 random bits make
 * collisions between nodes and processes vanishingly rare (and O_EXCL catches the rest).
 */
export function timeSortableNames(nodeId = "local"): NameGenerator {
  validateName("entry", nodeId);
  return {
    next(attempt: number): string {
      processCounter = (processCounter + 1) >>> 0;
      const time = Date.now().toString(16).padStart(12, "0");
      const counter = processCounter.toString(16).padStart(8, "0");
      const rand = randomBytes(6).toString("hex");
      const suffix = attempt > 0 ? `-${attempt}` : "";
      return `${time}-${counter}-${nodeId}-${rand}${suffix}`;
    },
  };
}

let lastTimeNs = 0n;

/**
 * A generator whose names sort strictly in the order they were made, within one process:
 * `<nanoseconds since epoch, 20 digits>_<attempt, 6 digits>__<tag>__`. For ordering tests,
 * like Multispool's Lexicographic_time_order_name_generator.
 */
export function lexicographicTimeNames(tag = "0"): NameGenerator {
  validateName("entry", tag);
  return {
    next(attempt: number): string {
      let now = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
      if (now <= lastTimeNs) now = lastTimeNs + 1n;
      lastTimeNs = now;
      return `${now.toString().padStart(20, "0")}_${String(attempt).padStart(6, "0")}__${tag}__`;
    },
  };
}
