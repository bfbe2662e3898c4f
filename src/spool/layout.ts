import { join } from "node:path";

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

/**
 * Separator between an entry name and a tag in the spool's own tmp files (`name~tag`).
 * @internal
 */
export const TMP_TAG_SEPARATOR = "~";

/** @internal */
export class Layout {
  readonly registry: string;
  readonly tmp: string;
  readonly data: string;

  constructor(readonly root: string) {
    this.registry = join(root, REGISTRY);
    this.tmp = join(root, TMP);
    this.data = join(root, DATA);
  }

  queue(dirname: string): string {
    return join(this.root, dirname);
  }
  checkout(dirname: string): string {
    return join(this.root, dirname, CHECKOUT);
  }
  registryFile(name: string): string {
    return join(this.registry, name);
  }
  tmpFile(name: string, tag?: string): string {
    return join(this.tmp, tag === undefined ? name : `${name}${TMP_TAG_SEPARATOR}${tag}`);
  }
  dataFile(name: string): string {
    return join(this.data, name);
  }
  queueFile(dirname: string, name: string): string {
    return join(this.root, dirname, name);
  }
  checkoutFile(dirname: string, name: string): string {
    return join(this.root, dirname, CHECKOUT, name);
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
