import { gunzipSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  GUIX,
  GUIX_KEY_TEXT,
  NIX_XZ,
  narinfoFixtures,
  readFixture,
} from "../../test/helpers/cache-fixtures.js";
import { parseGuixPublicKeys } from "./guix-signature.js";
import { type NarFacts, narDigester } from "./nar-digest.js";
import { type Narinfo, parseNarinfo } from "./narinfo.js";
import { generateNixKey, parseNixPublicKey } from "./nix-key.js";
import { checkNarinfoSignatures } from "./nix-signature.js";
import { checkUpload, type UploadRules } from "./upload-check.js";

const NIX_KEY = parseNixPublicKey(readFixture("nix-2.8-test-key.public").toString());
const GUIX_KEY = parseGuixPublicKeys(GUIX_KEY_TEXT);
const NODE_KEY = generateNixKey("node-1");
const RULES: UploadRules = {
  policy: "require",
  storeDirs: ["/nix/store", "/gnu/store"],
  trustedNixKeys: [NIX_KEY],
  trustedGuixKeys: GUIX_KEY,
  nodeKey: NODE_KEY,
};

async function digest(bytes: Buffer, compression: string | undefined): Promise<NarFacts> {
  const { sink, facts } = narDigester(compression);
  for (let i = 0; i < bytes.length; i += 7) sink.write(bytes.subarray(i, i + 7));
  sink.end();
  return facts;
}

async function check(info: Narinfo, nar: Buffer, rules: Partial<UploadRules> = {}, fileIndex = 0) {
  const file = info.files[fileIndex]!;
  return checkUpload(info, file, await digest(nar, file.compression), { ...RULES, ...rules });
}

const [, APP_BYTES] = narinfoFixtures(NIX_XZ)[2]!;
const APP = parseNarinfo(APP_BYTES);
const APP_NAR = readFixture(NIX_XZ, APP.url);
const [, GUIX_BYTES] = narinfoFixtures(GUIX)[0]!;
const GUIX_B = parseNarinfo(GUIX_BYTES);

describe("checking an upload", () => {
  it("accepts Nix 2.8's signed narinfo with its xz nar, checked by FileHash", async () => {
    const v = await check(APP, APP_NAR);
    expect(v).toMatchObject({
      kind: "accept",
      trustedBy: ["geospool-testdata-1"],
      signedByNode: false,
      contentChecked: "file_hash",
    });
    if (v.kind === "accept") expect(v.served.equals(APP_BYTES)).toBe(true);
  });

  it("accepts guix publish's narinfo, checking its gzip nar against NarHash and NarSize", async () => {
    const gz = readFixture(GUIX, GUIX_B.files[0]!.url);
    const v = await check(GUIX_B, gz);
    expect(v).toMatchObject({ kind: "accept", trustedBy: ["guix:vm"], contentChecked: "nar_hash" });
    if (v.kind === "accept") expect(v.served.equals(GUIX_BYTES)).toBe(true);
    const zst = await check(GUIX_B, readFixture(GUIX, GUIX_B.files[1]!.url), {}, 1);
    expect(zst).toMatchObject({ kind: "accept", contentChecked: "size_only" });
  });

  it("rejects a nar that does not match its narinfo, naming what differs", async () => {
    expect(await check(APP, APP_NAR.subarray(1))).toMatchObject({
      kind: "reject",
      reason: "file_size",
    });
    const flipped = Buffer.from(APP_NAR);
    flipped[100]! ^= 1;
    expect(await check(APP, flipped)).toMatchObject({
      kind: "reject",
      reason: "file_hash",
      message: expect.stringMatching(/FileHash sha256:0l8g.*hashes to sha256:/),
    });
    const nar = gunzipSync(readFixture(GUIX, GUIX_B.files[0]!.url));
    const other = gzipSync(Buffer.concat([nar, Buffer.from("x")]));
    const sizeFree = parseNarinfo(GUIX_BYTES.toString().replace(/^FileSize: 148\n/m, ""));
    expect(sizeFree.files.map((f) => f.fileSize)).toEqual([undefined, 152]);
    expect(await check(sizeFree, other)).toMatchObject({ kind: "reject", reason: "nar_size" });
    const flippedNar = Buffer.from(nar);
    flippedNar[150]! ^= 1;
    expect(await check(sizeFree, gzipSync(flippedNar))).toMatchObject({
      kind: "reject",
      reason: "nar_hash",
    });
    expect(await check(sizeFree, Buffer.from("not gzip at all"))).toMatchObject({
      kind: "reject",
      reason: "nar_unreadable",
    });
  });

  it("checks uncompressed nars by NarHash too", async () => {
    const nar = gunzipSync(readFixture(GUIX, GUIX_B.files[0]!.url));
    const plain = parseNarinfo(
      GUIX_BYTES.toString()
        .replace("Compression: gzip", "Compression: none")
        .replace("FileSize: 148", `FileSize: ${nar.length}`),
    );
    expect(await check(plain, nar)).toMatchObject({ kind: "accept", contentChecked: "nar_hash" });
  });

  it("applies the signature policy: require, sign, allow-unsigned", async () => {
    const unsigned = parseNarinfo(APP_BYTES.toString().replace(/^Sig: .*\n/m, ""));
    expect(await check(unsigned, APP_NAR)).toMatchObject({ kind: "reject", reason: "unsigned" });
    expect(await check(unsigned, APP_NAR, { policy: "sign", nodeKey: undefined })).toMatchObject({
      kind: "reject",
      reason: "unsigned",
    });
    const loose = await check(unsigned, APP_NAR, { policy: "allow-unsigned" });
    expect(loose).toMatchObject({ kind: "accept", signedByNode: false, trustedBy: [] });
    const signed = await check(unsigned, APP_NAR, { policy: "sign" });
    expect(signed).toMatchObject({ kind: "accept", signedByNode: true });
    if (signed.kind !== "accept") return;
    const served = parseNarinfo(signed.served);
    expect(checkNarinfoSignatures(served, [NODE_KEY.publicKey])).toEqual([
      { kind: "valid", keyName: "node-1" },
    ]);
    expect(signed.served.toString()).toBe(`${unsigned.raw.toString()}Sig: ${served.sigs[0]}\n`);
    // Already trusted: served exactly as uploaded, not re-signed.
    const kept = await check(APP, APP_NAR, { policy: "sign" });
    expect(kept).toMatchObject({ kind: "accept", signedByNode: false });
    // An untrusted uploader's Sig is kept beside the node's.
    const foreign = parseNarinfo(
      APP_BYTES.toString().replace(/^Sig: geospool-testdata-1:/m, "Sig: someone-1:"),
    );
    const both = await check(foreign, APP_NAR, { policy: "sign" });
    if (both.kind !== "accept") throw new Error("rejected");
    expect(parseNarinfo(both.served).sigs.map((s) => s.split(":")[0])).toEqual([
      "someone-1",
      "node-1",
    ]);
  });

  it("rejects a signature by a trusted key that does not verify, under every policy", async () => {
    const changed = parseNarinfo(
      APP_BYTES.toString()
        .replace("Deriver: 6ig0", "Deriver: 6ig1")
        .replace("NarSize: 528", "NarSize: 527"),
    );
    for (const policy of ["require", "sign", "allow-unsigned"] as const) {
      expect(await check(changed, APP_NAR, { policy })).toMatchObject({
        kind: "reject",
        reason: "bad_signature",
      });
    }
    const guixChanged = parseNarinfo(
      GUIX_BYTES.toString().replace("References: 97yia", "References: 97yib"),
    );
    expect(
      await check(
        guixChanged,
        readFixture(GUIX, GUIX_B.files[1]!.url),
        { policy: "allow-unsigned" },
        1,
      ),
    ).toMatchObject({
      kind: "reject",
      reason: "bad_signature",
      message: expect.stringMatching(/host vm: hash mismatch/),
    });
  });

  it("rejects store directories the node does not serve", async () => {
    expect(await check(APP, APP_NAR, { storeDirs: ["/gnu/store"] })).toMatchObject({
      kind: "reject",
      reason: "store_dir",
    });
  });
});
