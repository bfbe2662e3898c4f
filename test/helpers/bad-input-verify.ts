import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { NodeSpool } from "../../src/node/service/spool-service.js";
import type { geospool } from "../../src/proto/generated/spool.js";
import { Monitor } from "../../src/spool/index.js";
import { type Model, QUEUES } from "./bad-input-model.js";
import type { RawSpool } from "./grpc-raw.js";

/** fsck until it finds nothing (expired leases take a reaper pass to go back); its last findings. */
export async function fsckSettles(spool: NodeSpool, withinMs: number): Promise<unknown[]> {
  const monitor = new Monitor(spool);
  const deadline = Date.now() + withinMs;
  for (;;) {
    const problems = await monitor.fsck();
    if (problems.length === 0 || Date.now() > deadline) return problems;
    await sleep(250);
  }
}

/** Every entry of every queue, waiting or checked out, paging with the server's tokens. */
async function everything(raw: RawSpool): Promise<geospool.v1.IEntry[]> {
  const all: geospool.v1.IEntry[] = [];
  for (const queue of QUEUES) {
    for (const checkedOut of [false, true]) {
      let pageToken = "";
      do {
        const page = await raw.unary<geospool.v1.ListResponse>("list", {
          queue,
          checkedOut,
          pageSize: 7,
          pageToken,
        });
        if (!page.ok) throw new Error(`List ${queue} failed: ${page.details}`);
        all.push(...page.value.entries);
        pageToken = page.value.nextPageToken;
      } while (pageToken !== "");
    }
  }
  return all;
}

/**
 * What the node holds is exactly what was acknowledged: every acknowledged entry, in a queue
 * it may be in, with its data byte for byte and its last metadata; nothing removed and
 * nothing else (no entry, registry file, data file or temporary file left by a refusal).
 */
export async function verifyAgainstModel(
  raw: RawSpool,
  model: Model,
  spoolDir: string,
): Promise<string[]> {
  const problems: string[] = [];
  const listed = await everything(raw);
  const names = listed.map((e) => e.name as string);
  if (new Set(names).size !== names.length) problems.push(`an entry is listed twice: ${names}`);
  for (const got of listed) {
    const e = model.entries.get(got.name as string);
    if (!e) {
      problems.push(
        `${got.name} is on the node but was ${model.removed.has(got.name as string) ? "removed" : "never acknowledged"}`,
      );
      continue;
    }
    if (!model.possibleQueues(e).includes(got.queue as string)) {
      problems.push(`${e.name} is in ${got.queue}, expected ${model.possibleQueues(e)}`);
    }
    if (!Buffer.from(got.metadata ?? []).equals(e.metadata)) problems.push(`${e.name}: metadata`);
  }
  for (const e of model.entries.values()) {
    if (!names.includes(e.name)) {
      problems.push(`${e.name} (acknowledged in ${e.queue}) is gone`);
      continue;
    }
    const read = await raw.readData({ name: e.name, offset: 0 });
    if (!read.ok) {
      problems.push(`${e.name}: ReadData ${read.code} ${read.details}`);
      continue;
    }
    const data = Buffer.concat(read.value.map((p) => p.chunk));
    if (!data.equals(e.data))
      problems.push(`${e.name}: data differs (${data.length}/${e.data.length} bytes)`);
    if (read.value.at(-1)?.sha256 !== e.sha256) problems.push(`${e.name}: sha256 differs`);
  }
  const count = async (sub: string) => (await readdir(join(spoolDir, sub))).length;
  const size = model.entries.size;
  for (const [sub, want] of [
    [".registry", size],
    [".data", size],
    [".tmp", 0],
  ] as const) {
    const n = await count(sub);
    if (n !== want) problems.push(`${sub} holds ${n} files; expected ${want}`);
  }
  return problems;
}
