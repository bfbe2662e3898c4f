/**
 * The logical-replication mesh between the nodes' databases (docs/architecture.md, Replication).
 *
 * - Every node publishes its own journal rows: publication `geospool_<tag(self)>` FOR TABLE
 *   journal WHERE (origin = '<self>') WITH (publish = 'insert'). No updates, deletes or
 *   truncates ever leave a node.
 * - Every node subscribes to every peer's publication with origin = none: it receives rows the
 *   peer wrote itself, never rows the peer received. Loop-free twice over (the row filter and
 *   the origin filter); rows of different origins never share a key, so they never conflict.
 * - A new subscription bootstraps from the peer's existing rows, copied by `joinPeer` itself
 *   (mesh-bootstrap.ts explains why not copy_data): only the rows missing here, so a re-join
 *   costs what was missed, not the whole journal.
 * - A row that arrives twice (streamed after being copied) is skipped by the journal's replica
 *   trigger (migration 0003); a different row under a known key fails loudly.
 *
 * Where each part lives: mesh-publication.ts (this node's publication), mesh-join.ts (how a
 * join is made), mesh-leave.ts (leaving, dropping a departed peer's slot), mesh-subscription.ts
 * (the local subscription and `node_peers`), mesh-slot.ts (slots on the peer), mesh-status.ts
 * (what an operator sees), mesh-sql.ts (quoting and the membership locks).
 *
 * WAL retention. A slot on the publisher keeps WAL until its subscriber confirms it, so a
 * dead peer would fill the disk. The servers bound that (startEmbeddedPostgres sets them; see
 * `replicationSettings` for the check): `max_slot_wal_keep_size` invalidates a slot that would
 * hold back more WAL, `idle_replication_slot_timeout` (PostgreSQL 18, applied at checkpoints)
 * invalidates one nobody has used for that long. `leavePeer` drops our slot on a departing
 * peer, and `dropPeerSlot` the departed peer's slot on us. A subscription whose slot was
 * invalidated or dropped can never resume: the next `joinPeer` rebuilds it (copying the peer's
 * rows again; the ones already here are skipped).
 *
 * Requires PostgreSQL 18 on every node (origin = none, row filters, invalidation reasons,
 * idle slot timeout, per-conflict statistics) and a role that may create subscriptions here
 * and replication slots on the peers (superuser, or pg_create_subscription + REPLICATION).
 */

export {
  DEFAULT_CONNECT_TIMEOUT_S,
  normalizeConninfo,
  redactConninfo,
} from "./mesh-conninfo.js";
export { MeshError, MeshErrorCode } from "./mesh-errors.js";
export { type JoinPeerOptions, type JoinPeerOutcome, joinPeer } from "./mesh-join.js";
export {
  type DropPeerSlotOutcome,
  dropPeerSlot,
  type LeavePeerOptions,
  type LeavePeerOutcome,
  leavePeer,
} from "./mesh-leave.js";
export {
  type MeshNames,
  meshNames,
  nodeTag,
  publicationName,
  slotName,
  subscriptionName,
} from "./mesh-names.js";
export { type EnsurePublicationOutcome, ensurePublication } from "./mesh-publication.js";
export {
  type MeshStatus,
  meshStatus,
  type PeerStatus,
  type ReplicationSettings,
  replicationSettings,
  type SlotStatus,
  type SlotStatusReport,
  slotStatus,
} from "./mesh-status.js";
export { listPeers, type PeerRecord } from "./mesh-subscription.js";
