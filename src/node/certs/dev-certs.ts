import { execFile } from "node:child_process";
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { nameProblem } from "../../spool/index.js";

/**
 * Development certificates, made with the `openssl` command: a local CA; per node a
 * certificate for 127.0.0.1, ::1, localhost and any extra hosts, usable for server and
 * client authentication (nodes are each other's gRPC clients); and one client certificate
 * for tools. EC P-256 keys, written mode 0600.
 *
 *     <dir>/ca.crt, ca.key            the CA (10 years)
 *     <dir>/<node>.crt, <node>.key    per node (825 days)
 *     <dir>/client.crt, client.key    a client certificate (825 days)
 *
 * Idempotent: an existing file pair is kept while it is still valid for 30 days, matches
 * its key, is signed by the CA and covers the hosts asked for; otherwise it is made anew
 * (and a new CA means new certificates for everyone). Not for production.
 */
export interface DevCerts {
  dir: string;
  caCert: string;
  caKey: string;
  servers: Record<string, CertPair>;
  client: CertPair;
}

export interface CertPair {
  cert: string;
  key: string;
}

export interface MakeDevCertsOptions {
  dir: string;
  /** Node ids (names: they become file names). */
  nodes: readonly string[];
  /** Extra host names or IP addresses for every node certificate. */
  hosts?: readonly string[];
  /** The openssl executable. Default "openssl" (found on PATH). */
  openssl?: string;
}

export const CertsErrorCode = {
  /** The openssl command is not installed. */
  OpensslMissing: "openssl_missing",
  /** openssl exited with an error. */
  OpensslFailed: "openssl_failed",
  /** A node id or host that cannot be used. */
  InvalidArgument: "invalid_argument",
} as const;
export type CertsErrorCode = (typeof CertsErrorCode)[keyof typeof CertsErrorCode];

export class CertsError extends Error {
  readonly code: CertsErrorCode;
  constructor(code: CertsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CertsError";
    this.code = code;
  }
}

export const DEFAULT_HOSTS = ["127.0.0.1", "::1", "localhost"] as const;
const CA_DAYS = 3650;
const LEAF_DAYS = 825;
const RENEW_BEFORE_MS = 30 * 86_400_000;
const HOST_NAME =
  /^[A-Za-z0-9*]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

export async function makeDevCerts(options: MakeDevCertsOptions): Promise<DevCerts> {
  const openssl = options.openssl ?? "openssl";
  for (const node of options.nodes) {
    const problem = nameProblem(node);
    if (problem !== undefined || node === "ca" || node === "client") {
      throw new CertsError(
        CertsErrorCode.InvalidArgument,
        `certs: invalid node id ${JSON.stringify(node)}: ${problem ?? "reserved file name"}`,
      );
    }
  }
  const hosts = [...new Set([...DEFAULT_HOSTS, ...(options.hosts ?? [])])];
  for (const host of hosts) {
    if (isIP(host) === 0 && !HOST_NAME.test(host)) {
      throw new CertsError(
        CertsErrorCode.InvalidArgument,
        `certs: invalid host ${JSON.stringify(host)}`,
      );
    }
  }
  await checkOpenssl(openssl);
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  const dir = options.dir;
  const result: DevCerts = {
    dir,
    caCert: join(dir, "ca.crt"),
    caKey: join(dir, "ca.key"),
    servers: {},
    client: { cert: join(dir, "client.crt"), key: join(dir, "client.key") },
  };

  const conf = join(dir, `.openssl-${randomBytes(6).toString("hex")}.cnf`);
  try {
    let ca = await validCa(result.caCert, result.caKey);
    if (ca === undefined) {
      await writeFile(conf, opensslConfig([]));
      await makeCa(openssl, conf, result.caCert, result.caKey);
      ca = await validCa(result.caCert, result.caKey);
      if (ca === undefined) {
        throw new CertsError(CertsErrorCode.OpensslFailed, "certs: openssl made an unusable CA");
      }
    }
    for (const node of options.nodes) {
      const pair = { cert: join(dir, `${node}.crt`), key: join(dir, `${node}.key`) };
      result.servers[node] = pair;
      if (!(await validLeaf(pair, ca, hosts))) {
        await writeFile(conf, opensslConfig(hosts));
        await makeLeaf(openssl, conf, "server_ext", `geospool node ${node}`, pair, result);
      }
    }
    if (!(await validLeaf(result.client, ca, []))) {
      await writeFile(conf, opensslConfig(hosts));
      await makeLeaf(openssl, conf, "client_ext", "geospool dev client", result.client, result);
    }
  } finally {
    await rm(conf, { force: true });
  }
  return result;
}

async function checkOpenssl(openssl: string): Promise<void> {
  try {
    await run(openssl, ["version"]);
  } catch (err) {
    if ((err as { cause?: { code?: unknown } }).cause?.code === "ENOENT") {
      throw new CertsError(
        CertsErrorCode.OpensslMissing,
        `certs: ${openssl} not found; install it (Debian: apt-get install openssl)`,
        { cause: err },
      );
    }
    throw err;
  }
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err === null) return resolve(stdout);
      const detail = String(stderr).trim().split("\n").slice(-2).join(" / ") || err.message;
      reject(
        new CertsError(
          CertsErrorCode.OpensslFailed,
          `certs: ${file} ${args[0]} failed: ${detail}`,
          {
            cause: err,
          },
        ),
      );
    });
  });
}

function opensslConfig(hosts: readonly string[]): string {
  const alt = hosts.map((host, i) =>
    isIP(host) === 0 ? `DNS.${i} = ${host}` : `IP.${i} = ${host}`,
  );
  return [
    "[req]",
    "distinguished_name = dn",
    "prompt = no",
    "[dn]",
    "CN = geospool",
    "[ca_ext]",
    "basicConstraints = critical, CA:TRUE, pathlen:0",
    "keyUsage = critical, keyCertSign, cRLSign",
    "subjectKeyIdentifier = hash",
    "[server_ext]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature",
    "extendedKeyUsage = serverAuth, clientAuth",
    "subjectKeyIdentifier = hash",
    "authorityKeyIdentifier = keyid",
    ...(alt.length > 0 ? ["subjectAltName = @alt"] : []),
    "[client_ext]",
    "basicConstraints = critical, CA:FALSE",
    "keyUsage = critical, digitalSignature",
    "extendedKeyUsage = clientAuth",
    "subjectKeyIdentifier = hash",
    "authorityKeyIdentifier = keyid",
    ...(alt.length > 0 ? ["[alt]", ...alt] : []),
    "",
  ].join("\n");
}

/** `/CN=<value>` with the characters openssl's -subj treats specially escaped. */
function subject(commonName: string): string {
  return `/CN=${commonName.replace(/[\\/+=,]/g, (c) => `\\${c}`)}`;
}

function tmpName(path: string): string {
  return `${path}.tmp-${randomBytes(6).toString("hex")}`;
}

async function makeCa(openssl: string, conf: string, certPath: string, keyPath: string) {
  const key = tmpName(keyPath);
  const cert = tmpName(certPath);
  try {
    await run(openssl, [
      "req",
      "-x509",
      "-new",
      "-config",
      conf,
      "-extensions",
      "ca_ext",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      String(CA_DAYS),
      "-subj",
      subject("geospool dev CA"),
    ]);
    await chmod(key, 0o600);
    await rename(key, keyPath);
    await rename(cert, certPath);
  } finally {
    await rm(key, { force: true });
    await rm(cert, { force: true });
  }
}

async function makeLeaf(
  openssl: string,
  conf: string,
  extensions: "server_ext" | "client_ext",
  commonName: string,
  pair: CertPair,
  ca: DevCerts,
) {
  const key = tmpName(pair.key);
  const csr = tmpName(`${pair.cert}.csr`);
  const cert = tmpName(pair.cert);
  try {
    await run(openssl, [
      "genpkey",
      "-algorithm",
      "EC",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-out",
      key,
    ]);
    await chmod(key, 0o600);
    await run(openssl, [
      "req",
      "-new",
      "-config",
      conf,
      "-key",
      key,
      "-subj",
      subject(commonName),
      "-out",
      csr,
    ]);
    await run(openssl, [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca.caCert,
      "-CAkey",
      ca.caKey,
      "-set_serial",
      `0x${randomBytes(16)
        .toString("hex")
        .replace(/^[89a-f]/, "1")}`,
      "-days",
      String(LEAF_DAYS),
      "-sha256",
      "-extfile",
      conf,
      "-extensions",
      extensions,
      "-out",
      cert,
    ]);
    await rename(key, pair.key);
    await rename(cert, pair.cert);
  } finally {
    for (const file of [key, csr, cert]) await rm(file, { force: true });
  }
}

async function readCert(path: string): Promise<X509Certificate | undefined> {
  try {
    return new X509Certificate(await readFile(path));
  } catch {
    return undefined;
  }
}

async function matchesKey(cert: X509Certificate, keyPath: string): Promise<boolean> {
  try {
    return cert.checkPrivateKey(createPrivateKey(await readFile(keyPath)));
  } catch {
    return false;
  }
}

function fresh(cert: X509Certificate): boolean {
  return Date.parse(cert.validTo) - Date.now() > RENEW_BEFORE_MS;
}

async function validCa(certPath: string, keyPath: string): Promise<X509Certificate | undefined> {
  const cert = await readCert(certPath);
  if (cert === undefined || !cert.ca || !fresh(cert) || !(await matchesKey(cert, keyPath))) {
    return undefined;
  }
  return cert;
}

async function validLeaf(pair: CertPair, ca: X509Certificate, hosts: readonly string[]) {
  const cert = await readCert(pair.cert);
  if (cert === undefined || !fresh(cert) || !cert.checkIssued(ca)) return false;
  if (!cert.verify(ca.publicKey) || !(await matchesKey(cert, pair.key))) return false;
  return hosts.every((host) =>
    isIP(host) === 0 ? cert.checkHost(host) !== undefined : cert.checkIP(host) !== undefined,
  );
}
