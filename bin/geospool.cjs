#!/usr/bin/env node
// The `geospool` command: a launcher for the compiled CLI in dist/.
//
// CommonJS on purpose: libuv sizes its thread pool at the first pool operation, and loading
// an ES module entry point already makes one. A node spends its time in fsync(2), which
// holds a pool thread each; 4 threads (the default) serialise concurrent enqueues, so the
// launcher sets a larger pool before anything uses it, unless the user chose a size.
"use strict";
const { existsSync } = require("node:fs");
const { join } = require("node:path");
const { pathToFileURL } = require("node:url");

process.env.UV_THREADPOOL_SIZE ??= "32";
const main = join(__dirname, "..", "dist", "node", "cli", "main.js");
if (!existsSync(main)) {
  console.error("geospool: dist/ is missing; run `npm run build` first");
  process.exit(10);
}
import(pathToFileURL(main).href).then(({ runAsProcess }) => runAsProcess(process.argv.slice(2)));
