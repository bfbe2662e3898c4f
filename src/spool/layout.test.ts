import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Layout } from "./layout.js";

describe("Layout", () => {
  it.each(["/tmp/s", "/tmp/s/", "rel/dir", "./rel//dir/", "/", "a"])(
    "builds the paths path.join builds, from root %j",
    (root) => {
      const l = new Layout(root);
      expect([
        l.registry,
        l.tmp,
        l.data,
        l.queue("q"),
        l.checkout("q"),
        l.registryFile("n"),
        l.tmpFile("n"),
        l.tmpFile("n", "t"),
        l.dataFile("n"),
        l.queueFile("q", "n"),
        l.checkoutFile("q", "n"),
      ]).toEqual([
        join(root, ".registry"),
        join(root, ".tmp"),
        join(root, ".data"),
        join(root, "q"),
        join(root, "q", ".checkout"),
        join(root, ".registry", "n"),
        join(root, ".tmp", "n"),
        join(root, ".tmp", "n~t"),
        join(root, ".data", "n"),
        join(root, "q", "n"),
        join(root, "q", ".checkout", "n"),
      ]);
    },
  );
});
