/**
 * The clients of bench/http.ts: `wrk` (narinfo GETs at C connections, one wrk thread, a
 * Lua script choosing hash parts at random: from the list of present ones for hits, made
 * up for misses) and `curl` (whole-nar GETs, timed). Both are native programs, so the
 * client costs the same on both sides.
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface WrkResult {
  requests: number;
  seconds: number;
  reqPerSec: number;
  /** Responses with a status other than 2xx/3xx (the 404s of misses count here). */
  statusErrors: number;
  socketErrors: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

const SCRIPT = `
local parts = {}
local mode = "hit"
local alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
function init(args)
  mode = args[1]
  if mode == "hit" then
    for line in io.lines(args[2]) do parts[#parts + 1] = line end
  end
  math.randomseed(tonumber(args[3]))
end
function request()
  local h
  if mode == "hit" then
    h = parts[math.random(#parts)]
  else
    local t = {}
    for i = 1, 32 do
      local k = math.random(32)
      t[i] = alphabet:sub(k, k)
    end
    h = table.concat(t)
  end
  return wrk.format("GET", "/" .. h .. ".narinfo")
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"us":%d,"status":%d,"socket":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

/** Write the Lua script and the list of present hash parts into `dir`. */
export async function prepareWrk(dir: string, hashParts: readonly string[]): Promise<void> {
  await writeFile(join(dir, "narinfo.lua"), SCRIPT);
  await writeFile(join(dir, "hashparts.txt"), `${hashParts.join("\n")}\n`);
}

export async function runWrk(options: {
  dir: string;
  port: number;
  mode: "hit" | "miss";
  connections: number;
  seconds: number;
  seed: number;
}): Promise<WrkResult> {
  const { dir } = options;
  const { stdout } = await run(
    "wrk",
    [
      "-t1",
      `-c${options.connections}`,
      `-d${options.seconds}s`,
      "--timeout",
      "10s",
      "-s",
      join(dir, "narinfo.lua"),
      `http://127.0.0.1:${options.port}`,
      "--",
      options.mode,
      join(dir, "hashparts.txt"),
      String(options.seed),
    ],
    { maxBuffer: 1 << 20 },
  );
  const line = stdout.split("\n").find((l) => l.startsWith("WRK "));
  if (line === undefined) throw new Error(`wrk printed no summary:\n${stdout}`);
  const r = JSON.parse(line.slice(4)) as Record<string, number>;
  const n = (k: string) => r[k] as number;
  const seconds = n("us") / 1e6;
  return {
    requests: n("requests"),
    seconds,
    reqPerSec: n("requests") / seconds,
    statusErrors: n("status"),
    socketErrors: n("socket"),
    p50Ms: n("p50") / 1000,
    p90Ms: n("p90") / 1000,
    p99Ms: n("p99") / 1000,
    maxMs: n("max") / 1000,
  };
}

export interface NarGetResult {
  status: number;
  bytes: number;
  seconds: number;
  mbPerSec: number;
}

/** One whole GET of `url` with curl, the body thrown away. */
export async function curlGet(url: string): Promise<NarGetResult> {
  const { stdout } = await run("curl", [
    "-s",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code} %{size_download} %{time_total}",
    url,
  ]);
  const [status, bytes, seconds] = stdout.trim().split(" ").map(Number) as [number, number, number];
  return { status, bytes, seconds, mbPerSec: bytes / 1e6 / seconds };
}
