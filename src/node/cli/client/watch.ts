import * as grpc from "@grpc/grpc-js";
import { isRetryableStatus } from "../../../common/grpc-status.js";
import { sleep } from "../../../common/sleep.js";
import { geospool } from "../../../proto/generated/spool.js";
import { Backoff } from "../../client/backoff.js";
import { ClientError } from "../../client/geospool-client.js";
import { parseCommand } from "../args.js";
import { Output } from "../output.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";

const PATH = "geospool client watch";
/** A stream that lived this long (or delivered an event) counts as having been connected. */
const CONNECTED_AFTER_MS = 2_000;

const KIND_NAMES: Record<number, string> = {
  [geospool.v1.WatchEventKind.WATCH_EVENT_KIND_ENQUEUED]: "enqueued",
  [geospool.v1.WatchEventKind.WATCH_EVENT_KIND_CHECKED_OUT]: "checked_out",
  [geospool.v1.WatchEventKind.WATCH_EVENT_KIND_SAVED]: "saved",
  [geospool.v1.WatchEventKind.WATCH_EVENT_KIND_REMOVED]: "removed",
  [geospool.v1.WatchEventKind.WATCH_EVENT_KIND_RELEASED]: "released",
  [geospool.v1.WatchEventKind.WATCH_EVENT_KIND_LEASE_EXPIRED]: "lease_expired",
};

export const clientWatch: ClientSubcommand = {
  async run(args, io, ctx) {
    const end = args.indexOf("--");
    const head = end < 0 ? args : args.slice(0, end);
    const queueCount =
      head.filter((a) => !a.startsWith("-")).length + (end < 0 ? 0 : args.length - end - 1);
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} [QUEUE...] [--json]

Print the spool transitions of one node as they happen (enqueued, checked_out, saved,
removed, released, lease_expired), for the given queues (all when none; that needs
permission on every queue), until SIGINT or SIGTERM; then exit 0. History is not
replayed. When the node goes away, the watch moves to the next endpoint (events in between
are missed; a note says so on standard error) and gives up (exit 7) after --retry-for
without a connection.

Options:
  --json   one JSON object a line: {event, name, queue, fromQueue, at, endpoint}

${GLOBAL_HINT}`,
        options: { json: { type: "boolean" } },
        positionals: Array.from({ length: queueCount }, () => "QUEUE"),
      },
      io,
    );
    if (!parsed) return 0;
    const queues = parsed.positionals;
    const out = new Output(io, parsed.values.json === true);
    const endpoints = ctx.endpoints();
    const { retryForMs } = ctx.settings();
    const signal = io.shutdownSignal();
    const backoff = new Backoff(50, 2_000);
    let giveUpAt = Date.now() + retryForMs;
    // Tries since the last stream that was connected: every endpoint gets one before giving up.
    let failedTries = 0;
    for (let i = 0; !signal.aborted; i++) {
      const endpoint = endpoints[i % endpoints.length] as string;
      const started = Date.now();
      let events = 0;
      let failure: ClientError;
      try {
        for await (const e of ctx.single(endpoint).watch(queues, signal)) {
          events++;
          const event = KIND_NAMES[e.kind] ?? `kind_${e.kind}`;
          const at = new Date(e.at).toISOString();
          if (out.json) {
            await out.value({
              event,
              name: e.name,
              queue: e.queue,
              fromQueue: e.fromQueue,
              at,
              endpoint,
            });
          } else {
            const from = e.fromQueue ? ` from ${e.fromQueue}` : "";
            await out.line(`${at} ${event} ${e.name} in ${e.queue}${from}`);
          }
        }
        if (signal.aborted) break;
        failure = new ClientError(
          `${endpoint}: the stream ended (the node is shutting down)`,
          grpc.status.UNAVAILABLE,
          endpoint,
        );
      } catch (err) {
        failure = asClientError(err, endpoint);
        if (!isRetryableStatus(failure.code)) throw failure;
      }
      const wasConnected = events > 0 || Date.now() - started >= CONNECTED_AFTER_MS;
      if (wasConnected) {
        giveUpAt = Date.now() + retryForMs;
        failedTries = 0;
        backoff.reset();
      } else {
        failedTries++;
        if (Date.now() >= giveUpAt && failedTries >= endpoints.length) throw failure;
      }
      const next = endpoints[(i + 1) % endpoints.length] as string;
      // One note when the watch is lost and one per endpoint that fails, not one per retry.
      if (failedTries <= endpoints.length) {
        const missed = wasConnected ? " (events in between are missed)" : "";
        await out.note(`watch: ${failure.message}; trying ${next}${missed}`);
      }
      if (failedTries > 0 && failedTries % endpoints.length === 0) {
        await sleep(Math.min(backoff.next(), Math.max(0, giveUpAt - Date.now())), signal);
      }
    }
    return 0;
  },
};

function asClientError(err: unknown, endpoint: string): ClientError {
  if (err instanceof ClientError) return err;
  const code = (err as { code?: unknown }).code;
  const status = typeof code === "number" ? code : grpc.status.UNKNOWN;
  const details = (err as { details?: string }).details || (err as Error).message;
  return new ClientError(
    `${endpoint}: ${grpc.status[status] ?? status}: ${details}`,
    status,
    endpoint,
    {
      cause: err,
    },
  );
}
