import { accessSync, constants, readFileSync } from "node:fs";
import type { z } from "zod";
import { errnoOf } from "../../common/errno.js";
import type { Config } from "./config.js";
import { ConfigError, ConfigErrorCode, type ConfigProblem, problem, show } from "./errors.js";
import { closest, configKeys, keysAt } from "./keys.js";
import { configSchema, MISSING, type ParsedConfig } from "./schema.js";
import {
  envLayer,
  fileLayer,
  flagLayer,
  getPath,
  type Layer,
  objectLayer,
  overlay,
  sourceOf,
} from "./sources.js";

export interface LoadConfigOptions {
  /** YAML config file. Relative paths inside it resolve against its directory. */
  file?: string | undefined;
  /** Usually `process.env`. Only `GEOSPOOL_*` vars are read. */
  env: NodeJS.ProcessEnv;
  /** Parsed command-line flags keyed by dotted path (`"grpc.listen"` or `"--grpc.listen"`). */
  flags: Record<string, string | boolean | undefined>;
  /** Keys that must be set for this command, e.g. `["postgres.url"]` for `geospool node`. */
  require?: readonly string[] | undefined;
  /** Base for relative paths from env vars and flags. Default `process.cwd()`. */
  cwd?: string | undefined;
  /** Values (flag-shaped) under everything else: used only where file, env and flags are silent. */
  fallbacks?: Record<string, string> | undefined;
}

/**
 * Reads the configuration: flags over env vars over the file over defaults. Throws a
 * `ConfigError` whose message is one line naming the first bad key and its source.
 */
export function loadConfig(options: LoadConfigOptions): Config {
  const cwd = options.cwd ?? process.cwd();
  const problems: ConfigProblem[] = [];
  const base: Layer =
    options.file === undefined
      ? { values: {}, sources: new Map() }
      : (fileLayer(options.file, problems) ?? { values: {}, sources: new Map() });
  if (problems.length > 0) throw new ConfigError(problems);
  const env = envLayer(options.env, cwd, problems);
  const flags = flagLayer(options.flags, cwd, problems);
  const under =
    options.fallbacks === undefined
      ? base
      : overlay(flagLayer(options.fallbacks, cwd, problems), base);
  return finish(overlay(overlay(under, env), flags), problems, options.require ?? []);
}

/**
 * Validates a configuration given as a plain object (file-shaped: nested keys, values as
 * in YAML or as strings), filling defaults. For the dev cluster and tests.
 */
export function parseConfig(
  values: unknown,
  options: { require?: readonly string[]; cwd?: string; label?: string } = {},
): Config {
  const layer = objectLayer(values, options.label ?? "config object", options.cwd ?? process.cwd());
  return finish(layer, [], options.require ?? []);
}

function finish(layer: Layer, problems: ConfigProblem[], required: readonly string[]): Config {
  const result = configSchema.safeParse(layer.values, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(...describeIssue(issue, layer));
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  const parsed = result.data;
  for (const key of required) {
    if (getPath(parsed, key.split(".")) === undefined) {
      problems.push(missing(key.split("."), undefined, "required by this command"));
    }
  }
  checkFiles(parsed, layer, problems);
  const tokens = resolveTokens(parsed, layer, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...parsed, auth: { ...parsed.auth, tokens } };
}

/** `auth.tokens[0].permissions[1].queues` */
export function formatKey(path: readonly PropertyKey[]): string {
  let out = "";
  for (const step of path) {
    if (typeof step === "number") out += `[${step}]`;
    else out += out === "" ? String(step) : `.${String(step)}`;
  }
  return out;
}

function missing(
  path: readonly PropertyKey[],
  source: string | undefined,
  why = "required",
): ConfigProblem {
  const key = formatKey(path);
  const known = configKeys().find((k) => k.key === key);
  const hint =
    known === undefined ? "" : `; set it in the config file, with ${known.env} or ${known.flag}`;
  return problem(ConfigErrorCode.MissingKey, key, source, `${why}${hint}`);
}

function describeIssue(issue: z.core.$ZodIssue, layer: Layer): ConfigProblem[] {
  const path = issue.path.filter(
    (p): p is string | number => typeof p === "string" || typeof p === "number",
  );
  const source = sourceOf(layer, path);
  const key = formatKey(path);
  switch (issue.code) {
    case "custom":
      if (issue.message === MISSING) return [missing(path, source)];
      return [problem(ConfigErrorCode.InvalidValue, key, source, issue.message)];
    case "unrecognized_keys":
      return issue.keys.map((unknownKey) => {
        const guess = closest(unknownKey, keysAt(path) ?? []);
        return problem(
          ConfigErrorCode.UnknownKey,
          formatKey([...path, unknownKey]),
          sourceOf(layer, [...path, unknownKey]),
          `unknown key${guess === undefined ? "" : `; did you mean ${formatKey([...path, guess])}?`}`,
        );
      });
    case "invalid_type": {
      if (issue.input === undefined) return [missing(path, source)];
      const expected =
        issue.expected === "object"
          ? "a mapping of keys"
          : issue.expected === "array"
            ? "a list"
            : issue.expected;
      return [
        problem(
          ConfigErrorCode.InvalidValue,
          key,
          source,
          `expected ${expected}, got ${show(issue.input)}`,
        ),
      ];
    }
    default:
      return [problem(ConfigErrorCode.InvalidValue, key, source, issue.message)];
  }
}

function checkFiles(parsed: ParsedConfig, layer: Layer, problems: ConfigProblem[]): void {
  for (const name of ["cert", "key", "clientCa"] as const) {
    const file = parsed.grpc.tls[name];
    if (file === undefined) continue;
    try {
      accessSync(file, constants.R_OK);
    } catch (err) {
      const path = ["grpc", "tls", name];
      problems.push(
        problem(
          ConfigErrorCode.FileUnreadable,
          formatKey(path),
          sourceOf(layer, path),
          `cannot read ${show(file)}: ${errnoOf(err) ?? err}`,
        ),
      );
    }
  }
}

function resolveTokens(
  parsed: ParsedConfig,
  layer: Layer,
  problems: ConfigProblem[],
): Config["auth"]["tokens"] {
  const tokens: Config["auth"]["tokens"] = [];
  parsed.auth.tokens.forEach((entry, i) => {
    if (entry.token !== undefined) {
      tokens.push({ ...entry, token: entry.token });
      return;
    }
    const path = ["auth", "tokens", i, "tokenFile"];
    const file = entry.tokenFile as string;
    let secret: string;
    try {
      secret = readFileSync(file, "utf8").trim();
    } catch (err) {
      problems.push(
        problem(
          ConfigErrorCode.FileUnreadable,
          formatKey(path),
          sourceOf(layer, path),
          `cannot read ${show(file)}: ${errnoOf(err) ?? err}`,
        ),
      );
      return;
    }
    if (secret === "") {
      problems.push(
        problem(
          ConfigErrorCode.InvalidValue,
          formatKey(path),
          sourceOf(layer, path),
          `${show(file)} is empty`,
        ),
      );
      return;
    }
    if (
      tokens.some((t) => t.token === secret) ||
      parsed.auth.tokens.some((t) => t.token === secret)
    ) {
      problems.push(
        problem(
          ConfigErrorCode.InvalidValue,
          formatKey(path),
          sourceOf(layer, path),
          "holds the same token as another entry (names must identify holders)",
        ),
      );
      return;
    }
    tokens.push({ ...entry, token: secret });
  });
  return tokens;
}
