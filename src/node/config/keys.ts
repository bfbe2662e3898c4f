import type { z } from "zod";
import { configSchema } from "./schema.js";

/**
 * The settable keys of the configuration, read off the schema, and their names in each
 * source. A key path `grpc.tls.clientCa` is:
 * - in the file: nested mappings `grpc: {tls: {clientCa: ...}}`;
 * - an env var: `GEOSPOOL_` + each level in UPPER_SNAKE_CASE, levels joined by `__`:
 *   `GEOSPOOL_GRPC__TLS__CLIENT_CA`;
 * - a flag: the dotted path, each level in camelCase or kebab-case: `--grpc.tls.clientCa`
 *   or `--grpc.tls.client-ca`.
 * Lists (`spool.queues`, `auth.tokens`, `peers`) are single keys; in env vars and flags they
 * are JSON (`[...]`), or comma-separated for lists of names.
 */
export interface ConfigKey {
  /** Dotted camelCase path: `grpc.tls.clientCa`. */
  key: string;
  path: readonly string[];
  /** `GEOSPOOL_GRPC__TLS__CLIENT_CA` */
  env: string;
  /** `--grpc.tls.clientCa` */
  flag: string;
}

export const ENV_PREFIX = "GEOSPOOL_";
/** Reserved for the CLI: the config file path. Never read as a config key. */
export const CONFIG_FILE_ENV = "GEOSPOOL_CONFIG";

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  element?: z.ZodType;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** Strips optional/default/prefault wrappers and preprocess pipes to the shape beneath. */
function unwrap(schema: z.ZodType): z.ZodType {
  for (;;) {
    const def = defOf(schema);
    if (def.innerType !== undefined) schema = def.innerType;
    else if (def.type === "pipe" && def.out !== undefined && defOf(def.in!).type === "transform") {
      schema = def.out;
    } else return schema;
  }
}

/** Keys of the mapping at `path` (numbers step into list items); undefined if not a mapping. */
export function keysAt(path: readonly (string | number)[]): string[] | undefined {
  let schema: z.ZodType | undefined = unwrap(configSchema);
  for (const step of path) {
    if (schema === undefined) return undefined;
    const def = defOf(schema);
    if (typeof step === "number") schema = def.type === "array" ? def.element : undefined;
    else schema = def.type === "object" ? def.shape?.[step] : undefined;
    if (schema !== undefined) schema = unwrap(schema);
  }
  if (schema === undefined) return undefined;
  const def = defOf(schema);
  return def.type === "object" ? Object.keys(def.shape ?? {}) : undefined;
}

export function upperSnake(segment: string): string {
  return segment.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

export function kebabToCamel(segment: string): string {
  return segment.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function collect(schema: z.ZodType, path: string[], out: ConfigKey[]): void {
  const def = defOf(schema);
  if (def.type === "object" && def.shape !== undefined) {
    for (const [key, child] of Object.entries(def.shape))
      collect(unwrap(child), [...path, key], out);
    return;
  }
  out.push({
    key: path.join("."),
    path,
    env: ENV_PREFIX + path.map(upperSnake).join("__"),
    flag: `--${path.join(".")}`,
  });
}

let cached: readonly ConfigKey[] | undefined;

/** Every settable key, in schema order. */
export function configKeys(): readonly ConfigKey[] {
  if (cached === undefined) {
    const out: ConfigKey[] = [];
    collect(unwrap(configSchema), [], out);
    cached = out;
  }
  return cached;
}

/** Top-level sections (`node`, `spool`, `grpc`, ...). */
export function configSections(): string[] {
  return keysAt([]) ?? [];
}

/** The closest candidate within a small edit distance, for "did you mean". */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = row;
  }
  return prev[b.length]!;
}
