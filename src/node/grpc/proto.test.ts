// The gRPC contract end to end: a real grpc-js server on 127.0.0.1 with the generated
// service definition, reflection and health, called with the typed client and with an
// independent client (`buf curl`, which learns the schema through reflection).

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { geospool } from "../../proto/generated/spool.js";
import {
  SpoolClient,
  type SpoolServiceHandlers,
  spoolServiceDefinition,
} from "../../proto/service-definition.js";
import {
  addHealth,
  addReflection,
  type HealthImplementation,
  setServingStatus,
} from "./reflection.js";

const run = promisify(execFile);
const BUF = fileURLToPath(new URL("../../../node_modules/.bin/buf", import.meta.url));

const BIG = 2 ** 40 + 3; // a uint64 above 2^32, to check it arrives as a plain number
const ENQUEUED_AT = 1_700_000_000;
const CHUNKS = ["abc", "def", "ghi"];
const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

const handlers: Pick<SpoolServiceHandlers, "stat" | "readData" | "enqueue"> = {
  stat: (call, callback) => {
    if (call.request.name !== "n1") {
      callback({ code: grpc.status.NOT_FOUND, details: `no entry ${call.request.name}` });
      return;
    }
    callback(null, {
      entry: {
        name: "n1",
        queue: call.request.queue || "default",
        metadata: Buffer.from('{"k":1}'),
        attempts: 2,
        dataSize: BIG,
        dataSha256: "ab".repeat(32),
        enqueuedAt: { seconds: ENQUEUED_AT, nanos: 0 },
      },
      state: geospool.v1.EntryState.ENTRY_STATE_QUEUED,
    });
  },
  readData: (call) => {
    const whole = call.request.offset === 0 && call.request.limit == null;
    let offset = call.request.offset;
    CHUNKS.forEach((chunk, i) => {
      const last = i === CHUNKS.length - 1;
      call.write({
        offset,
        chunk: Buffer.from(chunk),
        sha256: last && whole ? sha256(CHUNKS.join("")) : "",
      });
      offset += chunk.length;
    });
    call.end();
  },
  enqueue: (call, callback) => {
    let header: geospool.v1.EnqueueHeader.$Properties | undefined;
    const data: Buffer[] = [];
    let protocolError = "";
    call.on("data", (msg: geospool.v1.EnqueueRequest) => {
      if (msg.message === "header" && header === undefined) header = msg.header ?? {};
      else if (msg.message === "chunk" && header !== undefined) data.push(Buffer.from(msg.chunk!));
      else protocolError ||= "the first message must be the header, and only the first";
    });
    call.on("end", () => {
      if (protocolError || header === undefined) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: protocolError || "no header" });
        return;
      }
      const body = Buffer.concat(data);
      if (header.dataSize != null && header.dataSize !== body.length) {
        callback({ code: grpc.status.DATA_LOSS, details: "data size mismatch" });
        return;
      }
      callback(null, {
        entry: {
          name: "e1",
          queue: header.queue ?? "",
          metadata: header.metadata ?? Buffer.alloc(0),
          dataSize: body.length,
          dataSha256: sha256(body),
          enqueuedAt: { seconds: ENQUEUED_AT },
        },
        deduplicated: header.idempotencyKey === "dup",
      });
    });
  },
};

let server: grpc.Server;
let health: HealthImplementation;
let client: InstanceType<typeof SpoolClient>;
let base: string;

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(spoolServiceDefinition, handlers);
  addReflection(server);
  health = addHealth(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  base = `http://127.0.0.1:${port}`;
  client = new SpoolClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

afterAll(() => {
  client?.close();
  server?.forceShutdown();
});

/** Runs `buf curl` over gRPC (h2c) against the test server; returns exit code and output. */
async function bufCurl(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      BUF,
      ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args],
      { timeout: 30_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof e.code === "number" ? e.code : -1,
      stdout: e.stdout ?? "",
      stderr: e.stderr ?? "",
    };
  }
}

/** Parses buf curl's output: pretty-printed JSON documents, one after another. */
function jsonDocuments(text: string): unknown[] {
  const trimmed = text.trim();
  return trimmed === "" ? [] : trimmed.split(/\n(?=\{)/).map((doc) => JSON.parse(doc));
}

describe("typed client", () => {
  it("unary Stat: decoded message, uint64 as number, unset message field is null", async () => {
    const res = await new Promise<geospool.v1.StatResponse>((resolve, reject) =>
      client.stat({ name: "n1", queue: "q" }, (err, value) =>
        err ? reject(err) : resolve(value!),
      ),
    );
    expect(res.state).toBe(geospool.v1.EntryState.ENTRY_STATE_QUEUED);
    expect(res.entry?.name).toBe("n1");
    expect(res.entry?.queue).toBe("q");
    expect(res.entry?.dataSize).toBe(BIG);
    expect(typeof res.entry?.dataSize).toBe("number");
    expect(res.entry?.enqueuedAt?.seconds).toBe(ENQUEUED_AT);
    expect(res.entry?.leaseUntil ?? null).toBeNull();
    expect(Buffer.from(res.entry!.metadata!).toString()).toBe('{"k":1}');
  });

  it("unary errors keep their status code", async () => {
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.stat({ name: "missing" }, (e) => resolve(e)),
    );
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
  });

  it("an RPC the server does not implement is UNIMPLEMENTED", async () => {
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.dequeue({ queue: "q" }, (e) => resolve(e)),
    );
    expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("server streaming ReadData: chunks in order, optional limit has presence", async () => {
    const read = async (req: geospool.v1.ReadDataRequest.$Properties) => {
      const out: geospool.v1.ReadDataResponse[] = [];
      for await (const msg of client.readData(req)) out.push(msg as geospool.v1.ReadDataResponse);
      return out;
    };
    const all = await read({ name: "n1" });
    expect(all.map((m) => Buffer.from(m.chunk).toString())).toEqual(CHUNKS);
    expect(all.map((m) => m.offset)).toEqual([0, 3, 6]);
    expect(all.map((m) => m.sha256)).toEqual(["", "", sha256("abcdefghi")]);
    const limited = await read({ name: "n1", offset: 0, limit: 0 });
    expect(limited.map((m) => m.sha256)).toEqual(["", "", ""]);
  });

  it("client streaming Enqueue: header then chunks; optional data_size is checked", async () => {
    const enqueue = (messages: geospool.v1.EnqueueRequest.$Properties[]) =>
      new Promise<{ err: grpc.ServiceError | null; res?: geospool.v1.EnqueueResponse }>(
        (resolve) => {
          const call = client.enqueue((err, res) => resolve({ err, res }));
          for (const m of messages) call.write(m);
          call.end();
        },
      );
    const header = { queue: "q", metadata: Buffer.from("{}"), idempotencyKey: "dup" };
    const ok = await enqueue([
      { header: { ...header, dataSize: 6 } },
      { chunk: Buffer.from("abc") },
      { chunk: Buffer.from("def") },
    ]);
    expect(ok.err).toBeNull();
    expect(ok.res?.entry?.dataSize).toBe(6);
    expect(ok.res?.entry?.dataSha256).toBe(sha256("abcdef"));
    expect(ok.res?.deduplicated).toBe(true);
    const zero = await enqueue([
      { header: { ...header, dataSize: 0 } },
      { chunk: Buffer.from("x") },
    ]);
    expect(zero.err?.code).toBe(grpc.status.DATA_LOSS);
    const headerless = await enqueue([{ chunk: Buffer.from("x") }]);
    expect(headerless.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe("independent client: buf curl through server reflection", () => {
  it("lists the Spool and Health services and every Spool method", async () => {
    const services = await bufCurl("--list-services", base);
    expect(services.code, services.stderr).toBe(0);
    expect(services.stdout.split("\n").filter(Boolean).sort()).toEqual([
      "geospool.v1.Spool",
      "grpc.health.v1.Health",
    ]);
    const methods = await bufCurl("--list-methods", base);
    expect(methods.code, methods.stderr).toBe(0);
    const spoolMethods = methods.stdout
      .split("\n")
      .filter((l) => l.startsWith("geospool.v1.Spool/"));
    expect(spoolMethods.sort()).toEqual(
      [
        "ClusterStatus",
        "Complete",
        "Dequeue",
        "Enqueue",
        "EnqueueBatch",
        "ExtendLease",
        "List",
        "ReadData",
        "Release",
        "Session",
        "Stat",
        "Watch",
      ].map((m) => `geospool.v1.Spool/${m}`),
    );
    expect(methods.stdout).toContain("grpc.health.v1.Health/Check");
  });

  it("calls Stat with JSON and gets the proto3 JSON mapping back", async () => {
    const res = await bufCurl("-d", '{"name":"n1","queue":"q"}', `${base}/geospool.v1.Spool/Stat`);
    expect(res.code, res.stderr).toBe(0);
    expect(jsonDocuments(res.stdout)).toEqual([
      {
        entry: {
          name: "n1",
          queue: "q",
          metadata: Buffer.from('{"k":1}').toString("base64"),
          attempts: 2,
          dataSize: String(BIG),
          dataSha256: "ab".repeat(32),
          enqueuedAt: new Date(ENQUEUED_AT * 1000).toISOString().replace(".000Z", "Z"),
        },
        state: "ENTRY_STATE_QUEUED",
      },
    ]);
  });

  it("sees gRPC status codes", async () => {
    const res = await bufCurl("-d", '{"name":"missing"}', `${base}/geospool.v1.Spool/Stat`);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain("not_found");
  });

  it("streams ReadData", async () => {
    const res = await bufCurl("-d", '{"name":"n1"}', `${base}/geospool.v1.Spool/ReadData`);
    expect(res.code, res.stderr).toBe(0);
    const docs = jsonDocuments(res.stdout) as { offset?: string; chunk: string; sha256?: string }[];
    expect(docs.map((d) => Buffer.from(d.chunk, "base64").toString())).toEqual(CHUNKS);
    expect(docs.map((d) => d.offset ?? "0")).toEqual(["0", "3", "6"]);
    expect(docs.at(-1)?.sha256).toBe(sha256("abcdefghi"));
  });

  it("checks health, following the status the daemon sets", async () => {
    const check = async (service: string) => {
      const res = await bufCurl(
        "-d",
        JSON.stringify({ service }),
        `${base}/grpc.health.v1.Health/Check`,
      );
      expect(res.code, res.stderr).toBe(0);
      return jsonDocuments(res.stdout);
    };
    expect(await check("geospool.v1.Spool")).toEqual([{ status: "NOT_SERVING" }]);
    setServingStatus(health, "SERVING");
    expect(await check("geospool.v1.Spool")).toEqual([{ status: "SERVING" }]);
    expect(await check("")).toEqual([{ status: "SERVING" }]);
  });
});
