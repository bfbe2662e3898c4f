/**
 * # The geospool binary cache: formats and signatures
 *
 * Every node serves what it holds as a Nix/Guix binary cache. This layer holds the cache's
 * formats and its own logic, with no HTTP (the routes live in src/node). What exists now
 * is the format layer, pure functions over bytes, tested on the output of real clients
 * (test/fixtures/cache: Nix 2.8 `file://` caches, a Guix 1.5 `guix publish --cache`).
 *
 * ## Formats
 *
 * - nix32 (`nix32.ts`): Nix's base-32; hashes (`hash.ts`) as `sha256:<nix32>` (what
 *   narinfos write), base16, base64 and SRI.
 * - Store paths (`store-path.ts`): `<storeDir>/<hash part>-<name>` under a configurable store
 *   directory (`/nix/store`, `/gnu/store`); the hash part (32 nix32 characters) is the
 *   lookup key (`/<hash part>.narinfo`); names are Nix's charset, at most 211 characters.
 * - Narinfos (`narinfo.ts`, `narinfo-build.ts`): `parseNarinfo` keeps the raw bytes and
 *   every `Key: value` line in order, unknown keys included, beside a typed view; Guix's
 *   repeated URL/Compression/FileSize groups are `files` (each URL with the lines below
 *   it) and its `Signature:` line is kept as written. What was uploaded is served from
 *   `raw`, byte for byte. Bad input is a `NarinfoParseError` naming the line, never a hang
 *   (fuzzed). `addSigLine` adds a node's `Sig:` without touching any other byte.
 * - `nix-cache-info.ts`: StoreDir, WantMassQuery, Priority.
 *
 * ## Signatures
 *
 * - Nix (`nix-key.ts`, `nix-signature.ts`): Ed25519 (node:crypto) over the fingerprint
 *   `1;<store path>;<NarHash>;<NarSize>;<references as full paths, sorted, joined by ",">`,
 *   keys as `name:base64` (secret = seed + public key, as `nix key generate-secret` writes).
 *   A narinfo is trusted when one `Sig:` verifies under a trusted key of its name.
 * - Guix (`sexp.ts`, `guix-signature.ts`): `Signature: 1;<host>;<base64 s-expression>`,
 *   libgcrypt's ECDSA on the Ed25519 curve over the sha256 of the bytes before
 *   `Signature:`; the signer's key is in the signature and must be among the trusted keys
 *   (`(public-key (ecc (curve Ed25519) (q #..#)))`, alone or in an ACL).
 *
 * ## Reading (for the HTTP routes in src/node/cache-http)
 *
 * - `request-path.ts`: what a URL path asks for, by a strict grammar on the raw path
 *   (never percent-decoded), so traversal in any encoding is refused.
 * - `byte-range.ts`: one `Range` → 206, past the end → 416, anything else served whole.
 * - `cache-reader.ts`: the `CacheReader` the routes serve from (misses are `undefined`);
 *   `dir-cache-reader.ts` reads a `file://` / `guix publish --cache` directory as one.
 *
 * ## Uploads
 *
 * - `nar-digest.ts`: hashes a nar file as it streams (FileHash, FileSize) and, for none,
 *   gzip and br, the nar inside it (NarHash, NarSize).
 * - `upload-check.ts`: the verdict on a narinfo and its nar under the node's rules (store
 *   directories, signature policy `require`/`sign`/`allow-unsigned`, trusted Nix and Guix
 *   keys): accept with the bytes to serve, or reject with a reason code.
 * - `served-rule.ts`: which of several uploads of one store path every node serves
 *   (`chooseServable`: among the complete candidates, those whose every accepted nar is
 *   held, the `chooseServed` one).
 * - `upload-stamp.ts`: an upload's stamp, a value of the cluster's hybrid logical clock
 *   (the node passes its clock in), so the served rule's "first upload" follows causality,
 *   not wall clocks; records from before stamps were clock values read by their ms.
 * - `nar-staging.ts`: nars uploaded before their narinfo, hashed as they stream, kept
 *   node-local until the narinfo comes or a bound passes.
 * - `cache-writer.ts`: where accepted uploads and rejections go; `dir-cache-writer.ts`
 *   stores into a binary-cache directory (nar, listing, then narinfo, each fsynced).
 * - `spool-cache-store.ts`: the cache over a spool queue, reader and writer at once: one
 *   entry per accepted nar upload (metadata: the narinfo to serve, its nar path and those
 *   accepted with it, trust, origin and stamp, listing; data: the compressed nar, so the
 *   data digest is the FileHash). Its index follows the queue entry by entry (`changed`:
 *   the node calls it for its own transitions and the replicator's placements and drops)
 *   and as a whole (`refresh`: at open, and as a periodic safety net).
 * - `cache-index.ts`: that lookup index, in the node's PostgreSQL (migrations 0008 to 0010;
 *   node-local, never published): per entry its hash part, nar path, trust, stamp, narinfo
 *   and listing; per hash part the served entry; per entry the references (hash parts) a
 *   GC walks. Rows derived from another spool, queue or format are dropped at open and the
 *   queue is diffed against the indexed names, so missing rows are rebuilt from the spool.
 *   A memory front (`narinfo-front.ts`: the served narinfo bytes per hash part, packed in
 *   arena buffers) answers narinfo requests with no database round trip; it is loaded at
 *   open and follows each committed change. Nar lookups and listings are one query each.
 * - `cache-roots.ts`, `gc-walk.ts`, `gc-fence.ts`, `gc.ts`: garbage collection. Roots are
 *   entries of a queue of their own (so they replicate); the walk is a recursive CTE over
 *   the index from the live roots and the uploads younger than the grace period, keeping
 *   hash parts whole and any nar a kept narinfo names; unreachable older entries are removed
 *   through the spool (so the removals replicate), and only while the fence says this
 *   node's view of every peer is recent (docs/architecture.md, "Garbage collection").
 * - `gc-marks.ts`, `gc-handshake.ts`: before each batch is removed, every node acknowledges
 *   its condemnation, reviving the paths it still needs, and refuses (409) uploads that
 *   need the others until the round is over.
 * - `rejection-log.ts`: rejected uploads kept with their reason and narinfo, one entry
 *   each in a node-local spool (never served nor replicated), bounded by count and age.
 * - `cache-inventory.ts`: what a cache queue serves worked out from its entries alone (the
 *   same `chooseServable`), for tools (`geospool cache ls|show`); `checkNarContent` (upload-check.ts) re-checks a stored
 *   nar for `geospool cache verify`.
 *
 * Checks are values (`SigCheck`, `GuixSigCheck`: valid, untrusted, invalid, malformed, ...);
 * bad input is a `CacheError` with a stable `code` (errors.ts).
 */
export { type ByteRange, parseByteRange } from "./byte-range.js";
export { CACHE_INDEX_FORMAT, CacheIndex, type IndexedEntry } from "./cache-index.js";
export {
  type ServedPath,
  type StoredCacheEntry,
  servedPaths,
  signerNames,
} from "./cache-inventory.js";
export type { CacheReader, OpenNar } from "./cache-reader.js";
export type { AcceptedUpload, CacheWriter, RejectedUpload } from "./cache-writer.js";
export { openCacheDirectory } from "./dir-cache-reader.js";
export { cacheDirectoryWriter } from "./dir-cache-writer.js";
export { CacheError, CacheErrorCode } from "./errors.js";
export {
  checkGuixNarinfo,
  formatGuixPublicKey,
  type GuixPublicKey,
  type GuixSigCheck,
  type GuixSignature,
  guixSignedBytes,
  parseGuixPublicKeys,
  parseGuixSignature,
  verifyGuixEcdsa,
} from "./guix-signature.js";
export {
  formatHash,
  HASH_SIZES,
  type Hash,
  type HashAlgorithm,
  type HashEncoding,
  HashSink,
  hashEquals,
  hashOf,
  parseHash,
} from "./hash.js";
export { type NarFacts, narDigester, READABLE_COMPRESSIONS } from "./nar-digest.js";
export {
  compressionOfNarPath,
  NarStaging,
  type StagedNar,
  type StageResult,
} from "./nar-staging.js";
export {
  compressionOf,
  NARINFO_MAX_BYTES,
  type NarFile,
  type Narinfo,
  type NarinfoField,
  NarinfoParseError,
  type NarinfoParseOptions,
  parseNarinfo,
  referenceHashParts,
} from "./narinfo.js";
export { addSigLine, buildNarinfo, type NarinfoSpec } from "./narinfo-build.js";
export { buildNixCacheInfo, type NixCacheInfo, parseNixCacheInfo } from "./nix-cache-info.js";
export {
  formatNixPublicKey,
  formatNixSecretKey,
  generateNixKey,
  type NixPublicKey,
  type NixSecretKey,
  parseNixPublicKey,
  parseNixSecretKey,
} from "./nix-key.js";
export {
  checkNarinfoSignatures,
  checkSignature,
  type FingerprintInput,
  fingerprint,
  hasTrustedSignature,
  type NixSignature,
  narinfoFingerprint,
  parseNixSignature,
  type SigCheck,
  signFingerprint,
  signNarinfo,
} from "./nix-signature.js";
export { isNix32, NIX32_ALPHABET, nix32Decode, nix32Encode, nix32Length } from "./nix32.js";
export {
  type KeptRejection,
  REJECTED_QUEUE,
  type RejectionBounds,
  RejectionLog,
} from "./rejection-log.js";
export { type CacheRequest, narPathProblem, parseCacheRequest } from "./request-path.js";
export {
  type CandidateTrust,
  chooseServable,
  chooseServed,
  compareCandidates,
  type NarHolding,
  type ServedCandidate,
  servable,
} from "./served-rule.js";
export {
  type CacheEntryCodec,
  type CacheRecord,
  fileHashOfDigest,
  SpoolCacheStore,
  type SpoolCacheStoreOptions,
} from "./spool-cache-store.js";
export {
  checkStoreDir,
  formatStorePath,
  GUIX_STORE_DIR,
  HASH_PART_LENGTH,
  NIX_STORE_DIR,
  parseHashPart,
  parseStorePath,
  parseStorePathBaseName,
  type StorePath,
  splitStorePath,
  storePathBaseName,
} from "./store-path.js";
export {
  type ContentChecked,
  checkNarContent,
  checkUpload,
  RejectReason,
  type SignaturePolicy,
  type UploadRules,
  type UploadVerdict,
} from "./upload-check.js";
export { formatStamp, parseStamp, recordStamp, stampMs, stampOfMs } from "./upload-stamp.js";
