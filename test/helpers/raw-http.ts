import { connect } from "node:net";

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Send `requests` (raw request heads, written at once: pipelined on one connection) and
 * read the responses in order. Bodies are read by Content-Length (HEAD, 304: none). The
 * last request should carry `Connection: close`.
 */
export function rawHttp(
  port: number,
  requests: (string | Buffer)[],
  heads: boolean[] = [],
): Promise<RawResponse[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", reject);
    socket.on("end", () => {
      try {
        resolve(parseResponses(Buffer.concat(chunks), heads));
      } catch (err) {
        reject(err);
      }
    });
    socket.write(
      Buffer.concat(requests.map((r) => (typeof r === "string" ? Buffer.from(r, "latin1") : r))),
    );
  });
}

function parseResponses(data: Buffer, heads: boolean[]): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf("\r\n\r\n", at);
    if (end < 0) throw new Error(`truncated response head: ${data.subarray(at).toString()}`);
    const [statusLine, ...lines] = data.subarray(at, end).toString("latin1").split("\r\n");
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const colon = l.indexOf(":");
      headers[l.slice(0, colon).toLowerCase()] = l.slice(colon + 1).trim();
    }
    const status = Number(statusLine!.split(" ")[1]);
    const noBody = heads[out.length] === true || status === 304 || status === 204;
    const length = noBody ? 0 : Number(headers["content-length"] ?? 0);
    out.push({ status, headers, body: data.subarray(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return out;
}

export function get(
  path: string,
  extra: Record<string, string> = {},
  method = "GET",
  close = true,
): string {
  const lines = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1"];
  for (const [k, v] of Object.entries(extra)) lines.push(`${k}: ${v}`);
  if (close) lines.push("Connection: close");
  return `${lines.join("\r\n")}\r\n\r\n`;
}

/**
 * A raw `PUT` of `body`, with `Authorization: Bearer <token>` unless `token` is null, and
 * `Connection: close` when `close`.
 */
export function put(
  path: string,
  body: Buffer | string,
  token: string | null,
  close = false,
): Buffer {
  const auth =
    (token === null ? "" : `Authorization: Bearer ${token}\r\n`) +
    (close ? "Connection: close\r\n" : "");
  const bytes = typeof body === "string" ? Buffer.from(body) : body;
  const head = `PUT ${path} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${bytes.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, "latin1"), bytes]);
}
