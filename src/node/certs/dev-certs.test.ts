import { X509Certificate } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  type ConnectionOptions,
  connect,
  createServer,
  type Server,
  type TLSSocket,
} from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { useTempDir } from "../../../test/helpers/tmp.js";
import { CertsError, CertsErrorCode, type DevCerts, makeDevCerts } from "./index.js";

const dir = useTempDir("geospool-certs-");
let server: Server | undefined;
afterEach(async () => {
  const s = server;
  server = undefined;
  if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
});

/** A TLS echo server with the node's certificate that requires a client certificate from the CA. */
async function startMtlsServer(certs: DevCerts, node: string) {
  const pair = certs.servers[node]!;
  const clientErrors: Error[] = [];
  const s = createServer(
    {
      cert: await readFile(pair.cert),
      key: await readFile(pair.key),
      ca: await readFile(certs.caCert),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => {
      socket.on("error", () => {});
      socket.on("data", (data) => socket.end(`echo ${data}`));
    },
  );
  s.on("tlsClientError", (err) => clientErrors.push(err));
  server = s;
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const address = s.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { port: address.port, clientErrors };
}

type Outcome =
  | { kind: "reply"; text: string; authorized: boolean }
  | { kind: "refused"; error: string };

/** Connects, sends "hi", and reports the reply or the error. */
function tryClient(options: ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let text = "";
    let socket: TLSSocket | undefined;
    const done = (outcome: Outcome) => {
      socket?.destroy();
      resolve(outcome);
    };
    socket = connect(options, () => {
      socket?.write("hi");
    });
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      text += chunk;
    });
    socket.on("end", () =>
      text === ""
        ? done({ kind: "refused", error: "closed without a reply" })
        : done({ kind: "reply", text, authorized: socket?.authorized ?? false }),
    );
    socket.on("error", (err) => done({ kind: "refused", error: err.message }));
  });
}

describe("makeDevCerts", () => {
  it("makes a CA, node and client certificates that work for mutual TLS", async () => {
    const certs = await makeDevCerts({
      dir: dir.path,
      nodes: ["n1", "eu+2=b"],
      hosts: ["node-1.test"],
    });
    expect(certs.servers.n1).toEqual({
      cert: join(dir.path, "n1.crt"),
      key: join(dir.path, "n1.key"),
    });
    for (const key of [
      certs.caKey,
      certs.servers.n1!.key,
      certs.servers["eu+2=b"]!.key,
      certs.client.key,
    ]) {
      expect((await stat(key)).mode & 0o777, key).toBe(0o600);
    }

    const ca = new X509Certificate(await readFile(certs.caCert));
    const leaf = new X509Certificate(await readFile(certs.servers.n1!.cert));
    expect(ca.ca).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(leaf.checkIP("::1")).toBeDefined();
    expect(leaf.checkHost("localhost")).toBe("localhost");
    expect(leaf.checkHost("node-1.test")).toBe("node-1.test");
    expect(leaf.checkHost("elsewhere.test")).toBeUndefined();

    const { port, clientErrors } = await startMtlsServer(certs, "n1");
    const caPem = await readFile(certs.caCert);

    const withCert = await tryClient({
      host: "127.0.0.1",
      port,
      ca: caPem,
      cert: await readFile(certs.client.cert),
      key: await readFile(certs.client.key),
    });
    expect(withCert).toEqual({ kind: "reply", text: "echo hi", authorized: true });

    // A node certificate also authenticates as a client (nodes call their peers).
    const asPeer = await tryClient({
      host: "127.0.0.1",
      port,
      ca: caPem,
      cert: await readFile(certs.servers["eu+2=b"]!.cert),
      key: await readFile(certs.servers["eu+2=b"]!.key),
    });
    expect(asPeer.kind).toBe("reply");

    const withoutCert = await tryClient({ host: "127.0.0.1", port, ca: caPem });
    expect(withoutCert.kind).toBe("refused");
    expect(clientErrors.length).toBeGreaterThanOrEqual(1);

    // The server certificate does not verify against another CA.
    const other = await makeDevCerts({ dir: join(dir.path, "other"), nodes: [] });
    const wrongCa = await tryClient({
      host: "127.0.0.1",
      port,
      ca: await readFile(other.caCert),
      cert: await readFile(certs.client.cert),
      key: await readFile(certs.client.key),
    });
    expect(wrongCa.kind).toBe("refused");
  });

  it("reuses valid files and replaces what no longer fits", async () => {
    const first = await makeDevCerts({ dir: dir.path, nodes: ["n1"] });
    const caPem = await readFile(first.caCert, "utf8");
    const n1Pem = await readFile(first.servers.n1!.cert, "utf8");
    const clientPem = await readFile(first.client.cert, "utf8");

    const second = await makeDevCerts({ dir: dir.path, nodes: ["n1", "n2"] });
    expect((await readdir(dir.path)).sort()).toEqual([
      "ca.crt",
      "ca.key",
      "client.crt",
      "client.key",
      "n1.crt",
      "n1.key",
      "n2.crt",
      "n2.key",
    ]);
    expect(second).toMatchObject({ caCert: first.caCert, servers: { n1: first.servers.n1 } });
    expect(await readFile(second.caCert, "utf8")).toBe(caPem);
    expect(await readFile(second.servers.n1!.cert, "utf8")).toBe(n1Pem);
    expect(await readFile(second.client.cert, "utf8")).toBe(clientPem);

    // A new host means a new node certificate under the same CA.
    const third = await makeDevCerts({ dir: dir.path, nodes: ["n1"], hosts: ["10.1.2.3"] });
    expect(await readFile(third.caCert, "utf8")).toBe(caPem);
    const renewed = new X509Certificate(await readFile(third.servers.n1!.cert));
    expect(renewed.checkIP("10.1.2.3")).toBe("10.1.2.3");
  });

  it("refuses node ids that are not names, with a code", async () => {
    const err = await makeDevCerts({ dir: dir.path, nodes: ["../etc"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CertsError);
    expect((err as CertsError).code).toBe(CertsErrorCode.InvalidArgument);
    const missing = await makeDevCerts({
      dir: dir.path,
      nodes: ["n1"],
      openssl: join(dir.path, "no-openssl-here"),
    }).catch((e: unknown) => e);
    expect((missing as CertsError).code).toBe(CertsErrorCode.OpensslMissing);
  });
});
