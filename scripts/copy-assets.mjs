#!/usr/bin/env node
// Copy the non-TypeScript files the code reads at run time (SQL migrations, protobuf
// descriptor sets) from src/ to the same relative paths under dist/.
import { cp, readdir } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");
const dist = join(root, "dist");
// SQL migrations (src/db/sql) and descriptor sets wherever they are; generated JS and its
// types (tsc does not emit .js sources) from generated/ folders.
const isAsset = (path) =>
  /\.(sql|binpb)$/.test(path) || /[\\/]generated[\\/][^\\/]+\.(js|d\.ts)$/.test(path);

let copied = 0;
for (const entry of await readdir(src, { recursive: true, withFileTypes: true })) {
  const from = join(entry.parentPath, entry.name);
  if (!entry.isFile() || !isAsset(from)) continue;
  await cp(from, join(dist, relative(src, from)));
  copied++;
}
console.error(`copy-assets: ${copied} file(s) into dist/`);
