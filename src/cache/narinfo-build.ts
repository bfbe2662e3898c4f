import { formatHash, type Hash } from "./hash.js";
import type { Narinfo } from "./narinfo.js";
import { formatStorePath, NIX_STORE_DIR, type StorePath, storePathBaseName } from "./store-path.js";

/** What `buildNarinfo` writes, in Nix's order. */
export interface NarinfoSpec {
  storeDir?: string;
  storePath: StorePath;
  url: string;
  compression?: string;
  fileHash?: Hash;
  fileSize?: number;
  narHash: Hash;
  narSize: number;
  references: readonly StorePath[];
  deriver?: StorePath;
  system?: string;
  sigs?: readonly string[];
  ca?: string;
}

/** A narinfo as Nix writes one (StorePath, URL, Compression, FileHash, FileSize, NarHash, ...). */
export function buildNarinfo(spec: NarinfoSpec): Buffer {
  const lines: string[] = [
    `StorePath: ${formatStorePath(spec.storePath, spec.storeDir ?? NIX_STORE_DIR)}`,
  ];
  lines.push(`URL: ${spec.url}`);
  if (spec.compression !== undefined) lines.push(`Compression: ${spec.compression}`);
  if (spec.fileHash !== undefined) lines.push(`FileHash: ${formatHash(spec.fileHash)}`);
  if (spec.fileSize !== undefined) lines.push(`FileSize: ${spec.fileSize}`);
  lines.push(`NarHash: ${formatHash(spec.narHash)}`);
  lines.push(`NarSize: ${spec.narSize}`);
  lines.push(`References: ${spec.references.map(storePathBaseName).join(" ")}`);
  if (spec.deriver !== undefined) lines.push(`Deriver: ${storePathBaseName(spec.deriver)}`);
  if (spec.system !== undefined) lines.push(`System: ${spec.system}`);
  for (const sig of spec.sigs ?? []) lines.push(`Sig: ${sig}`);
  if (spec.ca !== undefined) lines.push(`CA: ${spec.ca}`);
  return Buffer.from(`${lines.map((l) => `${l}\n`).join("")}`, "utf8");
}

/**
 * The narinfo's bytes with a `Sig:` line added and every other byte as it was: after the
 * last `Sig:` line, else before `CA:`, else at the end (a Guix narinfo's signed part, which
 * ends before its `Signature:` line, is untouched). A signature already present is not
 * added twice.
 */
export function addSigLine(info: Narinfo, sig: string): Buffer {
  if (info.sigs.includes(sig)) return info.raw;
  const lastSig = info.fields.filter((f) => f.key === "Sig").at(-1);
  const ca = info.fields.find((f) => f.key === "CA");
  const line = `Sig: ${sig}\n`;
  const text = info.raw.toString("utf8");
  const lines = text
    .slice(0, -1)
    .split("\n")
    .map((l) => `${l}\n`);
  const at = lastSig !== undefined ? lastSig.line : ca !== undefined ? ca.line - 1 : lines.length;
  lines.splice(at, 0, line);
  return Buffer.from(lines.join(""), "utf8");
}
