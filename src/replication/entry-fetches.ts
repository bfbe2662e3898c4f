import type { Logger } from "pino";
import type { FetchDataRequest } from "./replicator-options.js";

/**
 * The data fetches of peers' new entries, run apart from the replicator's batches. A sync
 * that needs an entry's data starts its fetch and moves on: the entry waits (listed in
 * replica_pending, so a restart resumes it) while the entries behind it in the stream are
 * synced. When the fetch ends, `ended(entry)` marks the entry for a sync again, which takes
 * the file (or, after a failure, retries with a backoff). One stalled fetch holds up only
 * its own entry. A sync that finds the entry needs no data any more (its remove arrived)
 * cancels the fetch.
 */
export class EntryFetches {
  private readonly jobs = new Map<string, Job>();
  private closed = false;

  constructor(
    private readonly fetch: (req: FetchDataRequest) => Promise<{ path: string }>,
    private readonly ended: (entry: string) => void,
    private readonly log?: Logger,
  ) {}

  /** Fetches running or ended and not taken yet. */
  get size(): number {
    return this.jobs.size;
  }

  /**
   * The fetch of `req.entry` with `req.sha256`/`req.size`: its file once it is done (taken:
   * the caller adopts or deletes it), its error once it failed (forgotten: the next poll
   * starts again), or `running` (started now if it was not; one for another digest or size
   * is cancelled first).
   */
  poll(req: FetchDataRequest): FetchState {
    let job = this.jobs.get(req.entry);
    if (job !== undefined && (job.sha256 !== req.sha256 || job.size !== req.size)) {
      this.cancel(req.entry);
      job = undefined;
    }
    if (job === undefined) {
      if (this.closed) return { kind: "failed", error: new Error("the replicator is stopping") };
      this.start(req);
      return { kind: "running" };
    }
    if (job.state.kind === "running") return job.state;
    this.jobs.delete(req.entry);
    return job.state;
  }

  /** Stop the fetch of `entry`, if any (a file it completed stays for the caller to delete). */
  cancel(entry: string): void {
    const job = this.jobs.get(entry);
    if (job === undefined) return;
    this.jobs.delete(entry);
    this.log?.debug({ entry, state: job.state.kind }, "fetch cancelled");
    job.ac.abort();
  }

  /** Cancel every fetch; none starts again. */
  close(): void {
    this.closed = true;
    for (const entry of [...this.jobs.keys()]) this.cancel(entry);
  }

  private start(req: FetchDataRequest): void {
    const ac = new AbortController();
    const job: Job = { sha256: req.sha256, size: req.size, ac, state: { kind: "running" } };
    this.jobs.set(req.entry, job);
    this.log?.debug({ entry: req.entry, origin: req.origin }, "fetch started");
    this.fetch({ ...req, signal: ac.signal })
      .then(
        (got) => {
          job.state = { kind: "ready", path: got.path };
        },
        (error: unknown) => {
          job.state = { kind: "failed", error };
        },
      )
      .finally(() => {
        const current = this.jobs.get(req.entry) === job;
        this.log?.debug({ entry: req.entry, state: job.state.kind, current }, "fetch ended");
        if (current) this.ended(req.entry);
      });
  }
}

export type FetchState =
  | { kind: "running" }
  | { kind: "ready"; path: string }
  | { kind: "failed"; error: unknown };

interface Job {
  sha256: string;
  size: number;
  ac: AbortController;
  state: FetchState;
}
