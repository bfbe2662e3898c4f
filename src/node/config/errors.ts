/**
 * Failures of configuration loading. Every message is one line that names the key and
 * where its value came from, e.g.
 * `config: grpc.listen (from GEOSPOOL_GRPC__LISTEN): expected host:port, got "abc"`.
 * Branch on `code`, never on the message.
 */
export const ConfigErrorCode = {
  /** A value that does not parse or breaks a rule (including cross-field rules). */
  InvalidValue: "invalid_value",
  /** A key the schema does not know (a typo in the file, an env var or a flag). */
  UnknownKey: "unknown_key",
  /** A key that must be set and is not. */
  MissingKey: "missing_key",
  /** The config file (or a file it names, like a tokenFile) could not be read. */
  FileUnreadable: "file_unreadable",
  /** The config file is not valid YAML (or is not a mapping at the top). */
  FileSyntax: "file_syntax",
} as const;

export type ConfigErrorCode = (typeof ConfigErrorCode)[keyof typeof ConfigErrorCode];

/** One problem found in the configuration. */
export interface ConfigProblem {
  code: ConfigErrorCode;
  /** Dotted key path (`grpc.tls.cert`, `auth.tokens[0].name`), or "" for the file itself. */
  key: string;
  /** Where the value came from: an env var name, `--flag`, `file:line`, or undefined. */
  source: string | undefined;
  /** The complete one-line message. */
  message: string;
}

export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  /** The key of the first problem. */
  readonly key: string;
  readonly source: string | undefined;
  /** Every problem found (the message reports the first and counts the rest). */
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[], options?: { cause?: unknown }) {
    const first = problems[0];
    if (first === undefined) throw new TypeError("ConfigError needs at least one problem");
    const more =
      problems.length > 1
        ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? "s" : ""})`
        : "";
    super(first.message + more, options);
    this.name = "ConfigError";
    this.code = first.code;
    this.key = first.key;
    this.source = first.source;
    this.problems = problems;
  }
}

export function problem(
  code: ConfigErrorCode,
  key: string,
  source: string | undefined,
  detail: string,
): ConfigProblem {
  const head = key === "" ? "config" : `config: ${key}`;
  const from = source === undefined ? "" : ` (from ${source})`;
  return { code, key, source, message: `${head}${from}: ${detail}` };
}

/** A value shown in a message: strings quoted and cut short, everything else as JSON. */
export function show(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") {
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  }
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
