import { commandGroup } from "../command.js";
import { EXIT_CODES_HELP } from "../exit-codes.js";
import { spoolComplete } from "./complete.js";
import { spoolCreate } from "./create.js";
import { spoolDequeue } from "./dequeue.js";
import { spoolEnqueue } from "./enqueue.js";
import { spoolFsck } from "./fsck.js";
import { spoolList } from "./list.js";
import { spoolMonitor } from "./monitor.js";
import { spoolShow } from "./show.js";

/** `geospool spool <command>`: work on a spool directory directly, no server needed. */
export const spoolCommand = commandGroup({
  name: "spool",
  path: "geospool spool",
  summary: "work on a local spool directory (enqueue, dequeue, inspect, fsck, monitor)",
  commands: [
    spoolCreate,
    spoolEnqueue,
    spoolList,
    spoolShow,
    spoolDequeue,
    spoolComplete,
    spoolFsck,
    spoolMonitor,
  ],
  epilogue: `A spool's metadata is a JSON object per entry; its queues are its directories
(a new spool gets inbox, outbox and dead; dead is the dead-letter queue).
Durations: 500ms, 30s, 10m, 1h, or milliseconds.
With --json, results are JSON on standard output, and errors are also printed on
standard error as {"error":{"code","message"}}.

${EXIT_CODES_HELP}`,
});
