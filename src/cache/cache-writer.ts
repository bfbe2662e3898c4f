import type { NarFacts } from "./nar-digest.js";
import type { StagedNar } from "./nar-staging.js";
import type { Narinfo } from "./narinfo.js";
import type { CandidateTrust } from "./served-rule.js";
import type { RejectReason } from "./upload-check.js";

/** An upload that passed `checkUpload`, ready to be stored and served. */
export interface AcceptedUpload {
  readonly narinfo: Narinfo;
  /** The bytes to serve (the upload's, plus the node's Sig when it signed). */
  readonly served: Buffer;
  /** The nar file, staged; undefined when the store already holds the nar at its URL. */
  readonly nar: StagedNar | undefined;
  readonly listing: Buffer | undefined;
  readonly trust: CandidateTrust;
  /** Who uploaded it (the token's name). */
  readonly by: string;
  /**
   * Every nar path accepted with this narinfo in the same upload (a Guix narinfo lists
   * several, each committed on its own), this one included; absent: this one alone.
   */
  readonly files?: readonly string[];
}

export interface RejectedUpload {
  readonly hashPart: string;
  /** The StorePath line, when the narinfo got that far. */
  readonly storePath: string | undefined;
  readonly reason: RejectReason | "nar_missing" | "unparsable";
  readonly message: string;
  readonly by: string;
  readonly at: number;
  /** The narinfo as uploaded, when its body was read. */
  readonly narinfo?: Buffer;
}

/**
 * What became of a commit: stored, already there (the same narinfo for the same nar), or
 * refused for now (a GC is removing a path it needs; the uploader may try again later).
 */
export type CommitOutcome =
  | "stored"
  | "already_served"
  | { readonly kind: "refused"; readonly message: string };

/** Where accepted uploads go, and rejections are kept (never served). */
export interface CacheWriter {
  /** What the stored nar at `path` hashes to, read back (a narinfo re-uploaded for it). */
  storedNarFacts(path: string): Promise<NarFacts | undefined>;
  /** Store it; the narinfo becomes visible last, once its nar and listing are in place. */
  commit(upload: AcceptedUpload): Promise<CommitOutcome>;
  reject(rejection: RejectedUpload): Promise<void>;
}
