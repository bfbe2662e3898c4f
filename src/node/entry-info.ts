/**
 * An entry as clients see it: what the service returns, what travels as `geospool.v1.Entry`
 * (src/node/grpc/convert.ts) and what the client gives back. Times are epoch milliseconds.
 */
export interface EntryInfo {
  name: string;
  queue: string;
  metadata: Buffer;
  attempts: number;
  dataSize: number;
  dataSha256: string;
  enqueuedAt: number;
  /** Set while the entry is checked out. */
  leaseUntil?: number;
}
