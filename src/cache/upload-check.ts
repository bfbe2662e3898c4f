import { checkGuixNarinfo, type GuixPublicKey } from "./guix-signature.js";
import { formatHash, hashEquals } from "./hash.js";
import type { NarFacts } from "./nar-digest.js";
import type { NarFile, Narinfo } from "./narinfo.js";
import { addSigLine } from "./narinfo-build.js";
import type { NixPublicKey, NixSecretKey } from "./nix-key.js";
import { checkNarinfoSignatures, signNarinfo } from "./nix-signature.js";

/**
 * What a node demands of an uploaded narinfo's signatures:
 * - `require`: at least one signature by a trusted key (Nix `Sig:` or Guix `Signature:`);
 * - `sign`: as uploaded when trusted-signed; otherwise the node adds its own `Sig:`;
 * - `allow-unsigned`: served as uploaded, signed or not.
 * Under every policy, a signature that names a trusted key and does not verify is a
 * rejection: the narinfo was changed after signing.
 */
export type SignaturePolicy = "require" | "sign" | "allow-unsigned";

export interface UploadRules {
  policy: SignaturePolicy;
  /** Store directories accepted (e.g. ["/nix/store", "/gnu/store"]). */
  storeDirs: readonly string[];
  trustedNixKeys: readonly NixPublicKey[];
  trustedGuixKeys: readonly GuixPublicKey[];
  /** The node's key, for `sign`. */
  nodeKey?: NixSecretKey;
}

export const RejectReason = {
  StoreDir: "store_dir",
  FileSize: "file_size",
  FileHash: "file_hash",
  NarHash: "nar_hash",
  NarSize: "nar_size",
  NarUnreadable: "nar_unreadable",
  BadSignature: "bad_signature",
  Unsigned: "unsigned",
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];

export type UploadVerdict =
  | {
      kind: "accept";
      /** The bytes to serve: the upload's, plus the node's `Sig:` when it signed. */
      served: Buffer;
      /** Names of trusted keys whose signatures verified (Guix: `guix:<host>`). */
      trustedBy: string[];
      signedByNode: boolean;
      /** How far the nar's content was checked. */
      contentChecked: ContentChecked;
    }
  | { kind: "reject"; reason: RejectReason; message: string };

function reject(reason: RejectReason, message: string): Extract<UploadVerdict, { kind: "reject" }> {
  return { kind: "reject", reason, message };
}

/** How far a nar's content was checked against its narinfo. */
export type ContentChecked = "file_hash" | "nar_hash" | "file_hash_and_nar_hash" | "size_only";

/**
 * Check what streaming a nar file found (`facts`) against `file` (one of `info.files`):
 * FileSize, FileHash, and NarSize and NarHash where the compression could be read. Used on
 * upload and by `geospool cache verify` on what is stored.
 */
export function checkNarContent(
  info: Narinfo,
  file: NarFile,
  facts: NarFacts,
):
  | { kind: "ok"; contentChecked: ContentChecked }
  | { kind: "reject"; reason: RejectReason; message: string } {
  const bad = (reason: RejectReason, message: string) => ({
    kind: "reject" as const,
    reason,
    message,
  });
  if (file.fileSize !== undefined && file.fileSize !== facts.fileSize) {
    return bad(
      RejectReason.FileSize,
      `${file.url}: FileSize ${file.fileSize}, the upload has ${facts.fileSize} bytes`,
    );
  }
  if (file.fileHash !== undefined && !hashEquals(file.fileHash, facts.fileHash)) {
    return bad(
      RejectReason.FileHash,
      `${file.url}: FileHash ${formatHash(file.fileHash)}, the upload hashes to ${formatHash(facts.fileHash)}`,
    );
  }
  if (facts.narError !== undefined)
    return bad(RejectReason.NarUnreadable, `${file.url}: ${facts.narError}`);
  if (facts.narPastSize !== undefined) {
    return bad(
      RejectReason.NarSize,
      `NarSize ${info.narSize}, the nar has more (reading stopped at ${facts.narPastSize.read} bytes)`,
    );
  }
  if (facts.nar !== undefined) {
    if (facts.nar.size !== info.narSize) {
      return bad(
        RejectReason.NarSize,
        `NarSize ${info.narSize}, the nar has ${facts.nar.size} bytes`,
      );
    }
    if (!hashEquals(facts.nar.hash, info.narHash)) {
      return bad(
        RejectReason.NarHash,
        `NarHash ${formatHash(info.narHash)}, the nar hashes to ${formatHash(facts.nar.hash)}`,
      );
    }
  }
  const contentChecked =
    file.fileHash !== undefined && facts.nar !== undefined
      ? "file_hash_and_nar_hash"
      : file.fileHash !== undefined
        ? "file_hash"
        : facts.nar !== undefined
          ? "nar_hash"
          : "size_only";
  return { kind: "ok", contentChecked };
}

/**
 * Check a narinfo and the nar file uploaded for it (`file`, one of `info.files`, with what
 * streaming it found) against the node's rules. Pure: the caller stores or discards.
 */
export function checkUpload(
  info: Narinfo,
  file: NarFile,
  facts: NarFacts,
  rules: UploadRules,
): UploadVerdict {
  if (!rules.storeDirs.includes(info.storeDir)) return storeDirRejection(info);
  const content = checkNarContent(info, file, facts);
  if (content.kind === "reject") return content;
  const signed = checkSignatures(info, rules);
  return signed.kind === "reject" ? signed : { ...signed, contentChecked: content.contentChecked };
}

/**
 * What can be told of a narinfo before its nar has come (a narinfo uploaded first is held
 * until then): its store directory and its signatures under the policy. `checkUpload`
 * gives the same reasons once the nar is here.
 */
export function checkNarinfoAlone(
  info: Narinfo,
  rules: UploadRules,
): { kind: "ok" } | { kind: "reject"; reason: RejectReason; message: string } {
  if (!rules.storeDirs.includes(info.storeDir)) return storeDirRejection(info);
  const signed = checkSignatures(info, rules);
  return signed.kind === "reject" ? signed : { kind: "ok" };
}

function storeDirRejection(info: Narinfo): {
  kind: "reject";
  reason: RejectReason;
  message: string;
} {
  return {
    kind: "reject",
    reason: RejectReason.StoreDir,
    message: `store directory ${info.storeDir} is not served here`,
  };
}

function checkSignatures(
  info: Narinfo,
  rules: UploadRules,
):
  | Omit<Extract<UploadVerdict, { kind: "accept" }>, "contentChecked">
  | Extract<UploadVerdict, { kind: "reject" }> {
  const trustedBy: string[] = [];
  for (const check of checkNarinfoSignatures(info, rules.trustedNixKeys)) {
    if (check.kind === "invalid") {
      return reject(
        RejectReason.BadSignature,
        `Sig by trusted key ${check.keyName} does not verify`,
      );
    }
    if (check.kind === "valid") trustedBy.push(check.keyName);
  }
  const guix = checkGuixNarinfo(info, rules.trustedGuixKeys);
  if (guix.kind === "invalid" || guix.kind === "hash_mismatch") {
    return reject(
      RejectReason.BadSignature,
      `Guix Signature by trusted host ${guix.host}: ${guix.kind.replace("_", " ")}`,
    );
  }
  if (guix.kind === "valid") trustedBy.push(`guix:${guix.host}`);

  const accept = (served: Buffer, signedByNode: boolean) => ({
    kind: "accept" as const,
    served,
    trustedBy,
    signedByNode,
  });
  if (trustedBy.length > 0 || rules.policy === "allow-unsigned") return accept(info.raw, false);
  if (rules.policy === "sign" && rules.nodeKey !== undefined) {
    return accept(addSigLine(info, signNarinfo(info, rules.nodeKey)), true);
  }
  return reject(RejectReason.Unsigned, "no signature by a trusted key");
}
