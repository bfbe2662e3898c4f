/**
 * This node's place (1-based) among the nodes that may reap a lease `holder` took: every
 * node of the cluster but the holder, by id. Every node computes the same order, so each
 * waits a different multiple of the grace (see Replicator.leaseHoldBack).
 */
export function reapRank(self: string, holder: string, peers: readonly string[]): number {
  const order = [...new Set([self, ...peers])].filter((id) => id !== holder).sort();
  return order.indexOf(self) + 1;
}
