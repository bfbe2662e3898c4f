import { execFile } from "node:child_process";
import { promisify } from "node:util";

const exec = promisify(execFile);

/**
 * A lab of hosts in network namespaces made by the test (root only), for partition tests.
 * Each host has two links to the test's own (root) namespace:
 * - a mesh link, a veth whose outer end is on a bridge shared by every host: the hosts reach
 *   each other at their `meshIp`; `cut(i)` takes host i's outer end down (packets to and
 *   from it are dropped silently, as in a real partition) and `heal(i)` brings it back;
 * - a client link, a veth of its own (never cut): the test reaches the host at `clientIp`.
 * Every address is inside namespaces this lab made; nothing is routed anywhere else.
 */
export interface NetnsLab {
  readonly hosts: readonly LabHost[];
  cut(i: number): Promise<void>;
  heal(i: number): Promise<void>;
  /** Delete the namespaces, links and bridge (processes inside must be gone first). */
  destroy(): Promise<void>;
}

export interface LabHost {
  /** The namespace's name (for `ip netns exec`). */
  readonly ns: string;
  readonly meshIp: string;
  readonly clientIp: string;
}

async function ip(...args: string[]): Promise<void> {
  await exec("ip", args);
}

/** Why this machine cannot run a netns lab, or undefined when it can. */
export async function netnsProblem(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  const probe = `gsprobe${process.pid % 100_000}`;
  try {
    await ip("netns", "add", probe);
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message.split("\n")[0]}`;
  }
  await ip("netns", "del", probe).catch(() => undefined);
  return undefined;
}

/**
 * `n` hosts (at most 8). Names and addresses derive from the process id, so labs of
 * concurrent test runs do not collide.
 */
export async function createLab(n: number): Promise<NetnsLab> {
  const tag = `g${process.pid % 100_000}`;
  const k = process.pid % 250;
  const bridge = `${tag}br`;
  const hosts: LabHost[] = [];
  const made: string[] = [];
  const lab: NetnsLab = {
    hosts,
    cut: (i) => ip("link", "set", `${tag}m${i}`, "down"),
    heal: (i) => ip("link", "set", `${tag}m${i}`, "up"),
    async destroy() {
      for (const ns of made) await ip("netns", "del", ns).catch(() => undefined);
      await ip("link", "del", bridge).catch(() => undefined);
    },
  };
  try {
    await ip("link", "add", bridge, "type", "bridge");
    await ip("link", "set", bridge, "up");
    for (let i = 0; i < n; i++) {
      const ns = `${tag}n${i}`;
      await ip("netns", "add", ns);
      made.push(ns);
      const inNs = (...args: string[]) => ip("-n", ns, ...args);
      await inNs("link", "set", "lo", "up");
      // The mesh link: outer end on the bridge, inner end in the namespace.
      const meshIp = `10.213.${k}.${i + 1}`;
      await ip("link", "add", `${tag}m${i}`, "type", "veth", "peer", "name", `${tag}m${i}i`);
      await ip("link", "set", `${tag}m${i}i`, "netns", ns);
      await ip("link", "set", `${tag}m${i}`, "master", bridge);
      await ip("link", "set", `${tag}m${i}`, "up");
      await inNs("addr", "add", `${meshIp}/24`, "dev", `${tag}m${i}i`);
      await inNs("link", "set", `${tag}m${i}i`, "up");
      // The client link: a /30 between the test's namespace and this one.
      const base = 4 * i;
      const outer = `10.214.${k}.${base + 1}`;
      const clientIp = `10.214.${k}.${base + 2}`;
      await ip("link", "add", `${tag}c${i}`, "type", "veth", "peer", "name", `${tag}c${i}i`);
      await ip("link", "set", `${tag}c${i}i`, "netns", ns);
      await ip("addr", "add", `${outer}/30`, "dev", `${tag}c${i}`);
      await ip("link", "set", `${tag}c${i}`, "up");
      await inNs("addr", "add", `${clientIp}/30`, "dev", `${tag}c${i}i`);
      await inNs("link", "set", `${tag}c${i}i`, "up");
      hosts.push({ ns, meshIp, clientIp });
    }
  } catch (err) {
    await lab.destroy();
    throw err;
  }
  return lab;
}
