import { describe, expect, it } from "vitest";
import { ServiceErrorCode } from "../service/errors.js";
import { Authorizer } from "./authorizer.js";

const auth = new Authorizer([
  {
    name: "producer",
    token: "producer-token-0123456789",
    permissions: [{ queues: ["inbox"], actions: ["enqueue"] }],
  },
  {
    name: "ops",
    token: "ops-token-0123456789abcdef",
    permissions: [{ queues: ["*"], actions: ["admin"] }],
  },
]);

function code(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

describe("Authorizer", () => {
  it("refuses missing, malformed and unknown tokens", () => {
    expect(code(() => auth.authenticate(undefined))).toBe(ServiceErrorCode.Unauthenticated);
    expect(code(() => auth.authenticate("Basic abc"))).toBe(ServiceErrorCode.Unauthenticated);
    expect(code(() => auth.authenticate("Bearer nope-nope-nope-nope"))).toBe(
      ServiceErrorCode.Unauthenticated,
    );
  });

  it("grants per queue and per action; admin allows everything on its queues", () => {
    const producer = auth.authenticate("Bearer producer-token-0123456789");
    expect(producer.name).toBe("producer");
    expect(code(() => auth.authorize(producer, "enqueue", "inbox"))).toBeUndefined();
    expect(code(() => auth.authorize(producer, "dequeue", "inbox"))).toBe(
      ServiceErrorCode.PermissionDenied,
    );
    expect(code(() => auth.authorize(producer, "enqueue", "outbox"))).toBe(
      ServiceErrorCode.PermissionDenied,
    );
    expect(code(() => auth.authorize(producer, "enqueue"))).toBe(ServiceErrorCode.PermissionDenied);
    const ops = auth.authenticate("bearer ops-token-0123456789abcdef");
    expect(code(() => auth.authorize(ops, "dequeue", "anything"))).toBeUndefined();
    expect(code(() => auth.authorize(ops, "admin"))).toBeUndefined();
  });

  it("is open when no tokens are configured, and refuses short tokens", () => {
    const open = new Authorizer([]);
    expect(open.enabled).toBe(false);
    expect(open.authenticate(undefined).name).toBe("anonymous");
    expect(() => new Authorizer([{ name: "x", token: "short", permissions: [] }])).toThrow(
      /shorter than 16/,
    );
  });
});
