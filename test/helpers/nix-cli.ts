import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";

/**
 * The real `nix` binary (Debian's nix-bin, Nix 2.8), run daemonless as in CI: no sandbox,
 * no build users, the nix-command feature on, and a fresh cache directory per run (Nix
 * remembers binary-cache misses for an hour).
 */
export const HAVE_NIX = spawnSync("nix", ["--version"], { stdio: "ignore" }).status === 0;

export const NO_NIX_MESSAGE =
  "skipped: the nix binary is not installed (apt-get install nix-bin); .ci/run installs it";

export interface NixResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function nixEnv(scratch: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    NIX_CONFIG: "experimental-features = nix-command\nsandbox = false\nbuild-users-group =",
    XDG_CACHE_HOME: join(scratch, "xdg-cache"),
  };
}

/** Run `nix ...` (or another Nix tool) to completion, with `input` on its stdin. */
export function runNix(
  args: string[],
  scratch: string,
  options: { command?: string; input?: string } = {},
): Promise<NixResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.command ?? "nix", args, { env: nixEnv(scratch) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}
