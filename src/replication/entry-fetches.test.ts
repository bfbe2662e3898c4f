import { describe, expect, it } from "vitest";
import { EntryFetches } from "./entry-fetches.js";
import type { FetchDataRequest } from "./replicator-options.js";

/** A fetch the test ends by hand, and the signal it was given. */
function harness() {
  const calls: Array<{
    req: FetchDataRequest;
    resolve: (path: string) => void;
    reject: (err: Error) => void;
  }> = [];
  const ended: string[] = [];
  const fetches = new EntryFetches(
    (req) =>
      new Promise((resolve, reject) =>
        calls.push({ req, resolve: (path) => resolve({ path }), reject }),
      ),
    (entry) => ended.push(entry),
  );
  return { calls, ended, fetches };
}

const req = (entry: string, sha256 = "a".repeat(64), size = 10): FetchDataRequest => ({
  entry,
  sha256,
  size,
  origin: "n1",
});
const settle = () => new Promise((r) => setImmediate(r));

describe("EntryFetches", () => {
  it("starts one fetch per entry, reports its end, and hands the file over once", async () => {
    const { calls, ended, fetches } = harness();
    expect(fetches.poll(req("e1"))).toEqual({ kind: "running" });
    expect(fetches.poll(req("e1"))).toEqual({ kind: "running" });
    expect(fetches.poll(req("e2"))).toEqual({ kind: "running" });
    expect(calls.map((c) => c.req.entry)).toEqual(["e1", "e2"]);
    calls[0]?.resolve("/tmp/e1~fetch");
    await settle();
    expect(ended).toEqual(["e1"]);
    expect(fetches.poll(req("e1"))).toEqual({ kind: "ready", path: "/tmp/e1~fetch" });
    // Taken: the next poll is a new fetch.
    expect(fetches.poll(req("e1"))).toEqual({ kind: "running" });
    expect(calls).toHaveLength(3);
  });

  it("reports a failure once, then fetches again", async () => {
    const { calls, fetches } = harness();
    fetches.poll(req("e1"));
    calls[0]?.reject(new Error("every source failed"));
    await settle();
    const state = fetches.poll(req("e1"));
    expect(state.kind).toBe("failed");
    expect(fetches.poll(req("e1"))).toEqual({ kind: "running" });
  });

  it("aborts a cancelled fetch and does not report its end", async () => {
    const { calls, ended, fetches } = harness();
    fetches.poll(req("e1"));
    fetches.cancel("e1");
    expect(calls[0]?.req.signal?.aborted).toBe(true);
    calls[0]?.reject(new Error("aborted"));
    await settle();
    expect(ended).toEqual([]);
    expect(fetches.size).toBe(0);
  });

  it("cancels a fetch for another digest or size and starts the one asked for", () => {
    const { calls, fetches } = harness();
    fetches.poll(req("e1", "a".repeat(64), 10));
    fetches.poll(req("e1", "b".repeat(64), 10));
    expect(calls[0]?.req.signal?.aborted).toBe(true);
    expect(calls[1]?.req.sha256).toBe("b".repeat(64));
    expect(calls[1]?.req.signal?.aborted).toBe(false);
  });

  it("starts nothing once closed, and aborts what runs", () => {
    const { calls, fetches } = harness();
    fetches.poll(req("e1"));
    fetches.close();
    expect(calls[0]?.req.signal?.aborted).toBe(true);
    expect(fetches.poll(req("e2")).kind).toBe("failed");
    expect(calls).toHaveLength(1);
  });
});
