import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { APP_PATH, fixturePath, NIX_XZ, TEST_KEY } from "./cache-fixtures.js";
import { type ProcessResult, runProcess } from "./run-process.js";

/**
 * The real `nix` binary (Debian's nix-bin, Nix 2.8), run daemonless as in CI: no sandbox,
 * no build users, the nix-command feature on, and a fresh cache directory per run (Nix
 * remembers binary-cache misses for an hour).
 */
export const HAVE_NIX = spawnSync("nix", ["--version"], { stdio: "ignore" }).status === 0;

export const NO_NIX_MESSAGE =
  "skipped: the nix binary is not installed (apt-get install nix-bin); .ci/run installs it";

export type NixResult = ProcessResult;

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
  return runProcess(options.command ?? "nix", args, { env: nixEnv(scratch), input: options.input });
}

/** Copy `paths` (default: the fixture app's closure) from the xz fixture cache into `store`. */
export async function seedStore(
  scratch: string,
  store: string,
  paths: readonly string[] = [APP_PATH],
): Promise<void> {
  const r = await runNix(
    [
      "copy",
      "--from",
      `file://${fixturePath(NIX_XZ)}`,
      "--to",
      store,
      "--trusted-public-keys",
      TEST_KEY,
      ...paths,
    ],
    scratch,
  );
  if (r.code !== 0) throw new Error(`seeding ${store} failed (exit ${r.code}):\n${r.stderr}`);
}

/** A netrc file at `file` giving `token` as the password for 127.0.0.1. */
export async function writeNetrc(file: string, token: string, login = "uploader"): Promise<string> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `machine 127.0.0.1 login ${login} password ${token}\n`);
  return file;
}

/** `nix copy --from <from> --to <to>` with the netrc's credentials: how clients upload. */
export function nixCopyTo(
  scratch: string,
  from: string,
  to: string,
  netrc: string,
  paths: readonly string[] = [APP_PATH],
): Promise<NixResult> {
  return runNix(
    ["copy", "--from", from, "--to", to, "--option", "netrc-file", netrc, ...paths],
    scratch,
  );
}

/** `nix copy --from <cache> --to <store>`, signatures by `publicKey` required. */
export function nixCopyFrom(
  scratch: string,
  cache: string,
  store: string,
  publicKey: string,
  paths: readonly string[] = [APP_PATH],
): Promise<NixResult> {
  return runNix(
    [
      "copy",
      "--from",
      cache,
      "--to",
      store,
      "--option",
      "require-sigs",
      "true",
      "--trusted-public-keys",
      publicKey,
      ...paths,
    ],
    scratch,
  );
}
