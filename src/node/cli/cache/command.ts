import { commandGroup } from "../command.js";
import { cacheGc } from "./gc.js";
import { cacheKeygen } from "./keygen.js";
import { cacheLs } from "./ls.js";
import { cacheRejected } from "./rejected.js";
import { cacheRoots } from "./roots.js";
import { cacheShow } from "./show.js";
import { cacheStats } from "./stats.js";
import { cacheVerify } from "./verify.js";

/** `geospool cache <command>`: the binary cache's keys, and what a node holds. */
export const cacheCommand = commandGroup({
  name: "cache",
  path: "geospool cache",
  summary: "the Nix/Guix binary cache: signing keys, and what this node serves and rejected",
  commands: [
    cacheKeygen,
    cacheLs,
    cacheShow,
    cacheRejected,
    cacheVerify,
    cacheStats,
    cacheRoots,
    cacheGc,
  ],
  epilogue: `ls, show, rejected and verify read this node's own files (its spool's cache queue and
its kept rejections), found from the node's settings (--config FILE, GEOSPOOL_*, --<key>
VALUE); they only read, so they run beside the running node. stats reads the request
counts the node keeps in its PostgreSQL (postgres.url). roots and gc ask a running node
over HTTP (--url, --token-file).
With --json, results are JSON on standard output, and errors are also printed on
standard error as {"error":{"code","message"}}.
Exit codes: 0 ok, 1 verify found a corrupt nar, 2 usage error, 4 show: nothing served,
6 roots/gc: access denied, 7 roots/gc: node unreachable, 10 any other error.`,
});
