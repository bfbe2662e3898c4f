import { describe, expect, it } from "vitest";
import type { SpoolIdentity } from "../spool/index.js";
import { checkSpoolIdentity } from "./spool-identity-check.js";

const A = "a".repeat(32);
const B = "b".repeat(32);
const spool = (id: string, made: SpoolIdentity["made"]): SpoolIdentity => ({ id, made });

describe("is the spool the record's?", () => {
  it("the same id is the same spool, however empty it is", () => {
    for (const made of ["created", "loaded", "adopted"] as const) {
      for (const recordedEntries of [0, 3]) {
        expect(
          checkSpoolIdentity({ recordedId: A, spool: spool(A, made), recordedEntries }),
        ).toEqual({ kind: "same", recordId: false });
      }
    }
  });

  it("another id is a lost spool, even with an empty record", () => {
    for (const made of ["created", "loaded", "adopted"] as const) {
      for (const recordedEntries of [0, 3]) {
        const r = checkSpoolIdentity({ recordedId: A, spool: spool(B, made), recordedEntries });
        expect(r.kind).toBe("lost");
      }
    }
  });

  it("a record from before identities: only a spool made now, with entries recorded, is lost", () => {
    const check = (made: SpoolIdentity["made"], recordedEntries: number) =>
      checkSpoolIdentity({ recordedId: undefined, spool: spool(A, made), recordedEntries });
    expect(check("created", 3)).toMatchObject({ kind: "lost" });
    expect(check("created", 0)).toEqual({ kind: "same", recordId: true });
    expect(check("adopted", 3)).toEqual({ kind: "same", recordId: true });
    expect(check("loaded", 3)).toEqual({ kind: "same", recordId: true });
  });
});
