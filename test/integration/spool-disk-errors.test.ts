import { execFile } from "node:child_process";
import { chmod, chown, mkdir, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Monitor, Spool, SpoolError, SpoolErrorCode } from "../../src/spool/index.js";
import { bundleSpoolWorker, readResult, WorkerProcess } from "../helpers/spool-processes.js";
import { scanSpool } from "../helpers/spool-scan.js";
import type { EnqueueResult } from "../helpers/spool-worker-config.js";
import { tempDir, useTempDir } from "../helpers/tmp.js";
import {
  WIDGET_QUEUES,
  type Widget,
  type WidgetQueue,
  widgetSpoolable,
} from "../helpers/widget.js";

const run = promisify(execFile);
const NOBODY = 65534;

const dir = useTempDir();

async function expectNothingBut(spoolDir: string, names: readonly string[]): Promise<void> {
  const snap = await scanSpool(spoolDir, WIDGET_QUEUES);
  expect([...snap.registry].sort()).toEqual([...names].sort());
  expect([...snap.data].sort()).toEqual([...names].sort());
  expect(snap.tmp).toEqual([]);
  expect([...snap.locations.keys()].sort()).toEqual([...names].sort());
}

describe("EACCES during enqueue", () => {
  let bundleDir: Awaited<ReturnType<typeof tempDir>>;
  let bundle: string;
  beforeAll(async () => {
    bundleDir = await tempDir("geospool-worker-");
    bundle = await bundleSpoolWorker(bundleDir.path);
    await chmod(bundleDir.path, 0o755);
  });
  afterAll(async () => {
    await rm(bundleDir.path, { recursive: true, force: true });
  });

  // Root ignores directory permissions, so as root the enqueue runs in a child process
  // as nobody, on a spool that nobody owns.
  const asRoot = process.getuid?.() === 0;

  it.each([
    [".registry", "reserve name"],
    [".data", "enqueue (write data)"],
    [".tmp", "enqueue (write metadata)"],
    ["inbox", "enqueue (rename into queue)"],
  ])("a read-only %s: the enqueue fails with EACCES and leaves nothing", async (readOnly, step) => {
    const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
    const kept = await spool.enqueue("inbox", { id: 0 }, "kept");
    const outDir = join(dir.path, "out");
    await mkdir(outDir);
    if (asRoot) {
      await chmod(dir.path, 0o755);
      await run("chown", ["-R", `${NOBODY}:${NOBODY}`, spool.dir, outDir]);
    }
    await chmod(join(spool.dir, readOnly), 0o500);
    const out = join(outDir, "result.json");
    const worker = new WorkerProcess(
      bundle,
      {
        role: "enqueue",
        spool: { dir: spool.dir },
        queue: "inbox",
        count: 3,
        tag: "denied",
        out,
        tolerateErrors: true,
      },
      asRoot ? { uid: NOBODY, gid: NOBODY } : {},
    );
    await worker.succeeded();
    await chmod(join(spool.dir, readOnly), 0o755);
    if (asRoot) await chown(spool.dir, 0, 0);
    const result = await readResult<EnqueueResult>(out);
    expect(result.enqueued).toEqual([]);
    expect(result.failed).toHaveLength(3);
    for (const f of result.failed) {
      expect(f.code).toBe(SpoolErrorCode.Io);
      expect(f.errno).toBe("EACCES");
      expect(f.message).toContain(step);
    }
    await expectNothingBut(spool.dir, [kept.name]);
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });
});

describe("ENOSPC during enqueue (a small tmpfs)", () => {
  let mnt: string;
  let mounted = false;

  async function mountTmpfs(options: string): Promise<boolean> {
    mnt = join(dir.path, "mnt");
    await mkdir(mnt);
    try {
      await run("mount", ["-t", "tmpfs", "-o", options, "tmpfs", mnt]);
      mounted = true;
      return true;
    } catch (err) {
      console.warn(`skipping ENOSPC test: cannot mount a tmpfs (${(err as Error).message.trim()})`);
      return false;
    }
  }

  // A spool keeps its directories open between fsyncs: closed, it lets go of the mount.
  const spools: Spool<Widget, WidgetQueue>[] = [];
  async function spoolOnTmpfs(): Promise<Spool<Widget, WidgetQueue>> {
    const made = await Spool.create(join(mnt, "spool"), widgetSpoolable());
    spools.push(made);
    return made;
  }

  afterEach(async () => {
    for (const spool of spools.splice(0)) await spool.close();
    if (mounted) await run("umount", [mnt]);
    mounted = false;
  });

  it("data larger than the disk: fails with ENOSPC, nothing left; works again once there is room", async (ctx) => {
    if (!(await mountTmpfs("size=256k"))) return ctx.skip();
    const spool = await spoolOnTmpfs();
    const kept = await spool.enqueue("inbox", { id: 0 }, Buffer.alloc(16 * 1024, 1));
    const err = await spool
      .enqueue("inbox", { id: 1 }, Buffer.alloc(1024 * 1024, 2))
      .catch((e) => e);
    expect(err).toBeInstanceOf(SpoolError);
    expect(err.code).toBe(SpoolErrorCode.Io);
    expect(err.errno).toBe("ENOSPC");
    expect(err.message).toContain("write data");
    await expectNothingBut(spool.dir, [kept.name]);
    expect(await new Monitor(spool).fsck()).toEqual([]);
    const e = await spool.enqueue("inbox", { id: 2 }, Buffer.alloc(64 * 1024, 3));
    await expectNothingBut(spool.dir, [kept.name, e.name]);
  });

  it("room for the data but not the metadata: fails at the metadata, data and name are cleaned up", async (ctx) => {
    if (!(await mountTmpfs("size=256k"))) return ctx.skip();
    const spool = await spoolOnTmpfs();
    const kept = await spool.enqueue("inbox", { id: 0 }, "kept");
    // Fill the disk but for exactly two pages, then enqueue two pages of data.
    const st = await statfs(mnt);
    const free = st.bavail * st.bsize;
    const page = st.bsize;
    await writeFile(join(mnt, "filler"), Buffer.alloc(free - 2 * page));
    const err = await spool.enqueue("inbox", { id: 1 }, Buffer.alloc(2 * page, 7)).catch((e) => e);
    expect(err.code).toBe(SpoolErrorCode.Io);
    expect(err.errno).toBe("ENOSPC");
    expect(err.message).toContain("write metadata");
    await expectNothingBut(spool.dir, [kept.name]);
    expect(await new Monitor(spool).fsck()).toEqual([]);
    await rm(join(mnt, "filler"));
    await spool.enqueue("inbox", { id: 2 }, Buffer.alloc(2 * page, 7));
    expect(await new Monitor(spool).fsck()).toEqual([]);
  });

  it("out of inodes at each step of enqueue: the failed enqueue leaves nothing", async (ctx) => {
    if (!(await mountTmpfs("size=4m,nr_inodes=80"))) return ctx.skip();
    const spool = await spoolOnTmpfs();
    const spares = join(mnt, "spares");
    await mkdir(spares);
    // An enqueue takes three inodes, in this order: registry file, data file, metadata
    // file. With k free inodes left (k = 0, 1, 2) it fails at the k-th of these steps.
    const stepWithFree = ["reserve name", "enqueue (write data)", "enqueue (write metadata)"];
    const ok: string[] = [];
    let spare = 0;
    for (let round = 0; round < 6; round++) {
      const target = round % 3;
      // Leave (free inodes ≡ target mod 3) by parking a few empty files outside the spool.
      const free = (await statfs(mnt)).ffree;
      for (let c = (((free - target) % 3) + 3) % 3; c > 0; c--) {
        await writeFile(join(spares, String(spare++)), "");
      }
      let err: unknown;
      for (;;) {
        try {
          ok.push((await spool.enqueue("inbox", { id: ok.length }, `data ${ok.length}`)).name);
        } catch (e) {
          err = e;
          break;
        }
      }
      expect(err).toBeInstanceOf(SpoolError);
      expect((err as SpoolError).code).toBe(SpoolErrorCode.Io);
      expect((err as SpoolError).errno).toBe("ENOSPC");
      expect((err as SpoolError).message).toContain(stepWithFree[target]);
      await expectNothingBut(spool.dir, ok);
      expect(await new Monitor(spool).fsck()).toEqual([]);
      // Make room for the next round.
      await spool.entry("inbox", ok.shift()!).direct.remove();
    }
    expect(ok.length).toBeGreaterThan(0);
  });
});
