export const MeshErrorCode = {
  /** A node id that is not a valid name, or a node asked to subscribe to itself. */
  InvalidNodeId: "invalid_node_id",
  /** A peer connection string that is not a `postgres://` / `postgresql://` URL. */
  InvalidConninfo: "invalid_conninfo",
  /** The peer's database could not be reached (or did not answer in time). */
  PeerUnreachable: "peer_unreachable",
  /** The slot this subscription needs is in use by another connection on the peer. */
  SlotInUse: "slot_in_use",
  /** A statement failed; `sqlstate` says why. */
  Failed: "failed",
} as const;

export type MeshErrorCode = (typeof MeshErrorCode)[keyof typeof MeshErrorCode];

export class MeshError extends Error {
  readonly code: MeshErrorCode;
  /** The SQLSTATE of the failing statement, when PostgreSQL reported one. */
  readonly sqlstate: string | undefined;

  constructor(code: MeshErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "MeshError";
    this.code = code;
    this.sqlstate = sqlstateOf(options.cause);
  }
}

export const SQLSTATE = {
  uniqueViolation: "23505",
  duplicateObject: "42710",
  undefinedObject: "42704",
  objectInUse: "55006",
  queryCanceled: "57014",
  connectionException: "08000",
  connectionDoesNotExist: "08003",
  connectionFailure: "08006",
  cannotConnectNow: "57P03",
  sqlclientUnableToEstablishConnection: "08001",
} as const;

/** The SQLSTATE of a node-postgres error, or the one a `MeshError` carries. */
export function sqlstateOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { code, sqlstate } = err as { code?: unknown; sqlstate?: unknown };
  if (typeof sqlstate === "string") return sqlstate;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Node errno codes of a failed TCP connection (node-postgres rejects with the socket error). */
const NETWORK_ERRNOS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
]);

/** The error says the server could not be reached or went away, not that a statement failed. */
export function isConnectionError(err: unknown): boolean {
  const state = sqlstateOf(err);
  if (state !== undefined) {
    return (
      state.startsWith("08") || state === SQLSTATE.cannotConnectNow || state.startsWith("57P0")
    );
  }
  const code =
    typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" && NETWORK_ERRNOS.has(code);
}

export function isDuplicate(err: unknown): boolean {
  const state = sqlstateOf(err);
  return state === SQLSTATE.duplicateObject || state === SQLSTATE.uniqueViolation;
}

export function unreachable(peerId: string, cause: unknown): MeshError {
  return new MeshError(MeshErrorCode.PeerUnreachable, `peer ${peerId} could not be reached`, {
    cause,
  });
}

export function failed(what: string, cause: unknown): MeshError {
  const state = sqlstateOf(cause);
  const message = cause instanceof Error ? cause.message : String(cause);
  return new MeshError(
    MeshErrorCode.Failed,
    `${what}${state ? ` (SQLSTATE ${state})` : ""}: ${message}`,
    { cause },
  );
}
