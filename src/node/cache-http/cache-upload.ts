import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { CacheReader } from "../../cache/cache-reader.js";
import type { CacheWriter, RejectedUpload } from "../../cache/cache-writer.js";
import type { NarStaging, StagedNar } from "../../cache/nar-staging.js";
import { type Narinfo, NarinfoParseError, parseNarinfo } from "../../cache/narinfo.js";
import { parseCacheRequest } from "../../cache/request-path.js";
import type { CandidateTrust } from "../../cache/served-rule.js";
import { checkUpload, type UploadRules, type UploadVerdict } from "../../cache/upload-check.js";

/** Who may write: from the token in `Authorization` (Bearer, or Basic's password). */
export type WriteAccess =
  | { kind: "allowed"; who: string }
  | { kind: "unauthenticated" }
  | { kind: "forbidden"; who: string };

export interface CacheUploadOptions {
  reader: CacheReader;
  writer: CacheWriter;
  staging: NarStaging;
  rules: UploadRules;
  authorize(token: string | undefined): WriteAccess;
  /** Largest narinfo or listing accepted (bytes; default 1 MiB). */
  maxSmallBytes?: number;
  /** An upload that sends nothing for this long is cut off, leaving nothing (ms; default 60 s). */
  idleTimeoutMs?: number;
  logger: Logger;
  clock?: () => number;
}

/** The token a request carries: `Bearer <token>`, or the password of `Basic` (netrc). */
export function tokenOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer !== null) return bearer[1];
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (basic === null) return undefined;
  const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon < 0 ? undefined : decoded.slice(colon + 1);
}

/** Writes that newer Nix clients make and that this cache has no use for (answered 2xx). */
const DISCARDED =
  /^\/(log|realisations|build-trace-v2|debuginfo)\/[A-Za-z0-9+_=.!-]+(\/[A-Za-z0-9+_=.!-]+)?$/;

/**
 * The write side: `PUT` of nars, listings and narinfos as `nix copy --to http://node`
 * sends them (nar and listing first, narinfo last). A nar is staged and hashed as it
 * streams; the narinfo that names it is checked (`checkUpload`) and then stored with it,
 * or rejected and kept with its reason. Refusals are 4xx (401, 403, 400, 413), never 5xx:
 * Nix 2.8 retries a 5xx PUT and then hangs.
 */
export function cacheUploadHandler(options: CacheUploadOptions) {
  const log = options.logger.child({ component: "cache-upload" });
  const clock = options.clock ?? Date.now;
  const maxSmall = options.maxSmallBytes ?? 1024 * 1024;
  const listings = new Map<string, { bytes: Buffer; at: number }>();

  function reply(
    res: ServerResponse,
    status: number,
    text: string,
    headers: Record<string, string> = {},
  ): void {
    res.statusCode = status;
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.setHeader("content-type", "text/plain; charset=utf-8");
    res.setHeader("content-length", Buffer.byteLength(text));
    res.setHeader("cache-control", "no-store");
    res.end(text);
  }

  async function readSmall(req: IncomingMessage): Promise<Buffer | undefined> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxSmall) return undefined;
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  async function drain(req: IncomingMessage): Promise<void> {
    for await (const _ of req) {
      // discarded
    }
  }

  function tooLarge(res: ServerResponse, limit: number): void {
    reply(res, 413, `body larger than ${limit} bytes\n`, { connection: "close" });
  }

  async function narinfoPut(
    req: IncomingMessage,
    res: ServerResponse,
    hashPart: string,
    who: string,
  ): Promise<void> {
    const body = await readSmall(req);
    if (body === undefined) return tooLarge(res, maxSmall);
    const rejectWith = async (r: Omit<RejectedUpload, "hashPart" | "by" | "at" | "narinfo">) => {
      await options.writer.reject({ ...r, hashPart, by: who, at: clock(), narinfo: body });
      log.info({ hashPart, reason: r.reason, by: who }, "narinfo upload rejected");
      reply(res, 400, `rejected (${r.reason}): ${r.message}\n`);
    };
    let info: Narinfo;
    try {
      info = parseNarinfo(body);
    } catch (err) {
      if (!(err instanceof NarinfoParseError)) throw err;
      return rejectWith({ storePath: undefined, reason: "unparsable", message: err.message });
    }
    const storePath = info.fields.find((f) => f.key === "StorePath")?.value;
    if (info.storePath.hashPart !== hashPart) {
      return rejectWith({
        storePath,
        reason: "unparsable",
        message: `StorePath's hash part is not ${hashPart}`,
      });
    }
    await Promise.all(info.files.map((f) => options.staging.settled(f.url)));
    // Every file of the narinfo whose nar is here (Guix lists several) is checked; one
    // failure rejects the whole upload, and each accepted file becomes its own entry.
    const accepted: Array<{
      verdict: Extract<UploadVerdict, { kind: "accept" }>;
      staged: StagedNar | undefined;
      url: string;
    }> = [];
    const stagedHere = info.files
      .map((f) => options.staging.get(f.url))
      .filter((n) => n !== undefined);
    const discardAll = async () => {
      for (const n of stagedHere) await options.staging.discard(n.path);
    };
    for (const file of info.files) {
      const staged = options.staging.get(file.url);
      const facts = staged?.facts ?? (await options.writer.storedNarFacts(file.url));
      if (facts === undefined) continue;
      const sameCompression =
        staged === undefined || staged.compression === (file.compression ?? "bzip2");
      const usable = sameCompression ? facts : { ...facts, nar: undefined, narError: undefined };
      const verdict = checkUpload(info, file, usable, options.rules);
      if (verdict.kind === "reject") {
        await discardAll();
        return rejectWith({ storePath, reason: verdict.reason, message: verdict.message });
      }
      accepted.push({ verdict, staged, url: file.url });
    }
    if (accepted.length === 0) {
      return rejectWith({
        storePath,
        reason: "nar_missing",
        message: "none of its URLs names an uploaded nar (PUT the nar first)",
      });
    }
    const listing = listings.get(hashPart)?.bytes;
    listings.delete(hashPart);
    const outcomes: string[] = [];
    for (const { verdict, staged, url } of accepted) {
      const trust: CandidateTrust =
        verdict.trustedBy.length > 0
          ? "trusted"
          : verdict.signedByNode
            ? "node_signed"
            : "unsigned";
      const nar = staged === undefined ? undefined : options.staging.take(url);
      const outcome = await options.writer.commit({
        narinfo: info,
        served: verdict.served,
        nar,
        listing,
        trust,
        by: who,
        ...(accepted.length > 1 ? { files: accepted.map((a) => a.url) } : {}),
      });
      log.info(
        { hashPart, url, outcome, trust, checked: verdict.contentChecked, by: who },
        "narinfo upload accepted",
      );
      outcomes.push(outcome);
    }
    return reply(res, 200, `${outcomes.includes("stored") ? "stored" : "already_served"}\n`);
  }

  const idleMs = options.idleTimeoutMs ?? 60_000;

  /** Refuse an upload from its headers alone (Expect: 100-continue): true lets it go on. */
  function precheck(req: IncomingMessage, res: ServerResponse, maxNarBytes: number): boolean {
    if (req.method !== "PUT") return true;
    const access = options.authorize(tokenOf(req.headers.authorization));
    if (access.kind === "unauthenticated") {
      reply(res, 401, "credentials needed to write\n", {
        "www-authenticate": 'Basic realm="geospool cache"',
        connection: "close",
      });
      return false;
    }
    if (access.kind === "forbidden") {
      reply(res, 403, "not allowed to write to the cache\n", { connection: "close" });
      return false;
    }
    const length = Number(req.headers["content-length"] ?? Number.NaN);
    const path = (req.url ?? "").split("?")[0] ?? "";
    const limit = path.startsWith("/nar/") ? maxNarBytes : maxSmall;
    if (Number.isFinite(length) && length > limit) {
      tooLarge(res, limit);
      return false;
    }
    return true;
  }

  async function put(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawPath = (req.url ?? "").split("?")[0] ?? "";
    // A stalled body: end the connection; the reader of the body fails and cleans up.
    req.socket.setTimeout(idleMs, () => {
      if (req.complete) return;
      log.info({ path: rawPath, idleMs }, "upload stalled; connection closed");
      req.socket.destroy();
    });
    const access = options.authorize(tokenOf(req.headers.authorization));
    if (access.kind === "unauthenticated") {
      return reply(res, 401, "credentials needed to write\n", {
        "www-authenticate": 'Basic realm="geospool cache"',
        connection: "close",
      });
    }
    if (access.kind === "forbidden")
      return reply(res, 403, "not allowed to write to the cache\n", { connection: "close" });
    const request = parseCacheRequest(rawPath);
    switch (request.kind) {
      case "cache_info":
        await drain(req);
        return reply(res, 200, "ok\n");
      case "listing": {
        const body = await readSmall(req);
        if (body === undefined) return tooLarge(res, maxSmall);
        listings.set(request.hashPart, { bytes: body, at: clock() });
        return reply(res, 200, "ok\n");
      }
      case "nar": {
        const staged = await options.staging.put(request.path, req);
        if (staged.kind === "too_large") return tooLarge(res, staged.limit);
        return reply(res, 200, "ok\n");
      }
      case "narinfo":
        return narinfoPut(req, res, request.hashPart, access.who);
      case "bad":
        if (DISCARDED.test(rawPath)) {
          await drain(req);
          return reply(res, 200, "discarded\n");
        }
        return reply(res, rawPath.startsWith("/nar/") ? 400 : 404, `${request.reason}\n`, {
          connection: "close",
        });
    }
  }

  return Object.assign(put, { precheck });
}
