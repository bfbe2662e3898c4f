import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { DirChangeGate } from "./dir-change-gate.js";

const dir = useTempDir("geospool-dir-gate-");

describe("DirChangeGate", () => {
  it("skips the work while the directory is still, and runs it after an entry comes, goes or moves", async () => {
    const queue = join(dir.path, "q");
    await mkdir(queue);
    await mkdir(join(dir.path, "other"));
    await writeFile(join(queue, "a"), "a");
    let now = Date.now() + 5_000; // the directory's stamps are then older than the racy window
    const gate = new DirChangeGate(queue, { clock: () => now });
    let runs = 0;
    const work = async () => {
      runs++;
    };
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(false);
    expect(await gate.runIfChanged(work)).toBe(false);

    await writeFile(join(queue, "b"), "b");
    now = Date.now() + 5_000;
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(false);

    await rename(join(queue, "b"), join(dir.path, "other", "b"));
    now = Date.now() + 5_000;
    expect(await gate.runIfChanged(work)).toBe(true);

    await rm(join(queue, "a"));
    now = Date.now() + 5_000;
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(runs).toBe(4);
  });

  it("runs every time while the directory's stamp is within the racy window", async () => {
    const queue = join(dir.path, "q");
    await mkdir(queue);
    await writeFile(join(queue, "a"), "a");
    const gate = new DirChangeGate(queue, { racyMs: 60_000 });
    let runs = 0;
    for (let i = 0; i < 3; i++) await gate.runIfChanged(async () => void runs++);
    expect(runs).toBe(3);
  });

  it("runs every time when the directory cannot be read, and a failed run is not trusted", async () => {
    const gate = new DirChangeGate(join(dir.path, "absent"), { clock: () => Date.now() + 5_000 });
    let runs = 0;
    for (let i = 0; i < 2; i++) await gate.runIfChanged(async () => void runs++);
    expect(runs).toBe(2);

    const queue = join(dir.path, "q");
    await mkdir(queue);
    const failing = new DirChangeGate(queue, { clock: () => Date.now() + 5_000 });
    await expect(
      failing.runIfChanged(async () => {
        throw new Error("refresh failed");
      }),
    ).rejects.toThrow("refresh failed");
    expect(await failing.runIfChanged(async () => undefined)).toBe(true);
  });

  it("over several directories: runs when any one of them changed, or one cannot be read", async () => {
    const a = join(dir.path, "a");
    const b = join(dir.path, "b");
    await mkdir(a);
    await mkdir(b);
    let now = Date.now() + 5_000;
    const gate = new DirChangeGate([a, b], { clock: () => now });
    let runs = 0;
    const work = async () => {
      runs++;
    };
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(false);

    await writeFile(join(b, "x"), "x");
    now = Date.now() + 5_000;
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(false);

    await rename(join(b, "x"), join(a, "x"));
    now = Date.now() + 5_000;
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(false);

    await rm(b, { recursive: true });
    now = Date.now() + 5_000;
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(runs).toBe(5);
  });

  it("over several directories: a recent change in any one is not trusted, and a directory put in another's place is a change", async () => {
    const a = join(dir.path, "a");
    const b = join(dir.path, "b");
    await mkdir(a);
    await mkdir(b);
    let now = Date.now() + 5_000;
    const gate = new DirChangeGate([a, b], { clock: () => now });
    let runs = 0;
    const work = async () => {
      runs++;
    };
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(false);
    // b changes within the racy window of the run's start: listed until it is older.
    await writeFile(join(b, "x"), "x");
    now = Date.now();
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(true);
    now = Date.now() + 5_000;
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(await gate.runIfChanged(work)).toBe(false);
    // A new directory renamed over a: another inode.
    const c = join(dir.path, "c");
    await mkdir(c);
    await rename(c, a);
    now = Date.now() + 5_000;
    expect(await gate.runIfChanged(work)).toBe(true);
    expect(runs).toBe(5);
  });
});
