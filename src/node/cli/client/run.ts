import type { CliIo } from "../command.js";
import type { GlobalFlags } from "./settings.js";
import type { ClientSubcommand } from "./subcommand.js";

/**
 * Run one client subcommand with the global client options already taken out of its
 * arguments (`splitGlobalFlags`): its clients are closed afterwards and its failures mapped
 * to client exit codes. gRPC loads only here.
 */
export async function runClientSubcommand(
  command: ClientSubcommand,
  flags: GlobalFlags,
  args: readonly string[],
  io: CliIo,
): Promise<number> {
  const rest = flags.json === true ? ["--json", ...args] : [...args];
  const [{ createClientContext }, { toClientCliError }] = await Promise.all([
    import("./context.js"),
    import("./errors.js"),
  ]);
  const ctx = createClientContext(flags, process.env);
  try {
    return await command.run(rest, io, ctx);
  } catch (err) {
    let retryForMs: number | undefined;
    try {
      retryForMs = ctx.settings().retryForMs;
    } catch {
      // The settings themselves were the problem; err says so.
    }
    throw toClientCliError(err, retryForMs);
  } finally {
    ctx.close();
  }
}
