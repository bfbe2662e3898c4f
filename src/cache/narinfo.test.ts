import { statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  fixturePath,
  GUIX,
  NIX_XZ,
  NIX_ZSTD,
  narinfoFixtures,
} from "../../test/helpers/cache-fixtures.js";
import { formatHash } from "./hash.js";
import { type Narinfo, NarinfoParseError, parseNarinfo } from "./narinfo.js";
import { addSigLine, buildNarinfo } from "./narinfo-build.js";

function parseError(text: string): NarinfoParseError {
  try {
    parseNarinfo(text);
  } catch (err) {
    expect(err).toBeInstanceOf(NarinfoParseError);
    expect((err as NarinfoParseError).code).toBe("invalid_narinfo");
    return err as NarinfoParseError;
  }
  throw new Error(`parsed: ${JSON.stringify(text)}`);
}

function rebuild(info: Narinfo): Buffer {
  return buildNarinfo({
    storeDir: info.storeDir,
    storePath: info.storePath,
    url: info.url,
    compression: info.compression,
    fileHash: info.fileHash,
    fileSize: info.fileSize,
    narHash: info.narHash,
    narSize: info.narSize,
    references: info.references,
    deriver: info.deriver,
    system: info.system,
    sigs: info.sigs,
    ca: info.ca,
  });
}

const GOOD = `StorePath: /nix/store/3krxljsj1sqc3iv7snmxba6pmc7mkl3f-geo-doc
URL: nar/1s6dm8x8mqdm3pkalizr572v1wlp3kz51y78f0i4arjadgxbrqmf.nar.xz
NarHash: sha256:00l1bm7zcdhn2shyxllff08zi62zzf5hpq1g1dz8h1brsa3j2c28
NarSize: 128
`;

describe("narinfo", () => {
  it("parses Nix 2.8's narinfos and rebuilds them byte for byte", () => {
    for (const cache of [NIX_XZ, NIX_ZSTD]) {
      for (const [file, bytes] of narinfoFixtures(cache)) {
        const info = parseNarinfo(bytes);
        expect(info.raw.equals(bytes)).toBe(true);
        expect(info.storeDir).toBe("/nix/store");
        expect(`${info.storePath.hashPart}.narinfo`).toBe(file);
        expect(info.files).toHaveLength(1);
        expect(info.compression).toBe(cache === NIX_XZ ? "xz" : "zstd");
        expect(info.url).toBe(
          `nar/${formatHash(info.fileHash!).slice(7)}.nar.${cache === NIX_XZ ? "xz" : "zst"}`,
        );
        expect(statSync(fixturePath(cache, info.url)).size).toBe(info.fileSize);
        expect(info.sigs).toHaveLength(1);
        expect(info.sigs[0]).toMatch(/^geospool-testdata-1:/);
        expect(info.guixSignature).toBeUndefined();
        expect(info.fields.map((f) => f.key)).toEqual([
          "StorePath",
          "URL",
          "Compression",
          "FileHash",
          "FileSize",
          "NarHash",
          "NarSize",
          "References",
          "Deriver",
          "Sig",
        ]);
        expect(rebuild(info).equals(bytes), file).toBe(true);
      }
    }
    const app = parseNarinfo(narinfoFixtures(NIX_XZ)[2]![1]);
    expect(app.storePath.name).toBe("geo-app");
    expect(app.references).toEqual([
      { hashPart: "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx", name: "geo-lib" },
    ]);
    expect(app.deriver).toEqual({
      hashPart: "6ig09x5zpvhx6ylrak0gqjpqhr1ippz2",
      name: "geo-app.drv",
    });
  });

  it("keeps Guix 1.5's Signature line and repeated URL/Compression/FileSize groups whole", () => {
    for (const [file, bytes] of narinfoFixtures(GUIX)) {
      const info = parseNarinfo(bytes, { storeDir: "/gnu/store" });
      expect(info.raw.equals(bytes)).toBe(true);
      expect(`${info.storePath.hashPart}.narinfo`).toBe(file);
      expect(info.guixSignature).toMatch(/^1;vm;KHNpZ25hdHVyZSAK/);
      expect(info.fileHash).toBeUndefined();
      expect(info.files.map((f) => f.compression)).toEqual(["gzip", "zstd"]);
      for (const f of info.files) {
        expect(f.url).toBe(
          `nar/${f.compression}/${info.storePath.hashPart}-${info.storePath.name}`,
        );
        expect(statSync(fixturePath(GUIX, f.url)).size).toBe(f.fileSize);
      }
      expect(info.fields.map((f) => f.key)).toEqual([
        "StorePath",
        "NarHash",
        "NarSize",
        "References",
        "Signature",
        "URL",
        "Compression",
        "FileSize",
        "URL",
        "Compression",
        "FileSize",
      ]);
    }
    const b = parseNarinfo(narinfoFixtures(GUIX)[0]![1]);
    expect(b.references).toEqual([
      { hashPart: "97yia4hp8gd4g5cjz55l06xx69h7nfwy", name: "e2e-a.txt" },
    ]);
  });

  it("keeps unknown fields in order and reads System, CA and several Sigs", () => {
    const text = `${GOOD}References: \nX-Mirror: eu-1\nSystem: x86_64-linux\nSig: a:AAAA\nSig: b:BBBB\nCA: fixed:r:sha256:abc\nX-Mirror: us-1\n`;
    const info = parseNarinfo(text);
    expect(info.raw.toString()).toBe(text);
    expect(info.fields.filter((f) => f.key === "X-Mirror").map((f) => [f.value, f.line])).toEqual([
      ["eu-1", 6],
      ["us-1", 11],
    ]);
    expect(info.system).toBe("x86_64-linux");
    expect(info.sigs).toEqual(["a:AAAA", "b:BBBB"]);
    expect(info.ca).toBe("fixed:r:sha256:abc");
    expect(info.compression).toBeUndefined();
    expect(info.references).toEqual([]);
    expect(parseNarinfo(`${GOOD}References:\nDeriver: unknown-deriver\n`).deriver).toBeUndefined();
  });

  it("adds a Sig line and changes no other byte", () => {
    for (const [, bytes] of narinfoFixtures(NIX_XZ)) {
      const text = bytes.toString();
      const sig = /^Sig: (.*)$/m.exec(text)![1]!;
      const unsigned = parseNarinfo(text.replace(/^Sig: .*\n/m, ""));
      expect(addSigLine(unsigned, sig).equals(bytes)).toBe(true);
      const twice = addSigLine(parseNarinfo(bytes), "other:CCCC");
      expect(twice.toString()).toBe(`${text}Sig: other:CCCC\n`);
      expect(addSigLine(parseNarinfo(bytes), sig).equals(bytes)).toBe(true);
    }
    const withCa = parseNarinfo(`${GOOD}CA: x\n`);
    expect(addSigLine(withCa, "k:S").toString()).toBe(`${GOOD}Sig: k:S\nCA: x\n`);
    const [, guix] = narinfoFixtures(GUIX)[0]!;
    const signed = addSigLine(parseNarinfo(guix), "node-1:SIG");
    expect(signed.toString()).toBe(`${guix.toString()}Sig: node-1:SIG\n`);
    expect(parseNarinfo(signed).sigs).toEqual(["node-1:SIG"]);
  });

  it("refuses malformed narinfos with a parse error naming the line", () => {
    const cases: [string, RegExp, number | undefined][] = [
      ["", /empty/, undefined],
      [GOOD.slice(0, -1), /line 4: no newline at the end/, 4],
      [`${GOOD}\n`, /line 5: expected "Key: value"/, 5],
      [`${GOOD}NoColon\n`, /line 5: expected "Key: value", got "NoColon"/, 5],
      [`${GOOD}Sig:x\n`, /line 5: expected a space after "Sig:"/, 5],
      [`${GOOD} Bad: x\n`, /line 5: bad key " Bad"/, 5],
      [`${GOOD}NarSize: 1\n`, /line 5: NarSize appears twice/, 5],
      [`${GOOD}X: a\u0001b\n`, /line 5: X holds a control character/, 5],
      [GOOD.replace(/^NarSize.*\n/m, ""), /missing NarSize/, undefined],
      [GOOD.replace(/^URL.*\n/m, ""), /missing URL/, undefined],
      [GOOD.replace(/^StorePath.*\n/m, ""), /missing StorePath/, undefined],
      [GOOD.replace("NarSize: 128", "NarSize: 0"), /line 4: NarSize is 0/, 4],
      [GOOD.replace("NarSize: 128", "NarSize: -1"), /line 4: NarSize "-1" is not a byte count/, 4],
      [GOOD.replace("NarSize: 128", "NarSize: 99999999999999999"), /not a byte count/, 4],
      [GOOD.replace("sha256:00l1", "sha256:e0l1"), /line 3: NarHash: hash .*"e" is not a nix32/, 3],
      [GOOD.replace("-geo-doc", "-geo/doc"), /line 1: StorePath: store path .*name has "\/"/, 1],
      [`${GOOD}References: nothash\n`, /line 5: References: store path "nothash"/, 5],
      [
        `${GOOD}Compression: xz\nCompression: gzip\n`,
        /line 6: Compression appears twice for the URL on line 2/,
        6,
      ],
      [GOOD.replace(/^URL: .*$/m, "URL: "), /line 2: URL is empty/, 2],
    ];
    for (const [text, message, line] of cases) {
      const err = parseError(text);
      expect(err.message, JSON.stringify(text)).toMatch(message);
      expect(err.line, JSON.stringify(text)).toBe(line);
    }
    expect(parseError("\xff\n".replace("\xff", "\uFFFD")).message).toMatch(/expected "Key: value"/);
    expect(() => parseNarinfo(Buffer.from([0xff, 0x0a]))).toThrow(/not valid UTF-8/);
    expect(() => parseNarinfo(GOOD, { storeDir: "/gnu/store" })).toThrow(
      /line 1: StorePath: .*not in the store directory \/gnu\/store/,
    );
    expect(() => parseNarinfo(GOOD, { maxBytes: 100 })).toThrow(/more than 100/);
  });
});

describe("narinfo file groups", () => {
  it("gives each URL the Compression, FileHash and FileSize lines below it", () => {
    const text = `${GOOD}FileSize: 9\nURL: nar/b\nCompression: zstd\nURL: nar/c\nFileSize: 7\n`;
    const info = parseNarinfo(text);
    expect(info.files.map((f) => [f.url, f.compression, f.fileSize])).toEqual([
      ["nar/1s6dm8x8mqdm3pkalizr572v1wlp3kz51y78f0i4arjadgxbrqmf.nar.xz", undefined, 9],
      ["nar/b", "zstd", undefined],
      ["nar/c", undefined, 7],
    ]);
    const early = parseNarinfo(`Compression: xz\n${GOOD}`);
    expect(early.compression).toBe("xz");
    expect(() => parseNarinfo(`Compression: xz\n${GOOD}Compression: gzip\n`)).toThrow(
      /line 6: Compression appears twice for the URL on line 3/,
    );
  });
});
