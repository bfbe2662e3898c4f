/**
 * `npm run bench:decompress`: reading a nar's NarHash out of its xz and zstd file, as the
 * cache does on upload and in `geospool cache verify` (src/cache/decompress.ts: xz-decompress,
 * fzstd), side by side in the same run with the `xz -dc` and `zstd -dc` command-line tools
 * (the floor: native liblzma and libzstd, output to /dev/null). Prints MB/s of nar, the
 * ratio ours/CLI, and the process's RSS growth while ours runs.
 *
 * The nar: `nix nar dump-path DIR` (default /usr/lib/x86_64-linux-gnu) cut to --mib MiB
 * (100), compressed with `xz -6` and `zstd -3` (Nix's defaults), kept in --dir between runs.
 * Options: --mib N, --dir DIR (tmpdir/geospool-bench-decompress), --source DIR,
 * --out FILE (bench/results/decompress.json; "-" for none).
 */
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { readNarFile } from "../src/cache/decompress.js";

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    mib: { type: "string", default: "100" },
    dir: { type: "string", default: join(tmpdir(), "geospool-bench-decompress") },
    source: { type: "string", default: "/usr/lib/x86_64-linux-gnu" },
    out: { type: "string", default: join(here, "results", "decompress.json") },
  },
});
const bytes = Number(args.mib) * 1024 * 1024;

function run(cmd: string, argv: string[], stdout: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(stdout);
    const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "inherit"] });
    child.stdout.pipe(out);
    child.on("error", reject);
    out.on("finish", () => resolve());
    child.on("exit", (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${argv.join(" ")} exited ${code}`));
    });
  });
}

async function prepare(): Promise<string> {
  await mkdir(args.dir, { recursive: true });
  const nar = join(args.dir, `nar-${args.mib}m`);
  if (!existsSync(nar)) {
    const dump = spawnSync("sh", ["-c", `nix nar dump-path ${args.source} | head -c ${bytes}`], {
      env: { ...process.env, NIX_CONFIG: "experimental-features = nix-command" },
      maxBuffer: bytes + 1024,
    });
    if (dump.status !== 0 || dump.stdout.length !== bytes) {
      throw new Error(`nix nar dump-path ${args.source} gave ${dump.stdout?.length ?? 0} bytes`);
    }
    await writeFile(nar, dump.stdout);
  }
  if (!existsSync(`${nar}.xz`)) await run("xz", ["-6", "-T1", "-c", nar], `${nar}.xz`);
  if (!existsSync(`${nar}.zst`)) await run("zstd", ["-3", "-q", "-c", nar], `${nar}.zst`);
  return nar;
}

async function time(f: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const nar = await prepare();
const results: Record<string, unknown> = {};
for (const [compression, ext, cli] of [
  ["xz", "xz", "xz"],
  ["zstd", "zst", "zstd"],
] as const) {
  const file = `${nar}.${ext}`;
  const cliSeconds = await time(() => run(cli, ["-dc", file], "/dev/null"));
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }, 20);
  let size = 0;
  const oursSeconds = await time(async () => {
    const r = await readNarFile(file, compression, bytes);
    if (r.kind !== "read") throw new Error(`${compression}: ${JSON.stringify(r)}`);
    size = r.size;
  });
  clearInterval(sampler);
  const mbps = (s: number) => Math.round((size / 1e6 / s) * 10) / 10;
  const row = {
    narBytes: size,
    fileBytes: (await stat(file)).size,
    oursMBps: mbps(oursSeconds),
    cliMBps: mbps(cliSeconds),
    ratio: Math.round((cliSeconds / oursSeconds) * 100) / 100,
    rssGrowthMiB: Math.round((rssPeak - rssBefore) / 1024 / 1024),
  };
  results[compression] = row;
  console.log(
    `${compression}: ours ${row.oursMBps} MB/s, ${cli} -dc ${row.cliMBps} MB/s, ratio ${row.ratio}, RSS +${row.rssGrowthMiB} MiB`,
  );
}
const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"]).stdout.toString().trim();
const load = loadavg().map((l) => Math.round(l * 100) / 100);
console.log(`commit ${commit}, load ${load.join(" ")}`);
if (args.out !== "-") {
  const previous = existsSync(args.out)
    ? (JSON.parse(await readFile(args.out, "utf8")) as Record<string, unknown>)
    : {};
  const merged = {
    ...previous,
    narHash: { commit, loadavg: load, mib: Number(args.mib), ...results },
  };
  await writeFile(args.out, `${JSON.stringify(merged, null, 2)}\n`);
}
