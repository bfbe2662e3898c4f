import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP forwarder on 127.0.0.1 in front of `target` (`host:port`), for cutting a link in a
 * test: `cut()` destroys every connection and refuses new ones until `heal()`; with
 * `cutAfterBytes`, the link is cut by itself once that many bytes went from the target to
 * the client (a transfer cut mid-way).
 */
export interface TcpProxy {
  /** `127.0.0.1:port` to give the client instead of the target. */
  readonly endpoint: string;
  /** Bytes forwarded from the target to clients so far. */
  readonly downstreamBytes: number;
  readonly isCut: boolean;
  /** Cut once `bytes` more bytes went to clients (0: at once). */
  cutAfterBytes(bytes: number): void;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const [host, portText] = splitHostPort(target);
  const sockets = new Set<Socket>();
  let cutAt: number | undefined;
  let down = 0;
  let isCut = false;
  const cut = () => {
    isCut = true;
    cutAt = undefined;
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  const server: Server = createServer((client) => {
    if (isCut) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host, port: Number(portText) });
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d: Buffer) => {
      if (isCut) return;
      if (cutAt !== undefined && down + d.length >= cutAt) {
        client.write(d.subarray(0, Math.max(0, cutAt - down)));
        down = cutAt;
        cut();
        return;
      }
      down += d.length;
      client.write(d);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `127.0.0.1:${port}`,
    get downstreamBytes() {
      return down;
    },
    get isCut() {
      return isCut;
    },
    cutAfterBytes(bytes) {
      if (bytes <= 0) cut();
      else cutAt = down + bytes;
    },
    cut,
    heal() {
      isCut = false;
    },
    async close() {
      cut();
      await new Promise((r) => server.close(r));
    },
  };
}

function splitHostPort(endpoint: string): [string, string] {
  const i = endpoint.lastIndexOf(":");
  if (i < 0) throw new Error(`expected host:port, got ${JSON.stringify(endpoint)}`);
  return [endpoint.slice(0, i), endpoint.slice(i + 1)];
}
