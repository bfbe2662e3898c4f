// A `geospool` process booted ahead: `node node-standby.mjs MAIN ARGS...` loads the built
// CLI (MAIN, its main.js) and the node's modules, prints "standby" on stdout and waits;
// a line on stdin makes it run `geospool ARGS...` exactly as main.js run as a script would
// (runAsProcess). A test that restarts a node many times boots the next one meanwhile.
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const [main, ...args] = process.argv.slice(2);
if (main === undefined) {
  console.error("usage: node node-standby.mjs MAIN ARGS...");
  process.exit(2);
}
const url = pathToFileURL(main);
const cli = await import(url.href);
await import(new URL("./node-command.js", url).href);
process.stdout.write("standby\n");
const lines = createInterface({ input: process.stdin });
let go = false;
for await (const _ of lines) {
  go = true;
  break;
}
lines.close();
// stdin closed without a line: the test went away before starting it.
if (!go) process.exit(0);
await cli.runAsProcess(args);
