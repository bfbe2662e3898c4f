#!/usr/bin/env node
// Check that the built spool's declarations (dist/spool/*.d.ts) expose only its fenced API:
// every name any of them exports is one that index.d.ts exports (directly, or inside the
// Expert namespace), no declaration names the spool's internals, and a program importing
// index.d.ts type-checks with the declarations checked too (nothing refers to a declaration
// that stripInternal removed). Run after the build; `node scripts/check-spool-api.mjs [DIST]`.
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(resolve(root, process.argv[2] ?? "dist"), "spool");
/** Types and functions of the spool's insides: none may appear in any declaration. */
const INTERNALS = [
  "SpoolCore",
  "CheckoutRecord",
  "Layout",
  "DirectorySyncer",
  "coreOf",
  "Envelope",
];

const exported = (text) => {
  const names = new Set();
  const decl =
    /^export (?:declare )?(?:abstract )?(?:class|function|const|let|interface|type|enum|namespace) ([A-Za-z_$][\w$]*)/gm;
  for (const m of text.matchAll(decl)) names.add(m[1]);
  for (const m of text.matchAll(/^export (?:type )?\{([^}]*)\}/gm)) {
    for (const part of m[1].split(",")) {
      const name = part
        .trim()
        .replace(/^type /, "")
        .split(/ as /)
        .at(-1)
        ?.trim();
      if (name) names.add(name);
    }
  }
  for (const m of text.matchAll(/^export \* as ([\w$]+) from "\.\/([\w-]+)\.js"/gm)) {
    names.add(m[1]);
  }
  return names;
};

const files = (await readdir(dist)).filter((f) => f.endsWith(".d.ts"));
if (!files.includes("index.d.ts")) throw new Error(`no index.d.ts in ${dist}: build first`);
const index = await readFile(join(dist, "index.d.ts"), "utf8");
const publicNames = exported(index);
// A namespace re-exported whole (Expert) makes every export of its file public.
const namespaces = [...index.matchAll(/^export \* as [\w$]+ from "\.\/([\w-]+)\.js"/gm)].map(
  (m) => `${m[1]}.d.ts`,
);
for (const file of namespaces) {
  for (const name of exported(await readFile(join(dist, file), "utf8"))) publicNames.add(name);
}

const problems = [];
for (const file of files) {
  const text = await readFile(join(dist, file), "utf8");
  for (const name of exported(text)) {
    if (!publicNames.has(name)) problems.push(`${file} exports ${name}, which index.d.ts does not`);
  }
  for (const name of INTERNALS) {
    if (new RegExp(`\\b${name}\\b`).test(text)) problems.push(`${file} names ${name}`);
  }
}
const consumerDir = await mkdtemp(join(tmpdir(), "geospool-api-"));
try {
  const consumer = join(consumerDir, "consumer.ts");
  await writeFile(consumer, `export * as spool from ${JSON.stringify(join(dist, "index.js"))};\n`);
  const tsc = join(
    dirname(createRequire(import.meta.url).resolve("typescript/package.json")),
    "bin/tsc",
  );
  // biome-ignore format: one option per line would not read better
  const args = ["--ignoreConfig", "--noEmit", "--strict", "--skipLibCheck", "false", "--module", "NodeNext", "--moduleResolution", "NodeNext", "--target", "ES2022", "--types", "node", "--typeRoots", join(root, "node_modules/@types"), consumer];
  try {
    execFileSync(process.execPath, [tsc, ...args], { encoding: "utf8" });
  } catch (err) {
    problems.push(`a program importing index.d.ts does not type-check:\n${err.stdout}`);
  }
} finally {
  await rm(consumerDir, { recursive: true, force: true });
}

if (problems.length > 0) {
  console.error(
    `check-spool-api: dist/spool is more than the fenced API:\n  ${problems.join("\n  ")}`,
  );
  process.exit(1);
}
console.error(
  `check-spool-api: ${files.length} declaration files, ${publicNames.size} public names`,
);
