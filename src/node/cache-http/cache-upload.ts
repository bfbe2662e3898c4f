import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { CacheReader } from "../../cache/cache-reader.js";
import type { CacheWriter, RejectedUpload } from "../../cache/cache-writer.js";
import { completeNarFacts, type NarFacts } from "../../cache/nar-digest.js";
import type { NarStaging, StagedNar } from "../../cache/nar-staging.js";
import {
  type NarFile,
  type Narinfo,
  NarinfoParseError,
  parseNarinfo,
} from "../../cache/narinfo.js";
import { parseCacheRequest } from "../../cache/request-path.js";
import type { CandidateTrust } from "../../cache/served-rule.js";
import {
  checkNarinfoAlone,
  checkUpload,
  type UploadRules,
  type UploadVerdict,
} from "../../cache/upload-check.js";
import { type HeldNarinfo, HeldNarinfos } from "./held-narinfos.js";

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
  /**
   * A narinfo uploaded before its nar is held (202, not served) until the nar comes, then
   * checked and committed; past this it is rejected, `nar_missing` (ms; default 10 min).
   */
  narWaitMs?: number;
  /** Most bytes of narinfos held waiting for their nars at once (default 64 MiB). */
  maxHeldBytes?: number;
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
 * or rejected and kept with its reason. Refusals are 4xx (401, 403, 400, 409, 413), never 5xx:
 * Nix 2.8 retries a 5xx PUT and then hangs.
 */
export function cacheUploadHandler(options: CacheUploadOptions) {
  const log = options.logger.child({ component: "cache-upload" });
  const clock = options.clock ?? Date.now;
  const maxSmall = options.maxSmallBytes ?? 1024 * 1024;
  const listings = new Map<string, { bytes: Buffer; at: number }>();
  const narWaitMs = options.narWaitMs ?? 10 * 60_000;
  const heldNarinfos = new HeldNarinfos({
    waitMs: narWaitMs,
    maxBytes: options.maxHeldBytes ?? 64 * 1024 * 1024,
    onDue: (held) => {
      decide(held, false).catch((err: unknown) =>
        log.error({ err, hashPart: held.hashPart }, "held narinfo not decided"),
      );
    },
  });

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

  type Answer = { status: number; text: string };

  async function rejectWith(
    held: Omit<HeldNarinfo, "info" | "at">,
    r: Omit<RejectedUpload, "hashPart" | "by" | "at" | "narinfo">,
  ): Promise<Answer> {
    const { hashPart, who, body } = held;
    await options.writer.reject({ ...r, hashPart, by: who, at: clock(), narinfo: body });
    log.info({ hashPart, reason: r.reason, by: who }, "narinfo upload rejected");
    return { status: 400, text: `rejected (${r.reason}): ${r.message}\n` };
  }

  const storePathOf = (info: Narinfo) => info.fields.find((f) => f.key === "StorePath")?.value;

  /** Whether every nar the narinfo lists is here (staged or stored). */
  async function allNarsHere(info: Narinfo): Promise<boolean> {
    for (const f of info.files) {
      if (options.staging.get(f.url) !== undefined) continue;
      if ((await options.writer.storedNarFacts(f.url)) === undefined) return false;
    }
    return true;
  }

  /** A held narinfo whose nars may all be here now: decide it unless someone else has. */
  async function releaseIfReady(held: HeldNarinfo): Promise<Answer | undefined> {
    if (!(await allNarsHere(held.info))) return undefined;
    if (!heldNarinfos.take(held)) return undefined;
    return decide(held, false);
  }

  /**
   * Check the narinfo against the nars it names that are here and commit it, or reject it.
   * When none is here yet and `mayHold`, it is held until they come (202), for at most
   * `narWaitMs`.
   */
  async function decide(held: HeldNarinfo, mayHold: boolean): Promise<Answer> {
    const { info, hashPart, who } = held;
    const storePath = storePathOf(info);
    await Promise.all(info.files.map((f) => options.staging.settled(f.url)));
    // Every file of the narinfo whose nar is here (Guix lists several) is checked; one
    // failure rejects the whole upload, and each accepted file becomes its own entry.
    const here: Array<{ file: NarFile; staged: StagedNar | undefined; facts: NarFacts }> = [];
    for (const file of info.files) {
      const staged = options.staging.get(file.url);
      const facts = staged?.facts ?? (await options.writer.storedNarFacts(file.url));
      if (facts !== undefined) here.push({ file, staged, facts });
    }
    if (here.length === 0 && mayHold) {
      // What needs no nar is refused at once, rather than after holding it.
      const alone = checkNarinfoAlone(info, options.rules);
      if (alone.kind === "reject") {
        return rejectWith(held, { storePath, reason: alone.reason, message: alone.message });
      }
      const outcome = heldNarinfos.hold(held);
      if (outcome.kind === "full") {
        return rejectWith(held, {
          storePath,
          reason: "nar_missing",
          message: `its nar is not here and ${outcome.maxBytes} bytes of narinfos already wait for theirs`,
        });
      }
      if (outcome.kind === "replaced") {
        await rejectWith(outcome.previous, {
          storePath: storePathOf(outcome.previous.info),
          reason: "nar_missing",
          message: "another narinfo of this path was uploaded before its nar came",
        });
      }
      // A nar that finished while this was being looked at finds it held only from now on.
      void releaseIfReady(held).catch((err: unknown) =>
        log.error({ err, hashPart }, "held narinfo not stored"),
      );
      log.info({ hashPart, by: who, waitMs: narWaitMs }, "narinfo held until its nar comes");
      const urls = info.files.map((f) => f.url).join(", ");
      return {
        status: 202,
        text: `held: not served until its nar (${urls}) comes, within ${Math.round(narWaitMs / 1000)} s\n`,
      };
    }
    const accepted: Array<{
      verdict: Extract<UploadVerdict, { kind: "accept" }>;
      staged: StagedNar | undefined;
      url: string;
    }> = [];
    const discardAll = async () => {
      for (const n of here)
        if (n.staged !== undefined) await options.staging.discard(n.staged.path);
    };
    for (const { file, staged, facts } of here) {
      const sameCompression =
        staged === undefined || staged.compression === (file.compression ?? "bzip2");
      // zstd, xz, bzip2 and lzip are read now, from the staged file, no further than NarSize.
      const usable = !sameCompression
        ? { ...facts, nar: undefined, narError: undefined }
        : staged === undefined
          ? facts
          : await completeNarFacts(facts, staged.file, staged.compression, info.narSize);
      const verdict = checkUpload(info, file, usable, options.rules);
      if (verdict.kind === "reject") {
        await discardAll();
        return rejectWith(held, { storePath, reason: verdict.reason, message: verdict.message });
      }
      accepted.push({ verdict, staged, url: file.url });
    }
    if (accepted.length === 0) {
      return rejectWith(held, {
        storePath,
        reason: "nar_missing",
        message: `none of its URLs names a nar uploaded within ${Math.round(narWaitMs / 1000)} s (PUT the nar)`,
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
      if (typeof outcome === "object") {
        // A GC is removing a path it needs: a 4xx (never 5xx: Nix 2.8 retries a 5xx PUT and
        // hangs), nothing stored; the same upload succeeds once that GC is over.
        await discardAll();
        log.info({ hashPart, by: who, why: outcome.message }, "narinfo upload refused");
        return { status: 409, text: `refused: ${outcome.message}\n` };
      }
      log.info(
        { hashPart, url, outcome, trust, checked: verdict.contentChecked, by: who },
        "narinfo upload accepted",
      );
      outcomes.push(outcome);
    }
    return { status: 200, text: `${outcomes.includes("stored") ? "stored" : "already_served"}\n` };
  }

  async function narinfoPut(
    req: IncomingMessage,
    res: ServerResponse,
    hashPart: string,
    who: string,
  ): Promise<void> {
    const body = await readSmall(req);
    if (body === undefined) return tooLarge(res, maxSmall);
    const send = (a: Answer) => reply(res, a.status, a.text);
    const upload = { hashPart, who, body };
    let info: Narinfo;
    try {
      info = parseNarinfo(body);
    } catch (err) {
      if (!(err instanceof NarinfoParseError)) throw err;
      return send(
        await rejectWith(upload, {
          storePath: undefined,
          reason: "unparsable",
          message: err.message,
        }),
      );
    }
    const storePath = storePathOf(info);
    if (info.storePath.hashPart !== hashPart) {
      return send(
        await rejectWith(upload, {
          storePath,
          reason: "unparsable",
          message: `StorePath's hash part is not ${hashPart}`,
        }),
      );
    }
    return send(await decide({ ...upload, info, at: clock() }, true));
  }

  /** A nar has been staged: decide the held narinfos that waited for it (and have all theirs). */
  async function narArrived(url: string): Promise<string[]> {
    const lines: string[] = [];
    for (const held of heldNarinfos.waitingFor(url)) {
      try {
        const answer = await releaseIfReady(held);
        if (answer !== undefined) lines.push(`${held.hashPart}.narinfo: ${answer.text}`);
      } catch (err) {
        log.error({ err, hashPart: held.hashPart }, "held narinfo not stored");
      }
    }
    return lines;
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
    // A stalled body: end the connection; the reader of the body fails and cleans up. The
    // timer runs only while the body is read: left on the socket, it fired while a slow
    // commit (or the next pipelined request) kept the socket quiet, and node:http destroys a
    // socket whose timeout no request or response handles, so the answer was never sent.
    const socket = req.socket;
    const onIdle = () => {
      if (req.complete) return;
      log.info({ path: rawPath, idleMs }, "upload stalled; connection closed");
      socket.destroy();
    };
    const bodyDone = () => {
      socket.off("timeout", onIdle);
      socket.setTimeout(0);
    };
    socket.setTimeout(idleMs);
    socket.on("timeout", onIdle);
    req.once("end", bodyDone);
    res.once("close", bodyDone);
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
        const decided = await narArrived(request.path);
        return reply(res, 200, ["ok\n", ...decided].join(""));
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

  /**
   * Drop listings (`.ls` PUTs) staged longer than `maxAgeMs` ago whose narinfo never came,
   * as staged nars are (`NarStaging.sweep`); returns their hash parts.
   */
  function sweepListings(maxAgeMs: number): string[] {
    const now = clock();
    const dropped: string[] = [];
    for (const [hashPart, staged] of listings) {
      if (now - staged.at > maxAgeMs) {
        listings.delete(hashPart);
        dropped.push(hashPart);
      }
    }
    return dropped;
  }

  /** Stop holding narinfos: each still waiting is rejected (its nar never came). */
  async function stop(): Promise<void> {
    for (const held of heldNarinfos.takeAll()) {
      await rejectWith(held, {
        storePath: storePathOf(held.info),
        reason: "nar_missing",
        message: "the node stopped before its nar came",
      }).catch((err: unknown) => log.error({ err, hashPart: held.hashPart }, "held narinfo lost"));
    }
  }

  return Object.assign(put, {
    precheck,
    stop,
    sweepListings,
    /** Listings staged now (waiting for their narinfo). */
    stagedListings: () => listings.size,
  });
}
