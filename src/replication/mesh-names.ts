import { createHash } from "node:crypto";
import { nameProblem } from "../spool/index.js";
import { MeshError, MeshErrorCode } from "./mesh-errors.js";

/**
 * PostgreSQL object names for the mesh, derived deterministically from node ids so that every
 * node computes the same names for its peers without asking them.
 *
 * Node ids are names (`[A-Za-z0-9_][A-Za-z0-9._:@+=-]*`, up to 200 characters); identifiers are
 * at most 63 bytes, and replication slot names only allow `[a-z0-9_]`. A node id maps to its
 * *tag*: lowercased, every other character replaced by `_`, cut to 16 characters, then `_` and
 * the first 8 hex digits of the id's sha256. The hash is always added, so two ids that
 * differ only in case or punctuation (`eu-1`, `EU.1`) still get different tags.
 *
 * - publication (on each node, its own rows):    `geospool_<tag(self)>`
 * - subscription (on the subscriber, per peer):  `geospool_from_<tag(peer)>`
 * - slot (on the publisher, per subscriber):     `geospool_<tag(publisher)>_to_<tag(subscriber)>`
 *
 * Slot names are server-wide on the publisher, so a slot is named for both ends: two nodes
 * subscribing to the same peer never collide, even when they share a PostgreSQL server.
 */

const TAG_TEXT_LENGTH = 16;
const TAG_HASH_LENGTH = 8;
const PREFIX = "geospool_";

export interface MeshNames {
  /** The peer's publication, which the subscription names. */
  publication: string;
  /** The subscription on the local (subscriber) database. */
  subscription: string;
  /** The slot on the peer (publisher) that feeds the subscription. */
  slot: string;
}

export function nodeTag(nodeId: string): string {
  checkNodeId(nodeId);
  const text = nodeId
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "_")
    .slice(0, TAG_TEXT_LENGTH);
  const hash = createHash("sha256").update(nodeId).digest("hex").slice(0, TAG_HASH_LENGTH);
  return `${text}_${hash}`;
}

export function publicationName(nodeId: string): string {
  return `${PREFIX}${nodeTag(nodeId)}`;
}

export function subscriptionName(peerId: string): string {
  return `${PREFIX}from_${nodeTag(peerId)}`;
}

export function slotName(publisherId: string, subscriberId: string): string {
  return `${PREFIX}${nodeTag(publisherId)}_to_${nodeTag(subscriberId)}`;
}

/** Every name a subscriber `selfId` uses for its subscription to `peerId`. */
export function meshNames(selfId: string, peerId: string): MeshNames {
  return {
    publication: publicationName(peerId),
    subscription: subscriptionName(peerId),
    slot: slotName(peerId, selfId),
  };
}

export function checkNodeId(nodeId: string): void {
  const problem = nameProblem(nodeId);
  if (problem !== undefined) {
    const shown = typeof nodeId === "string" ? JSON.stringify(nodeId.slice(0, 80)) : "(none)";
    throw new MeshError(MeshErrorCode.InvalidNodeId, `invalid node id ${shown}: ${problem}`);
  }
}
