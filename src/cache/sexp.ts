import { CacheError, CacheErrorCode } from "./errors.js";

/**
 * S-expressions as libgcrypt (and so Guix) writes them: lists of atoms, in the advanced
 * form (`(q #23A9...#)`, tokens, "quoted strings", |base64|) or the canonical form
 * (`(1:q32:<bytes>)`). Guix's narinfo signatures and public keys are such expressions.
 * An atom is its bytes, whatever form it was written in.
 */
export type Sexp = Uint8Array | Sexp[];

export const SEXP_MAX_DEPTH = 32;
export const SEXP_MAX_BYTES = 64 * 1024;

const TOKEN_START = /[A-Za-z\-./_:*+=]/;
const TOKEN_CHAR = /[A-Za-z0-9\-./_:*+=]/;
const SPACE = /[ \t\n\r\f\v]/;

function fail(offset: number, why: string): CacheError {
  return new CacheError(CacheErrorCode.InvalidSexp, `s-expression at offset ${offset}: ${why}`);
}

/** Read one s-expression (a list) in advanced or canonical form; nothing but space may follow. */
export function parseSexp(input: string | Uint8Array): Sexp[] {
  const buf = typeof input === "string" ? Buffer.from(input, "utf8") : Buffer.from(input);
  if (buf.length > SEXP_MAX_BYTES) throw fail(0, `longer than ${SEXP_MAX_BYTES} bytes`);
  const text = buf.toString("latin1");
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && SPACE.test(text[i]!)) i++;
  };
  const readList = (depth: number): Sexp[] => {
    if (depth > SEXP_MAX_DEPTH) throw fail(i, `nested deeper than ${SEXP_MAX_DEPTH}`);
    i++; // "("
    const items: Sexp[] = [];
    for (;;) {
      skipSpace();
      if (i >= text.length) throw fail(i, "unclosed list");
      const c = text[i]!;
      if (c === ")") {
        i++;
        return items;
      }
      items.push(c === "(" ? readList(depth + 1) : readAtom());
    }
  };
  const readAtom = (): Uint8Array => {
    const start = i;
    const c = text[i]!;
    if (/[0-9]/.test(c)) {
      while (i < text.length && /[0-9]/.test(text[i]!)) i++;
      if (text[i] !== ":") throw fail(start, "a length must be followed by ':'");
      const len = Number(text.slice(start, i));
      i++;
      if (i + len > text.length) throw fail(start, `length ${len} runs past the end`);
      const bytes = buf.subarray(i, i + len);
      i += len;
      return Uint8Array.from(bytes);
    }
    if (c === "#")
      return readDelimited("#", (body) => {
        const hex = body.replace(/[ \t\n\r\f\v]/g, "");
        if (!/^([0-9A-Fa-f]{2})*$/.test(hex)) throw fail(start, "bad hex string");
        return Buffer.from(hex, "hex");
      });
    if (c === "|")
      return readDelimited("|", (body) => {
        const b64 = body.replace(/[ \t\n\r\f\v]/g, "");
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0)
          throw fail(start, "bad base64 string");
        return Buffer.from(b64, "base64");
      });
    if (c === '"') return readQuoted(start);
    if (TOKEN_START.test(c)) {
      while (i < text.length && TOKEN_CHAR.test(text[i]!)) i++;
      return Uint8Array.from(buf.subarray(start, i));
    }
    throw fail(i, `unexpected ${JSON.stringify(c)}`);
  };
  const readDelimited = (end: string, decode: (body: string) => Uint8Array): Uint8Array => {
    const close = text.indexOf(end, i + 1);
    if (close < 0) throw fail(i, `unclosed ${end}`);
    const body = text.slice(i + 1, close);
    i = close + 1;
    return Uint8Array.from(decode(body));
  };
  const readQuoted = (start: number): Uint8Array => {
    const out: number[] = [];
    i++;
    for (;;) {
      if (i >= text.length) throw fail(start, "unclosed string");
      const c = text.charCodeAt(i++);
      if (c === 0x22) return Uint8Array.from(out);
      if (c !== 0x5c) {
        out.push(c);
        continue;
      }
      const e = text[i++];
      const simple: Record<string, number> = {
        b: 8,
        t: 9,
        v: 11,
        n: 10,
        f: 12,
        r: 13,
        '"': 34,
        "'": 39,
        "\\": 92,
      };
      if (e !== undefined && e in simple) out.push(simple[e]!);
      else if (e === "x" && /^[0-9A-Fa-f]{2}$/.test(text.slice(i, i + 2))) {
        out.push(Number.parseInt(text.slice(i, i + 2), 16));
        i += 2;
      } else if (e !== undefined && /^[0-7]{3}$/.test(e + text.slice(i, i + 2))) {
        out.push(Number.parseInt(e + text.slice(i, i + 2), 8) & 0xff);
        i += 2;
      } else if (e === "\n" || e === "\r") {
        if ((text[i] === "\n" || text[i] === "\r") && text[i] !== e) i++;
      } else throw fail(i - 2, `bad escape in string`);
    }
  };
  skipSpace();
  if (text[i] !== "(") throw fail(i, "expected '('");
  const result = readList(1);
  skipSpace();
  if (i !== text.length) throw fail(i, "trailing data after the expression");
  return result;
}

/** The canonical form: `(` then `<len>:<bytes>` atoms and sublists, `)`, no space. */
export function toCanonicalSexp(sexp: Sexp): Buffer {
  if (sexp instanceof Uint8Array) return Buffer.concat([Buffer.from(`${sexp.length}:`), sexp]);
  return Buffer.concat([Buffer.from("("), ...sexp.map(toCanonicalSexp), Buffer.from(")")]);
}

/** The advanced form on one line: tokens where they are tokens, else `#HEX#`. */
export function toAdvancedSexp(sexp: Sexp): string {
  if (!(sexp instanceof Uint8Array)) return `(${sexp.map(toAdvancedSexp).join(" ")})`;
  const text = Buffer.from(sexp).toString("latin1");
  if (text.length > 0 && TOKEN_START.test(text[0]!) && [...text].every((c) => TOKEN_CHAR.test(c)))
    return text;
  return `#${Buffer.from(sexp).toString("hex").toUpperCase()}#`;
}

/** An atom's bytes read as text (tokens, names), or undefined for a list. */
export function atomText(sexp: Sexp | undefined): string | undefined {
  return sexp instanceof Uint8Array ? Buffer.from(sexp).toString("latin1") : undefined;
}

/** The first list, depth first, whose head is the token `name` (gcry_sexp_find_token). */
export function findSexp(sexp: Sexp, name: string): Sexp[] | undefined {
  if (sexp instanceof Uint8Array) return undefined;
  if (atomText(sexp[0]) === name) return sexp;
  for (const item of sexp) {
    const found = findSexp(item, name);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Every list headed by `name`, depth first (not looking inside a match). */
export function findAllSexp(sexp: Sexp, name: string): Sexp[][] {
  if (sexp instanceof Uint8Array) return [];
  if (atomText(sexp[0]) === name) return [sexp];
  return sexp.flatMap((item) => findAllSexp(item, name));
}

/** The atom after `name` in the list `(name value)` found inside `sexp`. */
export function sexpValue(sexp: Sexp, name: string): Uint8Array | undefined {
  const list = findSexp(sexp, name);
  const value = list?.[1];
  return value instanceof Uint8Array ? value : undefined;
}
