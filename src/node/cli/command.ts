import { usageError } from "./cli-error.js";
import { Output } from "./output.js";

/** What a command may use of the process. Only the entry point (main.ts) builds one. */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Read lazily: a command that does not touch it never opens it. */
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  /** How the user runs this program, for hints (`geospool`, `node bin/geospool.cjs`). */
  readonly program: string;
  /**
   * Aborts on the first SIGINT/SIGTERM. A command that asks for it owns shutdown: it must
   * finish promptly once the signal aborts. Commands that never ask keep the default
   * behaviour (a signal ends the process).
   */
  shutdownSignal(): AbortSignal;
}

/**
 * A command or a group of commands (`spool`, later `dev`, `node`, `client`, ...). `run`
 * gets the arguments after its own name and returns the exit code; failures are thrown
 * (as CliError or SpoolError) and printed by `runCli`.
 */
export interface Command {
  readonly name: string;
  /** One line for the parent's help. */
  readonly summary: string;
  run(args: string[], io: CliIo): Promise<number>;
}

/** A command made of subcommands: `<path> <sub> ...`. */
export function commandGroup(spec: {
  name: string;
  /** The full command path, e.g. `geospool spool`. */
  path: string;
  summary: string;
  commands: readonly Command[];
  /** Extra help text after the list of subcommands. */
  epilogue?: string;
}): Command & { help(): string } {
  const help = () => {
    const width = Math.max(...spec.commands.map((c) => c.name.length));
    const lines = [
      `Usage: ${spec.path} <command> [options]`,
      "",
      spec.summary,
      "",
      "Commands:",
      ...spec.commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
      "",
      `Run '${spec.path} <command> --help' for a command's options.`,
    ];
    if (spec.epilogue) lines.push("", spec.epilogue);
    return `${lines.join("\n")}\n`;
  };
  return {
    name: spec.name,
    summary: spec.summary,
    help,
    async run(args, io) {
      const where = spec.path.replace(/^geospool ?/, "");
      const prefix = where === "" ? "" : `${where}: `;
      const [first, ...rest] = args;
      if (first === undefined) {
        throw usageError(
          `${prefix}missing command (one of: ${spec.commands.map((c) => c.name).join(", ")})`,
        );
      }
      if (first === "--help" || first === "-h" || first === "help") {
        await new Output(io, false).write(help());
        return 0;
      }
      const command = spec.commands.find((c) => c.name === first);
      if (command === undefined) {
        throw usageError(
          `${prefix}unknown command ${JSON.stringify(first)} (one of: ${spec.commands
            .map((c) => c.name)
            .join(", ")})`,
        );
      }
      return command.run(rest, io);
    },
  };
}
