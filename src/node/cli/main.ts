import { realpathSync } from "node:fs";
import { basename, isAbsolute, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { wantsJson } from "./args.js";
import { toCliError, usageError } from "./cli-error.js";
import { clientCommand } from "./client/command.js";
import { type CliIo, type Command, commandGroup } from "./command.js";
import { ExitCode } from "./exit-codes.js";
import { reportError } from "./output.js";
import { spoolCommand } from "./spool/command.js";

/**
 * The `geospool` command line. Each top-level command is a `Command` (usually a group of
 * subcommands); add new ones (dev, node, client, certs, cluster, cache) to COMMANDS.
 */
/** A command whose module (and its dependencies: gRPC, PostgreSQL) loads only when run. */
function lazy(name: string, summary: string, load: () => Promise<Command>): Command {
  return { name, summary, run: async (args, io) => (await load()).run(args, io) };
}

const devCommand = lazy(
  "dev",
  "run a local cluster: N nodes, each with its own PostgreSQL (npm start)",
  async () => (await import("./dev-command.js")).devCommand,
);
const nodeCommand = lazy(
  "node",
  "run one node against its PostgreSQL database",
  async () => (await import("./node-command.js")).nodeCommand,
);
const certsCommand = lazy(
  "certs",
  "certificates for TLS and mutual TLS (certs dev)",
  async () => (await import("./certs-command.js")).certsCommand,
);

const clusterCommand = lazy(
  "cluster",
  "replication membership: status, join and leave",
  async () => (await import("./cluster/command.js")).clusterCommand,
);

const cacheCommand = lazy(
  "cache",
  "the Nix/Guix binary cache: keys, and what a node serves, rejected, and holds intact",
  async () => (await import("./cache/command.js")).cacheCommand,
);

const COMMANDS: readonly Command[] = [
  devCommand,
  nodeCommand,
  spoolCommand,
  clientCommand,
  clusterCommand,
  cacheCommand,
  certsCommand,
];

const program = commandGroup({
  name: "geospool",
  path: "geospool",
  summary: "geospool: replicated Multispool-style spools, over gRPC and as a Nix binary cache.",
  commands: COMMANDS,
});

/** Run one command line; returns the exit code. Never exits the process. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    if (argv.length === 0) throw usageError("missing command (try 'geospool --help')");
    return await program.run(argv, io);
  } catch (err) {
    const failure = toCliError(err);
    await reportError(io, failure, wantsJson(argv));
    return failure.exitCode;
  }
}

/**
 * The process entry point: the only place that owns signals and `process.exit`. The first
 * SIGINT/SIGTERM aborts the shutdown signal of a command that asked for it; a second one
 * (or one while no command listens) ends the process at once.
 */
export async function runAsProcess(argv: string[] = process.argv.slice(2)): Promise<never> {
  let shutdown: AbortController | undefined;
  const io: CliIo = {
    stdout: process.stdout,
    stderr: process.stderr,
    get stdin() {
      return process.stdin;
    },
    program: programName(process.argv[1], process.cwd()),
    shutdownSignal() {
      if (shutdown === undefined) {
        const controller = new AbortController();
        shutdown = controller;
        for (const [sig, code] of [
          ["SIGINT", 130],
          ["SIGTERM", 143],
        ] as const) {
          process.on(sig, () => {
            if (controller.signal.aborted) process.exit(code);
            controller.abort();
          });
        }
      }
      return shutdown.signal;
    },
  };
  // `geospool spool list ... | head`: a reader that goes away is not an error.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    process.exit(err.code === "EPIPE" ? ExitCode.Ok : ExitCode.Failure);
  });
  const code = await runCli(argv, io);
  await Promise.all([flush(process.stdout), flush(process.stderr)]);
  process.exit(code);
}

function flush(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => stream.write("", () => resolve()));
}

/** How the user invoked us, for hints: `geospool`, `node bin/geospool.cjs`, ... */
export function programName(script: string | undefined, cwd: string): string {
  if (script === undefined || basename(script) === "geospool") return "geospool";
  const rel = relative(cwd, script);
  const shown = rel.startsWith("..") || isAbsolute(rel) ? script : rel;
  return script.endsWith(".ts") ? `node --import tsx ${shown}` : `node ${shown}`;
}

function isEntryModule(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isEntryModule()) await runAsProcess();
