import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import { SpoolThread } from "./spool-thread.js";

const dir = useTempDir();
const here = dirname(fileURLToPath(import.meta.url));

/**
 * A spool thread keeps its process alive only while a request is under way. A process
 * that started one and never sent it anything (its checkouts all ran before the thread was
 * up, as in a short-lived process) must still exit when its work is done.
 */
it("a thread started and never asked anything lets its process exit", async () => {
  const script = join(dir.path, "start-only.ts");
  await writeFile(
    script,
    [
      `import { SpoolThread } from ${JSON.stringify(join(here, "spool-thread.ts"))};`,
      `const thread = new SpoolThread<object, object>("parentPort.on('message', (m) => parentPort.postMessage(m));", "a test thread");`,
      "thread.start();",
      // Once the thread runs, the process has nothing left to do.
      "const wait = () => (thread.running ? console.log('up') : setImmediate(wait));",
      "wait();",
    ].join("\n"),
  );
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  // Before the fix the child never exited: after 15 s it is killed, and the test says so.
  const bound = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const [code, signal] = await once(child, "exit");
  clearTimeout(bound);
  expect(signal, "the process did not exit once its work was done").toBeNull();
  expect(out.trim()).toBe("up");
  expect(code).toBe(0);
}, 20_000);

describe("SpoolThread.close", () => {
  // Answers each request after `ms` milliseconds, with the request's fields back.
  const SLOW =
    "parentPort.on('message', (m) => setTimeout(() => parentPort.postMessage(m), m.ms));";

  it("stops the thread once what was sent is answered; a second close waits for the same", async () => {
    const thread = new SpoolThread<{ ms: number; n: number }, { n: number }>(SLOW, "a test thread");
    const events: string[] = [];
    const answer = thread.call({ ms: 100, n: 1 }).then((r) => events.push(`answer ${r.n}`));
    const first = thread.close().then(() => events.push("closed"));
    const second = thread.close().then(() => events.push("closed again"));
    await Promise.all([answer, first, second]);
    expect(events).toEqual(["answer 1", "closed", "closed again"]);
    expect(thread.running).toBe(false);
    // A later call starts a new thread.
    expect(await thread.call({ ms: 0, n: 2 })).toEqual({ n: 2, ms: 0 });
    await thread.close();
  });

  it("a request that could not be sent does not keep close waiting", async () => {
    const thread = new SpoolThread<object, object>(SLOW, "a test thread");
    await thread.call({ ms: 0 });
    await expect(thread.call({ ms: 0, f: () => 1 })).rejects.toThrow(/could not be cloned/);
    await thread.close();
    expect(thread.running).toBe(false);
  });
});
