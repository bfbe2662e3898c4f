/**
 * # The geospool client
 *
 * `GeospoolClient` talks to a geospool cluster over gRPC. Give it every node's endpoint:
 * calls go to the first node that answers and move to the next on UNAVAILABLE,
 * DEADLINE_EXCEEDED or ABORTED, with capped exponential backoff after each full round.
 * Enqueue always carries an idempotency key (one is made up when you give none), so a
 * retry after a lost reply never makes a second entry on the node that took the first.
 * Calls on a checkout (save, remove, completeThenDequeue, release, extendLease) go to the
 * node that holds it.
 */

export type { BulkEntry, BulkResult, EnqueueManyOptions } from "./bulk.js";
export {
  ClientError,
  type ClientTls,
  type DequeueOptions,
  type EntryInfo,
  type FinishAction,
  GeospoolClient,
  type GeospoolClientOptions,
  type Lease,
} from "./geospool-client.js";
