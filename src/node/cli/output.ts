import { once } from "node:events";
import type { CliError } from "./cli-error.js";
import type { CliIo } from "./command.js";

/**
 * Where a command's results go: human-readable lines, or JSON (one value, or one value per
 * line for streams of events) with --json. Writes wait for the stream to drain, so a
 * listing of 100,000 entries never piles up in memory.
 */
export class Output {
  constructor(
    private readonly io: CliIo,
    readonly json: boolean,
  ) {}

  async write(text: string): Promise<void> {
    await writeTo(this.io.stdout, text);
  }

  async line(text: string): Promise<void> {
    await this.write(`${text}\n`);
  }

  /** One JSON value on one line. */
  async value(value: unknown): Promise<void> {
    await this.line(JSON.stringify(value));
  }

  /** A human line or a JSON value, as the user asked. */
  async result(human: string | string[], json: unknown): Promise<void> {
    if (this.json) await this.value(json);
    else await this.write(`${(Array.isArray(human) ? human : [human]).join("\n")}\n`);
  }

  /** An informational line on stderr (hints, progress), never mixed into results. */
  async note(text: string): Promise<void> {
    await writeTo(this.io.stderr, `${text}\n`);
  }
}

/** `geospool: <message>` on stderr, and with --json also `{"error":{code,message}}`. */
export async function reportError(io: CliIo, err: CliError, json: boolean): Promise<void> {
  let text = `geospool: ${err.message}\n`;
  if (json) text += `${JSON.stringify({ error: { code: err.code, message: err.message } })}\n`;
  await writeTo(io.stderr, text);
}

async function writeTo(stream: NodeJS.WritableStream, text: string): Promise<void> {
  if (!stream.write(text)) await once(stream, "drain");
}
