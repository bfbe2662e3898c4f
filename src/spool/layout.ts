import { normalize, sep } from "node:path";

/**
 * Directory names inside a spool. Everything the spool owns starts with a dot.
 * @internal
 */
export const REGISTRY = ".registry";
/** @internal */
export const TMP = ".tmp";
/** @internal */
export const DATA = ".data";
/** @internal */
export const CHECKOUT = ".checkout";
/** @internal */
export const POOL = ".pool";

/**
 * Separator between an entry name and a tag in the spool's own tmp files (`name~tag`).
 * @internal
 */
export const TMP_TAG_SEPARATOR = "~";

/**
 * Paths inside a spool. Entry and queue directory names are single path segments by
 * construction (names.ts: no separator, no leading dot), so paths are joined by plain
 * concatenation: `path.join` normalizes every time it is called, about 0.8 µs a call here,
 * and a job asks for dozens of paths (2% of a node's CPU in a bench:grpc profile).
 * @internal
 */
export class Layout {
  readonly registry: string;
  readonly tmp: string;
  readonly data: string;
  /** The batch writer's files made ahead (batch-writer.ts). */
  readonly pool: string;
  /** `root`, normalized, without a trailing separator ("" for the filesystem root). */
  private readonly base: string;

  constructor(readonly root: string) {
    const normal = normalize(root);
    this.base = normal.endsWith(sep) ? normal.slice(0, -1) : normal;
    this.registry = `${this.base}${sep}${REGISTRY}`;
    this.tmp = `${this.base}${sep}${TMP}`;
    this.data = `${this.base}${sep}${DATA}`;
    this.pool = `${this.base}${sep}${POOL}`;
  }

  queue(dirname: string): string {
    return `${this.base}${sep}${dirname}`;
  }
  checkout(dirname: string): string {
    return `${this.base}${sep}${dirname}${sep}${CHECKOUT}`;
  }
  registryFile(name: string): string {
    return `${this.registry}${sep}${name}`;
  }
  tmpFile(name: string, tag?: string): string {
    return tag === undefined
      ? `${this.tmp}${sep}${name}`
      : `${this.tmp}${sep}${name}${TMP_TAG_SEPARATOR}${tag}`;
  }
  dataFile(name: string): string {
    return `${this.data}${sep}${name}`;
  }
  queueFile(dirname: string, name: string): string {
    return `${this.base}${sep}${dirname}${sep}${name}`;
  }
  checkoutFile(dirname: string, name: string): string {
    return `${this.base}${sep}${dirname}${sep}${CHECKOUT}${sep}${name}`;
  }
}

/**
 * The entry name a tmp file belongs to (`name` or `name~tag`).
 * @internal
 */
export function entryNameOfTmpFile(file: string): string {
  const i = file.indexOf(TMP_TAG_SEPARATOR);
  return i < 0 ? file : file.slice(0, i);
}
