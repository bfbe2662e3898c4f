import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { componentLogger } from "../common/logger.js";

/**
 * Whether each peer's node answers, from a heartbeat of our own: every `intervalMs` (after
 * the last one ended) a `grpc.health.v1.Health/Check` call to the peer's gRPC endpoint with
 * a `timeoutMs` deadline. Any answer (SERVING or not, even a refusal of the credentials)
 * shows the peer's process is alive and reachable; a call that times out or cannot connect
 * does not. So a peer cut off, or whose process is frozen, is seen within about
 * `intervalMs + timeoutMs`, where the PostgreSQL subscription to it may still show
 * connected until `wal_receiver_timeout` (a minute by default).
 */
export class PeerLiveness {
  private readonly peers = new Map<string, PeerBeat>();
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly startedAtMs: number;
  private closed = false;

  constructor(private readonly opts: PeerLivenessOptions) {
    this.log = componentLogger(opts.logger, "peer-liveness");
    this.clock = opts.clock ?? Date.now;
    this.startedAtMs = this.clock();
    const credentials = opts.credentials ?? grpc.credentials.createInsecure();
    const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    for (const p of opts.peers) {
      const client = new grpc.Client(p.grpc, credentials, {
        "grpc.keepalive_time_ms": timeout,
        "grpc.keepalive_timeout_ms": timeout,
        // A peer back (or started after this node) is seen at the next heartbeat, not after
        // grpc-js's reconnect backoff (which grows to minutes).
        "grpc.initial_reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
        "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
      });
      this.peers.set(p.id, { client });
    }
  }

  /** Start the heartbeats (each peer's first at once). */
  start(): void {
    for (const [id, beat] of this.peers) void this.loop(id, beat);
  }

  /** What is known of `peerId` now; undefined for a peer without a gRPC endpoint. */
  view(peerId: string): PeerLivenessView | undefined {
    const beat = this.peers.get(peerId);
    if (beat === undefined) return undefined;
    const lastSeenMs = beat.lastSeenMs ?? null;
    if (beat.failingSinceMs === undefined) {
      // No heartbeat has ended yet: unknown, counted as reachable.
      return { reachable: true, lastSeenMs, unreachableSinceMs: null, lastError: null };
    }
    return {
      reachable: false,
      lastSeenMs,
      // Since the last answer (or, never answered, since this node started).
      unreachableSinceMs: lastSeenMs ?? this.startedAtMs,
      lastError: beat.lastError ?? null,
    };
  }

  /** Stop the heartbeats and close the channels. */
  close(): void {
    this.closed = true;
    for (const beat of this.peers.values()) {
      clearTimeout(beat.timer);
      beat.wake?.();
      beat.client.close();
    }
  }

  private async loop(id: string, beat: PeerBeat): Promise<void> {
    const interval = this.opts.intervalMs ?? DEFAULT_INTERVAL_MS;
    while (!this.closed) {
      const started = this.clock();
      const error = await this.check(beat.client);
      if (this.closed) return;
      if (error === undefined) {
        if (beat.failingSinceMs !== undefined) this.log.info({ peer: id }, "peer reachable again");
        beat.lastSeenMs = this.clock();
        beat.failingSinceMs = undefined;
        beat.lastError = undefined;
      } else {
        if (beat.failingSinceMs === undefined) {
          this.log.warn({ peer: id, error }, "peer unreachable: its heartbeat got no answer");
          beat.failingSinceMs = started;
        }
        beat.lastError = error;
      }
      await new Promise<void>((resolve) => {
        beat.wake = resolve;
        beat.timer = setTimeout(resolve, interval);
        beat.timer.unref();
      });
    }
  }

  /** One heartbeat: undefined when the peer answered, else why not. */
  private check(client: grpc.Client): Promise<string | undefined> {
    const timeout = this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const md = new grpc.Metadata();
    if (this.opts.token) md.set("authorization", `Bearer ${this.opts.token}`);
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        HEALTH_CHECK,
        () => EMPTY,
        (b: Buffer) => b,
        EMPTY,
        md,
        { deadline: Date.now() + timeout },
        (err) => {
          if (!err || !NO_ANSWER.has(err.code)) resolve(undefined);
          else resolve(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`);
        },
      );
    });
  }
}

export interface PeerLivenessOptions {
  peers: ReadonlyArray<{ id: string; grpc: string }>;
  credentials?: grpc.ChannelCredentials;
  /** Bearer token sent with the heartbeat (the health service may check it). */
  token?: string;
  /** Pause between the end of one heartbeat and the next. Default 1 s. */
  intervalMs?: number;
  /** Deadline of a heartbeat (and the channel's keepalive). Default 2 s. */
  timeoutMs?: number;
  logger?: Logger;
  clock?: () => number;
}

export interface PeerLivenessView {
  /** The last heartbeat was answered (or none has ended yet). */
  reachable: boolean;
  /** When the peer last answered (ms since epoch), if ever. */
  lastSeenMs: number | null;
  /** While unreachable: since the last answer (or this node's start). */
  unreachableSinceMs: number | null;
  /** While unreachable: why the last heartbeat failed. */
  lastError: string | null;
}

interface PeerBeat {
  client: grpc.Client;
  lastSeenMs?: number;
  failingSinceMs?: number;
  lastError?: string;
  timer?: NodeJS.Timeout;
  wake?: () => void;
}

const HEALTH_CHECK = "/grpc.health.v1.Health/Check";
/** An empty HealthCheckRequest (service "": the whole server). */
const EMPTY = Buffer.alloc(0);
/** Statuses that mean the peer's process did not answer (anything else is an answer). */
const NO_ANSWER = new Set([grpc.status.DEADLINE_EXCEEDED, grpc.status.UNAVAILABLE]);
export const DEFAULT_INTERVAL_MS = 1_000;
const RECONNECT_BACKOFF_MS = 1_000;
export const DEFAULT_TIMEOUT_MS = 2_000;
