import { spawn } from "node:child_process";
import {
  chmod,
  copyFile,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readlink,
  rename,
  rm,
  stat,
  symlink,
} from "node:fs/promises";
import { arch, platform, tmpdir } from "node:os";
import { basename, dirname, join, parse, relative, resolve } from "node:path";
import type { Logger } from "pino";
import type { PostgresBinaries } from "./binaries.js";
import { PostgresServerError, PostgresServerErrorCode } from "./errors.js";
import { errnoIs } from "./processes.js";
import { ensureTraversable, type ServerUser } from "./server-user.js";

/** Bump when the layout of the cached tree changes, so old caches are ignored. */
const CACHE_FORMAT = 1;

export function defaultBinariesCacheDir(tmp: string, binaries: PostgresBinaries): string {
  return join(tmp, `geospool-pg-bin-${binaries.version}-${platform()}-${arch()}-v${CACHE_FORMAT}`);
}

const resolved = new Map<string, Promise<PostgresBinaries>>();

/**
 * Binaries the server user can run. When we are root the server runs as `postgres`, which
 * cannot reach `node_modules` inside a checkout under a mode-700 directory (a clone in
 * /root). Then the binary tree is hard-linked (copied across devices, or where a file is
 * not world-readable) into `cacheDir`, default `<tmpdir>/geospool-pg-bin-<version>-<platform>-
 * <arch>-v<n>`: built in a private directory beside it and renamed into place, so a reader
 * never sees half a tree and racing processes all end up using the winner's. Nothing is
 * copied when the binaries are reachable where they are, or when we are not root.
 */
export function serverBinaries(opts: {
  binaries: PostgresBinaries;
  user: ServerUser | undefined;
  cacheDir?: string | undefined;
  logger: Logger;
}): Promise<PostgresBinaries> {
  const { binaries, user } = opts;
  if (!user) return Promise.resolve(binaries);
  const cacheDir = resolve(opts.cacheDir ?? defaultBinariesCacheDir(tmpdir(), binaries));
  const key = `${binaries.root}\0${user.uid}\0${cacheDir}`;
  let found = resolved.get(key);
  if (!found) {
    found = locate(binaries, user, cacheDir, opts.logger).catch((err) => {
      resolved.delete(key);
      throw err;
    });
    resolved.set(key, found);
  }
  return found;
}

async function locate(
  binaries: PostgresBinaries,
  user: ServerUser,
  cacheDir: string,
  logger: Logger,
): Promise<PostgresBinaries> {
  if ((await runsAs(binaries, user)) === "ok") return binaries;
  const closed = await closedDirectory(binaries.postgres, user);
  const where = closed ? `${closed} is closed to it` : "it cannot run them";
  const unreachable = (reason: string, cause?: unknown) =>
    new PostgresServerError(
      PostgresServerErrorCode.BinariesUnreachable,
      `the PostgreSQL server user "${user.name}" cannot run the binaries in ${binaries.root} ` +
        `(${where}), and ${reason}; move the checkout somewhere ${user.name} can reach, ` +
        "or set binariesCacheDir to a directory it can",
      cause === undefined ? undefined : { cause },
    );
  try {
    await ensureCache(binaries.root, cacheDir, user, logger);
  } catch (cause) {
    if (cause instanceof PostgresServerError) throw cause;
    throw unreachable(`they could not be placed in ${cacheDir}`, cause);
  }
  const cached = rebase(binaries, cacheDir);
  const outcome = await runsAs(cached, user);
  if (outcome !== "ok")
    throw unreachable(`the copy in ${cacheDir} does not run either: ${outcome}`);
  logger.info(
    { from: binaries.root, to: cacheDir, closed },
    "the PostgreSQL user cannot reach the binaries in the checkout; using a copy it can",
  );
  return cached;
}

function rebase(binaries: PostgresBinaries, root: string): PostgresBinaries {
  return {
    ...binaries,
    root,
    initdb: join(root, relative(binaries.root, binaries.initdb)),
    postgres: join(root, relative(binaries.root, binaries.postgres)),
  };
}

/** Runs `postgres --version` and `initdb --version` as `user`: "ok" or why not. */
async function runsAs(binaries: PostgresBinaries, user: ServerUser): Promise<string> {
  const outcomes = await Promise.all(
    [binaries.postgres, binaries.initdb].map(
      (program) =>
        new Promise<string>((done) => {
          const child = spawn(program, ["--version"], {
            stdio: ["ignore", "ignore", "pipe"],
            uid: user.uid,
            gid: user.gid,
          });
          let stderr = "";
          child.stderr.on("data", (chunk: Buffer) => {
            stderr += chunk.toString("utf8");
          });
          child.once("error", (err) => done(`${program}: ${err.message}`));
          child.once("close", (code, signal) =>
            done(
              code === 0 ? "ok" : `${program} exited (${code ?? signal}): ${stderr.slice(-500)}`,
            ),
          );
        }),
    ),
  );
  return outcomes.find((o) => o !== "ok") ?? "ok";
}

/** The outermost ancestor of `path` that `user` may not search, by its mode bits. */
async function closedDirectory(path: string, user: ServerUser): Promise<string | undefined> {
  const chain: string[] = [];
  let current = dirname(resolve(path));
  const { root } = parse(current);
  while (current !== root) {
    chain.push(current);
    current = dirname(current);
  }
  for (const dir of chain.reverse()) {
    const st = await stat(dir).catch(() => undefined);
    if (!st) return dir;
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return dir;
  }
  return undefined;
}

async function ensureCache(
  from: string,
  cacheDir: string,
  user: ServerUser,
  logger: Logger,
): Promise<void> {
  if (await trustedTree(cacheDir)) return;
  const parent = dirname(cacheDir);
  await mkdir(parent, { recursive: true });
  await ensureTraversable(parent, user, logger);
  const work = await mkdtemp(join(parent, `${basename(cacheDir)}.build-`));
  try {
    await mirror(from, work);
    await chmod(work, 0o755);
    try {
      await rename(work, cacheDir);
    } catch (err) {
      // Another process renamed its tree into place first: use that one.
      if (!errnoIs(err, "ENOTEMPTY", "EEXIST") || !(await trustedTree(cacheDir))) throw err;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Whether `dir` is a finished tree we may run. In a world-writable /tmp another user could
 * have made it first: it must be a real directory owned by us and writable by nobody else.
 */
async function trustedTree(dir: string): Promise<boolean> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(dir);
  } catch (err) {
    if (errnoIs(err, "ENOENT")) return false;
    throw err;
  }
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) {
    throw new PostgresServerError(
      PostgresServerErrorCode.BinariesUnreachable,
      `refusing to run PostgreSQL binaries from ${dir}: it is not a directory owned by uid ` +
        `${process.getuid?.()} and writable only by it; remove it or set binariesCacheDir`,
    );
  }
  return true;
}

/** Hard-link the tree `from` into `to` (existing, empty), readable and runnable by everyone. */
async function mirror(from: string, to: string): Promise<void> {
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const src = join(from, entry.name);
    const dst = join(to, entry.name);
    if (entry.isDirectory()) {
      await mkdir(dst);
      await chmod(dst, 0o755);
      await mirror(src, dst);
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(src), dst);
    } else if (entry.isFile()) {
      const { mode } = await stat(src);
      const executable = (mode & 0o100) !== 0;
      const open = (mode & 0o004) !== 0 && (!executable || (mode & 0o001) !== 0);
      if (open && (await linked(src, dst))) continue;
      await copyFile(src, dst);
      await chmod(dst, executable ? 0o755 : 0o644);
    }
  }
}

async function linked(src: string, dst: string): Promise<boolean> {
  try {
    await link(src, dst);
    return true;
  } catch (err) {
    if (errnoIs(err, "EXDEV", "EPERM", "EMLINK")) return false;
    throw err;
  }
}
