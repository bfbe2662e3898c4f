import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { errnoOf } from "../../common/errno.js";
import { ConfigErrorCode, type ConfigProblem, problem } from "./errors.js";
import {
  CONFIG_FILE_ENV,
  closest,
  configKeys,
  configSections,
  ENV_PREFIX,
  kebabToCamel,
  upperSnake,
} from "./keys.js";

/**
 * One source of settings: a nested plain object of raw values and, for each path in it
 * (joined by "."; list items by index), a label of where it came from.
 */
export interface Layer {
  values: Record<string, unknown>;
  sources: Map<string, string>;
}

type Path = readonly (string | number)[];

/** Keys whose values are paths; relative paths resolve against the file's directory (or cwd). */
const PATH_KEYS: Path[] = [
  ["spool", "dir"],
  ["grpc", "tls", "cert"],
  ["grpc", "tls", "key"],
  ["grpc", "tls", "clientCa"],
];

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function resolvePaths(values: Record<string, unknown>, base: string): void {
  const fix = (holder: unknown, key: string) => {
    if (!isPlainObject(holder)) return;
    const value = holder[key];
    if (typeof value === "string" && value !== "" && !isAbsolute(value)) {
      holder[key] = resolve(base, value);
    }
  };
  for (const path of PATH_KEYS) {
    fix(getPath(values, path.slice(0, -1)), path[path.length - 1] as string);
  }
  const tokens = getPath(values, ["auth", "tokens"]);
  if (Array.isArray(tokens)) for (const token of tokens) fix(token, "tokenFile");
}

export function getPath(values: unknown, path: Path): unknown {
  let at = values;
  for (const step of path) {
    if (Array.isArray(at) && typeof step === "number") at = at[step];
    else if (isPlainObject(at) && typeof step === "string") at = at[step];
    else return undefined;
  }
  return at;
}

/** A layer read from a YAML file; sources are `file:line`. */
export function fileLayer(file: string, problems: ConfigProblem[]): Layer | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    problems.push(
      problem(ConfigErrorCode.FileUnreadable, "", file, `cannot read: ${errnoOf(err) ?? err}`),
    );
    return undefined;
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const first = doc.errors[0];
  if (first !== undefined) {
    const line = lineCounter.linePos(first.pos[0]).line;
    const message = first.message.split("\n")[0] ?? first.code;
    problems.push(
      problem(ConfigErrorCode.FileSyntax, "", `${file}:${line}`, `invalid YAML: ${message}`),
    );
    return undefined;
  }
  const values: unknown = doc.toJS() ?? {};
  if (!isPlainObject(values)) {
    problems.push(
      problem(ConfigErrorCode.FileSyntax, "", file, "expected a mapping of keys at the top level"),
    );
    return undefined;
  }
  dropNulls(values);
  const sources = new Map<string, string>();
  const walk = (node: unknown, path: string[]) => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const keyNode = pair.key as Node | null;
        const offset = keyNode?.range?.[0];
        const label = offset === undefined ? file : `${file}:${lineCounter.linePos(offset).line}`;
        sources.set([...path, key].join("."), label);
        walk(pair.value, [...path, key]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const offset = (item as Node | null)?.range?.[0];
        const label = offset === undefined ? file : `${file}:${lineCounter.linePos(offset).line}`;
        sources.set([...path, String(i)].join("."), label);
        walk(item, [...path, String(i)]);
      });
    }
  };
  walk(doc.contents, []);
  resolvePaths(values, dirname(resolve(file)));
  return { values, sources };
}

/** `key:` with no value (or `~`) in YAML means "not set": drop it so defaults apply. */
function dropNulls(value: unknown): void {
  if (Array.isArray(value)) value.forEach(dropNulls);
  else if (isPlainObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (v === null) delete value[k];
      else dropNulls(v);
    }
  }
}

/** A layer from a plain object given in code (tests, the dev cluster). */
export function objectLayer(values: unknown, label: string, cwd: string): Layer {
  const copy = isPlainObject(values) ? structuredClone(values) : {};
  const sources = new Map<string, string>();
  const walk = (value: unknown, path: string[]) => {
    if (path.length > 0) sources.set(path.join("."), label);
    if (isPlainObject(value)) {
      for (const [k, v] of Object.entries(value)) walk(v, [...path, k]);
    } else if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) walk(v, [...path, String(i)]);
    }
  };
  walk(copy, []);
  resolvePaths(copy, cwd);
  return { values: copy, sources };
}

/**
 * Env vars: `GEOSPOOL_<SECTION>[__<KEY>...]`. A var whose name starts with a section
 * (`GEOSPOOL_GRPC...`, `GEOSPOOL_LOG_LEVEL`) must name a known key; other `GEOSPOOL_*` vars
 * (and `GEOSPOOL_CONFIG`) are not config keys and are ignored. Empty values count as unset.
 */
export function envLayer(env: NodeJS.ProcessEnv, cwd: string, problems: ConfigProblem[]): Layer {
  const byEnv = new Map(configKeys().map((k) => [k.env, k]));
  const sections = configSections().map(upperSnake);
  const values: Record<string, unknown> = {};
  const sources = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || name === CONFIG_FILE_ENV) continue;
    const rest = name.slice(ENV_PREFIX.length);
    if (!sections.some((s) => rest === s || rest.startsWith(`${s}_`))) continue;
    if (value === undefined || value === "") continue;
    const key = byEnv.get(name);
    if (key === undefined) {
      const guess = closest(name, [...byEnv.keys()]);
      problems.push(
        problem(
          ConfigErrorCode.UnknownKey,
          name,
          "environment",
          `unknown setting${guess === undefined ? "" : `; did you mean ${guess}?`}`,
        ),
      );
      continue;
    }
    setPath(values, sources, key.path, value, name);
  }
  resolvePaths(values, cwd);
  return { values, sources };
}

/**
 * Flags: dotted key paths (`grpc.listen`, with or without leading dashes; levels in
 * camelCase or kebab-case). A flag with a dot, or named like a section (`peers`), must be a
 * known key; other flags (`config`, `help`) belong to the CLI and are ignored here.
 */
export function flagLayer(
  flags: Record<string, string | boolean | undefined>,
  cwd: string,
  problems: ConfigProblem[],
): Layer {
  const byKey = new Map(configKeys().map((k) => [k.key, k]));
  const sections = configSections();
  const values: Record<string, unknown> = {};
  const sources = new Map<string, string>();
  for (const [raw, value] of Object.entries(flags)) {
    if (value === undefined) continue;
    const written = raw.replace(/^--?/, "");
    const dotted = written.split(".").map(kebabToCamel).join(".");
    if (!dotted.includes(".") && !sections.includes(dotted)) continue;
    const key = byKey.get(dotted);
    if (key === undefined) {
      const guess = closest(dotted, [...byKey.keys()]);
      problems.push(
        problem(
          ConfigErrorCode.UnknownKey,
          `--${written}`,
          "flags",
          `unknown setting${guess === undefined ? "" : `; did you mean --${guess}?`}`,
        ),
      );
      continue;
    }
    setPath(values, sources, key.path, value, `--${written}`);
  }
  resolvePaths(values, cwd);
  return { values, sources };
}

function setPath(
  values: Record<string, unknown>,
  sources: Map<string, string>,
  path: readonly string[],
  value: unknown,
  label: string,
): void {
  let at = values;
  for (const step of path.slice(0, -1)) {
    const next = at[step];
    if (isPlainObject(next)) at = next;
    else {
      const fresh: Record<string, unknown> = {};
      at[step] = fresh;
      at = fresh;
    }
  }
  at[path[path.length - 1] as string] = value;
  const joined = path.join(".");
  for (const existing of [...sources.keys()]) {
    if (existing.startsWith(`${joined}.`)) sources.delete(existing);
  }
  sources.set(joined, label);
}

/** Applies `upper` over `lower` (lists and scalars replace; mappings merge key by key). */
export function overlay(lower: Layer, upper: Layer): Layer {
  const values = structuredClone(lower.values);
  const sources = new Map(lower.sources);
  const walk = (value: unknown, path: string[]) => {
    if (isPlainObject(value) && path.length > 0 && Object.keys(value).length > 0) {
      for (const [k, v] of Object.entries(value)) walk(v, [...path, k]);
      return;
    }
    if (isPlainObject(value) && path.length === 0) {
      for (const [k, v] of Object.entries(value)) walk(v, [k]);
      return;
    }
    setPath(values, sources, path, structuredClone(value), upper.sources.get(path.join(".")) ?? "");
    for (const [key, label] of upper.sources) {
      if (key.startsWith(`${path.join(".")}.`)) sources.set(key, label);
    }
  };
  walk(upper.values, []);
  return { values, sources };
}

/** The label of the most specific source of `path` or of something containing it. */
export function sourceOf(layer: Layer, path: Path): string | undefined {
  for (let n = path.length; n > 0; n--) {
    const label = layer.sources.get(path.slice(0, n).map(String).join("."));
    if (label !== undefined && label !== "") return label;
  }
  return undefined;
}
