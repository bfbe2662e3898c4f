import { createHash, timingSafeEqual } from "node:crypto";
import { ServiceError, ServiceErrorCode } from "../service/errors.js";

export type Action = "enqueue" | "dequeue" | "admin";

export interface Permission {
  /** Queue names, or "*" for every queue. */
  queues: readonly string[];
  actions: readonly Action[];
}

export interface TokenGrant {
  /** Who holds the token (for logs; never the token itself). */
  name: string;
  token: string;
  permissions: readonly Permission[];
}

export interface Principal {
  name: string;
  permissions: readonly Permission[];
}

/** Anyone, when the node runs without tokens (development only). */
const ANONYMOUS: Principal = {
  name: "anonymous",
  permissions: [{ queues: ["*"], actions: ["admin"] }],
};

/**
 * Bearer tokens with per-queue permissions. `admin` on a queue allows every action on it.
 * With no grants configured, authentication is off and every call is allowed.
 */
export class Authorizer {
  private readonly grants: Array<{ digest: Buffer; principal: Principal }>;

  constructor(grants: readonly TokenGrant[]) {
    this.grants = grants.map((g) => {
      if (g.token.length < 16) {
        throw new Error(`auth token of ${g.name} is shorter than 16 characters`);
      }
      return { digest: digest(g.token), principal: { name: g.name, permissions: g.permissions } };
    });
  }

  get enabled(): boolean {
    return this.grants.length > 0;
  }

  /**
   * The principal for an `authorization` header value (`Bearer <token>`). Missing or
   * wrong credentials are `unauthenticated` when auth is on.
   */
  authenticate(header: string | undefined): Principal {
    if (!this.enabled) return ANONYMOUS;
    if (header === undefined || header === "") {
      throw new ServiceError(ServiceErrorCode.Unauthenticated, "missing bearer token");
    }
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m?.[1]) {
      throw new ServiceError(
        ServiceErrorCode.Unauthenticated,
        "authorization must be 'Bearer <token>'",
      );
    }
    const d = digest(m[1]);
    let found: Principal | undefined;
    // Compare against every grant (constant time per comparison, no early exit).
    for (const g of this.grants) {
      if (timingSafeEqual(d, g.digest)) found = g.principal;
    }
    if (!found) throw new ServiceError(ServiceErrorCode.Unauthenticated, "unknown bearer token");
    return found;
  }

  /** Throw permission_denied unless `who` may do `action` on `queue` (undefined: all queues). */
  authorize(who: Principal, action: Action, queue?: string): void {
    if (allows(who, action, queue)) return;
    const on = queue === undefined ? "every queue" : `queue ${JSON.stringify(queue)}`;
    throw new ServiceError(
      ServiceErrorCode.PermissionDenied,
      `${who.name} may not ${action} on ${on}`,
    );
  }
}

export function allows(who: Principal, action: Action, queue?: string): boolean {
  return who.permissions.some((p) => {
    const queueOk = p.queues.includes("*") || (queue !== undefined && p.queues.includes(queue));
    const actionOk = p.actions.includes(action) || p.actions.includes("admin");
    return queueOk && actionOk;
  });
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
