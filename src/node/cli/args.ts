import { type ParseArgsConfig, parseArgs } from "node:util";
import { CliError, usageError } from "./cli-error.js";
import type { CliIo } from "./command.js";
import { ExitCode } from "./exit-codes.js";
import { Output } from "./output.js";

type Options = NonNullable<ParseArgsConfig["options"]>;
type Parsed<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true }>
>;

/** What a command gets from its arguments: its flags' values, and DIR, QUEUE, ... */
export interface ParsedCommand<O extends Options> {
  values: Parsed<O>["values"];
  positionals: string[];
}

export interface CommandSpec<O extends Options> {
  /** The full command path, e.g. `geospool spool enqueue`. */
  path: string;
  /** The text printed by --help (the usage line, what it does, its options). */
  help: string;
  options: O;
  /** Names of the required positional arguments, in order (DIR, QUEUE, ...). */
  positionals: readonly string[];
}

/** True when `--json` appears before any `--` (used to format errors even on bad input). */
export function wantsJson(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).includes("--json");
}

function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  const head = end < 0 ? args : args.slice(0, end);
  return head.includes("--help") || head.includes("-h");
}

/**
 * Parse a command's arguments strictly. `undefined` means --help was asked for and has been
 * printed (exit 0); a bad flag, a missing or extra argument is a usage error naming it.
 */
export async function parseCommand<O extends Options>(
  args: string[],
  spec: CommandSpec<O>,
  io: CliIo,
): Promise<ParsedCommand<O> | undefined> {
  if (wantsHelp(args)) {
    await new Output(io, false).write(spec.help.endsWith("\n") ? spec.help : `${spec.help}\n`);
    return undefined;
  }
  const where = spec.path.replace(/^geospool /, "");
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args, options: spec.options, allowPositionals: true, strict: true });
  } catch (err) {
    // node's messages go on with advice about `--`; the first sentence names the flag.
    const message = err instanceof Error ? (err.message.split(". ")[0] ?? err.message) : "";
    throw usageError(`${where}: ${lowerFirst(message)} (see --help)`);
  }
  const { positionals } = parsed;
  if (positionals.length < spec.positionals.length) {
    const missing = spec.positionals.slice(positionals.length).join(" ");
    throw usageError(`${where}: missing ${missing} (see --help)`);
  }
  if (positionals.length > spec.positionals.length) {
    const extra = positionals.slice(spec.positionals.length).map((p) => JSON.stringify(p));
    throw usageError(`${where}: unexpected argument ${extra.join(" ")} (see --help)`);
  }
  return { values: parsed.values, positionals: positionals as string[] };
}

/** A flag whose value must be a JSON object (entry metadata). */
export function parseJsonObject(flag: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw usageError(`${flag}: not valid JSON (${why})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw usageError(`${flag}: must be a JSON object, like '{"key":"value"}'`);
  }
  return value as Record<string, unknown>;
}

/** A flag whose value must be a non-negative integer. */
export function parseCount(flag: string, text: string): number {
  if (!/^\d+$/.test(text.trim())) {
    throw usageError(`${flag}: expected a non-negative integer, got ${JSON.stringify(text)}`);
  }
  return Number(text.trim());
}

/** Comma-separated names, blanks dropped. */
export function parseList(text: string): string[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** At most one of `flags` may be set. */
export function exclusive(values: Record<string, unknown>, flags: readonly string[]): void {
  const set = flags.filter((f) => values[f] !== undefined && values[f] !== false);
  if (set.length > 1) {
    throw new CliError(
      "usage",
      `${set.map((f) => `--${f}`).join(" and ")} cannot be used together`,
      ExitCode.Usage,
    );
  }
}

function lowerFirst(s: string): string {
  return s.length > 0 ? s[0]!.toLowerCase() + s.slice(1) : s;
}
