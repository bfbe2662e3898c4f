import { CacheError, CacheErrorCode } from "./errors.js";
import { type Hash, parseHash } from "./hash.js";
import {
  parseStorePath,
  parseStorePathBaseName,
  type StorePath,
  splitStorePath,
} from "./store-path.js";

/** One `Key: value` line of a narinfo, as written, with its 1-based line number. */
export interface NarinfoField {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

/**
 * One downloadable form of the nar. Nix writes one (URL, Compression, FileHash, FileSize);
 * Guix repeats URL, Compression and FileSize once per compression and has no FileHash.
 * Each URL line starts a file; Compression, FileHash and FileSize lines belong to the URL
 * above them (those before any URL, to the first).
 */
export interface NarFile {
  readonly url: string;
  /** As written; Nix reads a missing Compression as bzip2 (see `compressionOf`). */
  readonly compression: string | undefined;
  readonly fileHash: Hash | undefined;
  readonly fileSize: number | undefined;
}

/**
 * A parsed narinfo. `raw` holds the bytes exactly as they came, and `fields` every line in
 * order, unknown keys included, so what was uploaded can be served byte for byte; the rest
 * is a typed view of the known fields.
 */
export interface Narinfo {
  readonly raw: Buffer;
  readonly fields: readonly NarinfoField[];
  readonly storeDir: string;
  readonly storePath: StorePath;
  /** The first file; most narinfos have only this one. */
  readonly url: string;
  readonly compression: string | undefined;
  readonly fileHash: Hash | undefined;
  readonly fileSize: number | undefined;
  readonly files: readonly NarFile[];
  readonly narHash: Hash;
  readonly narSize: number;
  /** Base names (`<hash>-<name>`), in the order written, under `storeDir`. */
  readonly references: readonly StorePath[];
  /** A base name, or undefined when absent or `unknown-deriver`. */
  readonly deriver: StorePath | undefined;
  readonly system: string | undefined;
  /** Nix signatures, `keyname:base64`, as written, in order. */
  readonly sigs: readonly string[];
  readonly ca: string | undefined;
  /** Guix's `Signature: 1;<host>;<base64 sexp>` line's value, as written. */
  readonly guixSignature: string | undefined;
}

/** A narinfo that cannot be parsed. `line` is the 1-based line at fault, when there is one. */
export class NarinfoParseError extends CacheError {
  constructor(
    message: string,
    readonly line: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(CacheErrorCode.InvalidNarinfo, message, options);
    this.name = "NarinfoParseError";
  }
}

export interface NarinfoParseOptions {
  /** The store directory StorePath must be in; default: taken from StorePath itself. */
  storeDir?: string;
  /** Refuse larger input (default 1 MiB). */
  maxBytes?: number;
}

export const NARINFO_MAX_BYTES = 1024 * 1024;

/** Fields that may appear at most once. */
const SINGLE = new Set([
  "StorePath",
  "NarHash",
  "NarSize",
  "References",
  "Deriver",
  "System",
  "CA",
  "Signature",
]);

const KEY = /^[A-Za-z][A-Za-z0-9_-]*$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Parse a narinfo; throws `NarinfoParseError` (code `invalid_narinfo`) naming the line. */
export function parseNarinfo(
  input: Uint8Array | string,
  options: NarinfoParseOptions = {},
): Narinfo {
  const raw = typeof input === "string" ? Buffer.from(input, "utf8") : Buffer.from(input);
  const max = options.maxBytes ?? NARINFO_MAX_BYTES;
  if (raw.length > max)
    throw new NarinfoParseError(`narinfo is ${raw.length} bytes, more than ${max}`, undefined);
  if (raw.length === 0) throw new NarinfoParseError("narinfo is empty", undefined);
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch (err) {
    throw new NarinfoParseError("narinfo is not valid UTF-8", undefined, { cause: err });
  }
  if (!text.endsWith("\n")) {
    throw new NarinfoParseError(
      `line ${text.split("\n").length}: no newline at the end`,
      text.split("\n").length,
    );
  }
  const fields = splitFields(text);
  return readFields(raw, fields, options.storeDir);
}

function splitFields(text: string): NarinfoField[] {
  const lines = text.slice(0, -1).split("\n");
  const fields: NarinfoField[] = [];
  const seen = new Set<string>();
  lines.forEach((content, i) => {
    const line = i + 1;
    const colon = content.indexOf(":");
    if (colon < 0)
      throw new NarinfoParseError(
        `line ${line}: expected "Key: value", got ${quote(content)}`,
        line,
      );
    const key = content.slice(0, colon);
    if (!KEY.test(key)) throw new NarinfoParseError(`line ${line}: bad key ${quote(key)}`, line);
    const rest = content.slice(colon + 1);
    if (rest !== "" && !rest.startsWith(" ")) {
      throw new NarinfoParseError(`line ${line}: expected a space after "${key}:"`, line);
    }
    const value = rest.slice(1);
    if (CONTROL.test(value))
      throw new NarinfoParseError(`line ${line}: ${key} holds a control character`, line);
    if (SINGLE.has(key)) {
      if (seen.has(key)) throw new NarinfoParseError(`line ${line}: ${key} appears twice`, line);
      seen.add(key);
    }
    fields.push({ key, value, line });
  });
  return fields;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}...` : s);
}

function readFields(
  raw: Buffer,
  fields: NarinfoField[],
  wantStoreDir: string | undefined,
): Narinfo {
  const single = new Map<string, NarinfoField>();
  const sigs: string[] = [];
  for (const f of fields) {
    if (SINGLE.has(f.key)) single.set(f.key, f);
    else if (f.key === "Sig") sigs.push(f.value);
  }
  const field = (key: string): NarinfoField => {
    const f = single.get(key);
    if (f === undefined) throw new NarinfoParseError(`missing ${key}`, undefined);
    return f;
  };
  const storePathField = field("StorePath");
  const { storeDir, path: storePath } = at(storePathField, () => {
    if (wantStoreDir === undefined) return splitStorePath(storePathField.value);
    return { storeDir: wantStoreDir, path: parseStorePath(storePathField.value, wantStoreDir) };
  });
  const narHashField = field("NarHash");
  const narHash = at(narHashField, () => parseHash(narHashField.value));
  const narSize = size(field("NarSize"));
  if (narSize === 0)
    throw new NarinfoParseError(
      `line ${single.get("NarSize")!.line}: NarSize is 0`,
      single.get("NarSize")!.line,
    );
  const files = readFiles(fields);
  const refsField = single.get("References");
  const references =
    refsField === undefined || refsField.value === ""
      ? []
      : at(refsField, () => refsField.value.split(" ").map((r) => parseStorePathBaseName(r)));
  const deriverField = single.get("Deriver");
  const deriver =
    deriverField === undefined || deriverField.value === "unknown-deriver"
      ? undefined
      : at(deriverField, () => parseStorePathBaseName(deriverField.value));
  const first = files[0]!;
  return {
    raw,
    fields,
    storeDir,
    storePath,
    url: first.url,
    compression: first.compression,
    fileHash: first.fileHash,
    fileSize: first.fileSize,
    files,
    narHash,
    narSize,
    references,
    deriver,
    system: single.get("System")?.value,
    sigs,
    ca: single.get("CA")?.value,
    guixSignature: single.get("Signature")?.value,
  };
}

function readFiles(fields: readonly NarinfoField[]): NarFile[] {
  type Group = { url?: NarinfoField } & Partial<
    Record<"Compression" | "FileHash" | "FileSize", NarinfoField>
  >;
  const before: Group = {};
  const groups: Group[] = [];
  for (const f of fields) {
    if (f.key === "URL") groups.push({ url: f });
    else if (f.key === "Compression" || f.key === "FileHash" || f.key === "FileSize") {
      const group = groups.at(-1) ?? before;
      if (group[f.key] !== undefined) {
        const owner =
          group.url === undefined
            ? "before the first URL"
            : `for the URL on line ${group.url.line}`;
        throw new NarinfoParseError(`line ${f.line}: ${f.key} appears twice ${owner}`, f.line);
      }
      group[f.key] = f;
    }
  }
  const first = groups[0];
  if (first === undefined) throw new NarinfoParseError("missing URL", undefined);
  for (const key of ["Compression", "FileHash", "FileSize"] as const) {
    const early = before[key];
    if (early === undefined) continue;
    if (first[key] !== undefined) {
      throw new NarinfoParseError(
        `line ${first[key].line}: ${key} appears twice for the URL on line ${first.url!.line}`,
        first[key].line,
      );
    }
    first[key] = early;
  }
  return groups.map((g) => {
    const u = g.url!;
    if (u.value === "") throw new NarinfoParseError(`line ${u.line}: URL is empty`, u.line);
    const hashField = g.FileHash;
    return {
      url: u.value,
      compression: g.Compression?.value,
      fileHash:
        hashField === undefined ? undefined : at(hashField, () => parseHash(hashField.value)),
      fileSize: g.FileSize === undefined ? undefined : size(g.FileSize),
    };
  });
}

function size(f: NarinfoField): number {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(f.value) || !Number.isSafeInteger(Number(f.value))) {
    throw new NarinfoParseError(
      `line ${f.line}: ${f.key} ${quote(f.value)} is not a byte count`,
      f.line,
    );
  }
  return Number(f.value);
}

/** Run a field's parser; a CacheError becomes a parse error naming the field's line. */
function at<T>(f: NarinfoField, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (!(err instanceof CacheError)) throw err;
    throw new NarinfoParseError(`line ${f.line}: ${f.key}: ${err.message}`, f.line, { cause: err });
  }
}

/** The compression a client reads from a file entry: Nix takes a missing one as bzip2. */
export function compressionOf(file: NarFile): string {
  return file.compression ?? "bzip2";
}

/** The hash parts of a narinfo's references, for the lookup index. */
export function referenceHashParts(info: Narinfo): string[] {
  return info.references.map((r) => r.hashPart);
}
