/**
 * Summarise a V8 .cpuprofile (from `--cpu-prof`): self time by function and by file or
 * package, and inclusive time of functions under src/. `tsx bench/lib/grpc-profile-summary.ts
 * FILE.cpuprofile [TOP]`.
 */
import { readFile } from "node:fs/promises";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function where(url: string): string {
  if (url === "") return "(native/vm)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  if (url.startsWith("node:")) return url;
  const src = url.indexOf("/src/");
  return src >= 0 ? url.slice(src + 1) : url;
}

/**
 * What a sample was doing, by the package or file of its frame (a native frame takes the
 * category of the nearest caller that has a script).
 */
function category(url: string): string {
  const w = where(url);
  if (/^(@grpc\/|node:internal\/http2|node:http2)/.test(w))
    return "gRPC + HTTP/2 (grpc-js, node:http2)";
  if (/^(node:net|node:internal\/stream_base)/.test(w)) return "TCP sockets (node:net)";
  if (/^(protobufjs|src\/node\/generated)/.test(w)) return "protobuf";
  if (/^(pg|pg-pool|pg-protocol|pg-types|pgpass|pg-boss)$/.test(w)) return "PostgreSQL client";
  if (/^(chokidar|readdirp)$/.test(w)) return "file watcher (chokidar)";
  if (/^node:internal\/fs|^node:fs/.test(w)) return "node:fs";
  if (/^(pino|prom-client|src\/node\/observability)/.test(w)) return "logging + metrics";
  if (w.startsWith("src/spool/")) return "spool code (src/spool)";
  if (w.startsWith("src/")) return "node code (src/node)";
  if (w.startsWith("node:internal/streams") || w === "node:events") return "streams + events";
  return w.startsWith("node:") ? "other node: internals" : w;
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error("usage: grpc-profile-summary.ts FILE.cpuprofile [TOP]");
const top = Number(topArg ?? 25);
const p = JSON.parse(await readFile(file, "utf8")) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<number, number>();
p.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
});
const totalMs = (p.endTime - p.startTime) / 1000;
const fn = new Map<string, number>();
const files = new Map<string, number>();
const inclusive = new Map<string, number>();
const categories = new Map<string, number>();
for (const [id, ms] of self) {
  const n = byId.get(id);
  if (!n) continue;
  const f = n.callFrame;
  const key = `${f.functionName || "(anonymous)"} ${where(f.url)}:${f.lineNumber + 1}`;
  fn.set(key, (fn.get(key) ?? 0) + ms);
  files.set(where(f.url), (files.get(where(f.url)) ?? 0) + ms);
  let cat = f.url === "" ? `(${f.functionName || "native"})` : category(f.url);
  if (f.url === "" && !["(idle)", "(program)", "(garbage collector)"].includes(f.functionName)) {
    for (let cur = parent.get(id); cur !== undefined; cur = parent.get(cur)) {
      const url = byId.get(cur)?.callFrame.url;
      if (url) {
        cat = category(url);
        break;
      }
    }
  }
  categories.set(cat, (categories.get(cat) ?? 0) + ms);
  // Inclusive time of our own functions (each counted once per sample stack).
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const c = byId.get(cur)?.callFrame;
    if (!c?.url.includes("/src/")) continue;
    const k = `${c.functionName || "(anonymous)"} ${where(c.url)}:${c.lineNumber + 1}`;
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + ms);
  }
}
const show = (title: string, m: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [k, ms] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${ms.toFixed(0).padStart(8)} ms ${((ms / totalMs) * 100).toFixed(1).padStart(5)}%  ${k}`,
    );
  }
};
console.log(`${file}: ${totalMs.toFixed(0)} ms wall`);
show("self time by category (native frames count for their caller)", categories);
show("self time by file or package", files);
show("self time by function", fn);
show("inclusive time of functions under src/", inclusive);
