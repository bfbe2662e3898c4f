#!/usr/bin/env node
// Copy the non-TypeScript files the code reads at run time (SQL migrations, protobuf
// descriptor sets) from src/ to the same relative paths under dist/.
import { cp, readdir } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");
const dist = join(root, "dist");
const ASSET = /\.(sql|binpb)$/;

let copied = 0;
for (const entry of await readdir(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !ASSET.test(entry.name)) continue;
  const from = join(entry.parentPath, entry.name);
  await cp(from, join(dist, relative(src, from)));
  copied++;
}
console.error(`copy-assets: ${copied} file(s) into dist/`);
