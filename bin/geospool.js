#!/usr/bin/env node
// The `geospool` command: a launcher for the compiled CLI in dist/.
import { existsSync } from "node:fs";

const main = new URL("../dist/node/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  console.error("geospool: dist/ is missing; run `npm run build` first");
  process.exit(10);
}
const { runAsProcess } = await import(main.href);
await runAsProcess(process.argv.slice(2));
