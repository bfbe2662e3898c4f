import { closeSync, fsyncSync, openSync, readFileSync, truncateSync, writeSync } from "node:fs";

/**
 * The crash test's journal: one JSON object per line, appended by the child. Lines the
 * parent relies on (`enq`, `rm-begin`, `rm`, `rm-lost`) are fsynced before the child does
 * anything else; `op` markers (which operation is running, for the kill statistics) are
 * only written: a SIGKILL does not lose what write(2) already handed to the kernel.
 */
export type JournalLine =
  | { op: "op"; what: string }
  | { op: "enq"; name: string; sha256: string }
  | { op: "rm-begin"; name: string }
  | { op: "rm"; name: string }
  | { op: "rm-lost"; name: string };

export class JournalWriter {
  private readonly fd: number;

  constructor(path: string) {
    this.fd = openSync(path, "a");
  }

  /** Append and fsync. */
  commit(line: JournalLine): void {
    writeSync(this.fd, `${JSON.stringify(line)}\n`);
    fsyncSync(this.fd);
  }

  /** Append every line, then fsync once. */
  commitAll(lines: readonly JournalLine[]): void {
    if (lines.length === 0) return;
    writeSync(this.fd, lines.map((l) => `${JSON.stringify(l)}\n`).join(""));
    fsyncSync(this.fd);
  }

  /** Append without fsync (enough to survive the process being killed). */
  note(line: JournalLine): void {
    writeSync(this.fd, `${JSON.stringify(line)}\n`);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Reads a journal incrementally: each call returns the lines added since the last. */
export class JournalReader {
  private offset = 0;

  constructor(private readonly path: string) {}

  /**
   * After the writer was killed: drop a torn last line (a SIGKILL can stop write(2) part of
   * the way through), so the next writer's first line does not run into it. A torn line was
   * never a commit the writer relied on: it had not returned from write(2).
   */
  truncateTornTail(): void {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.path);
    } catch {
      return;
    }
    const end = bytes.lastIndexOf(0x0a) + 1;
    if (end < bytes.length) truncateSync(this.path, end);
  }

  readNew(): JournalLine[] {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch {
      return [];
    }
    const end = text.lastIndexOf("\n") + 1;
    const fresh = text.slice(this.offset, end);
    this.offset = end;
    return fresh
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as JournalLine);
  }
}
