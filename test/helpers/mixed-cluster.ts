import { join } from "node:path";
import type { RunningNode } from "../../src/node/node.js";
import { freePorts } from "./cluster.js";
import { startTestNode } from "./node.js";
import {
  type NodeProcess,
  type NodeProcessOptions,
  type ProcessPeer,
  prepareNodeProcess,
} from "./node-process.js";
import type { TestPostgres } from "./postgres.js";

/**
 * Nodes that replicate to one another, each on its own PostgreSQL server: every node but
 * the last runs in this process (startTestNode); the last is a child process of the built
 * CLI, so a test can SIGKILL it and start it again (`startChild`) on the same spool
 * (`<dir>/spool-<id>`) and ports. Full reconcile every 2 s, joins retried every 300 ms.
 * The next start of the child is booted ahead (`prepareNodeProcess`): one idle process
 * waits beside it until the test's `killNodeProcesses`.
 */
export interface MixedCluster {
  /** gRPC endpoint of each node, in the order of `ids`. */
  readonly grpc: readonly string[];
  /** Start (or start again) the last node as a child process. */
  startChild(): Promise<NodeProcess>;
}

export async function startMixedCluster(opts: {
  ids: readonly string[];
  dir: string;
  servers: readonly TestPostgres[];
  cli: { main: string };
  /** The in-process nodes are pushed here as they start (for the caller's cleanup). */
  inProcess: RunningNode[];
  /** replication.leaseReapGrace of every node. */
  leaseReapGrace?: string;
}): Promise<MixedCluster> {
  const { ids, servers } = opts;
  const ports = (await freePorts(ids.length + 1)).map((p) => `127.0.0.1:${p}`);
  const grpc = ports.slice(0, ids.length);
  const childHttp = ports[ids.length] as string;
  const url = (i: number) => (servers[i] as TestPostgres).url;
  const peersOf = (i: number): ProcessPeer[] =>
    ids
      .map((id, j) => ({ id, grpc: grpc[j] as string, postgres: url(j) }))
      .filter((p) => p.id !== ids[i]);
  const grace = opts.leaseReapGrace;
  const last = ids.length - 1;
  for (let i = 0; i < last; i++) {
    opts.inProcess.push(
      await startTestNode({
        id: ids[i] as string,
        dir: opts.dir,
        postgresUrl: url(i),
        config: {
          grpc: { listen: grpc[i] },
          replication: {
            fullReconcileEvery: "2s",
            joinRetry: "300ms",
            ...(grace === undefined ? {} : { leaseReapGrace: grace }),
          },
          peers: peersOf(i),
        },
      }),
    );
  }
  const childId = ids[last] as string;
  const child: NodeProcessOptions = {
    main: opts.cli.main,
    id: childId,
    spoolDir: join(opts.dir, `spool-${childId}`),
    postgresUrl: url(last),
    grpc: grpc[last] as string,
    http: childHttp,
    peers: peersOf(last),
    ...(grace === undefined ? {} : { flags: { "replication.leaseReapGrace": grace } }),
  };
  // The next child boots while this one runs (tests restart it over and over).
  let next = prepareNodeProcess(child);
  return {
    grpc,
    async startChild() {
      const standby = next;
      next = prepareNodeProcess(child);
      return standby.start();
    },
  };
}
