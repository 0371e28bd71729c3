import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gcmOpen, gcmSeal } from "./gcm.js";

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

/**
 * AES-128 test cases 1-4 of McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)",
 * appendix B (the vectors RFC 4106 section 9 points to). Their 96-bit IV is split as RFC 4106
 * section 4 does: 4-byte salt || 8-byte explicit IV.
 */
const P3 = h(`d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72
              1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b391aafd255`);
const C3 = h(`42831ec2217774244b7221b784d0d49c e3aa212f2c02a4e035c17e2329aca12e
              21d514b25466931c7d8f6a5aac84aa05 1ba30b396a0aac973d58e091473f5985`);
const vectors = [
  {
    name: "test case 1 (empty)",
    key: h("00000000000000000000000000000000"),
    iv96: h("000000000000000000000000"),
    aad: Buffer.alloc(0),
    p: Buffer.alloc(0),
    c: Buffer.alloc(0),
    t: h("58e2fccefa7e3061367f1d57a4e7455a"),
  },
  {
    name: "test case 2 (one zero block)",
    key: h("00000000000000000000000000000000"),
    iv96: h("000000000000000000000000"),
    aad: Buffer.alloc(0),
    p: h("00000000000000000000000000000000"),
    c: h("0388dace60b6a392f328c2b971b2fe78"),
    t: h("ab6e47d42cec13bdf53a67b21257bddf"),
  },
  {
    name: "test case 3 (four blocks)",
    key: h("feffe9928665731c6d6a8f9467308308"),
    iv96: h("cafebabefacedbaddecaf888"),
    aad: Buffer.alloc(0),
    p: P3,
    c: C3,
    t: h("4d5c2af327cd64a62cf35abd2ba6fab4"),
  },
  {
    name: "test case 4 (AAD, partial block)",
    key: h("feffe9928665731c6d6a8f9467308308"),
    iv96: h("cafebabefacedbaddecaf888"),
    aad: h("feedfacedeadbeeffeedfacedeadbeefabaddad2"),
    p: P3.subarray(0, 60),
    c: C3.subarray(0, 60),
    t: h("5bc94fbc3221a5db94fae95ae7121a47"),
  },
];

describe("AES-128-GCM (RFC 4106 nonce = salt || IV)", () => {
  for (const v of vectors) {
    const salt = v.iv96.subarray(0, 4);
    const iv = v.iv96.subarray(4);
    it(`${v.name}: seal matches the published ciphertext and tag`, () => {
      const sealed = gcmSeal(v.key, salt, iv, v.aad, v.p);
      assert.equal(sealed.subarray(0, v.c.length).toString("hex"), v.c.toString("hex"));
      assert.equal(sealed.subarray(v.c.length).toString("hex"), v.t.toString("hex"));
    });
    it(`${v.name}: open returns the plaintext, and nothing once any byte changes`, () => {
      const sealed = Buffer.concat([v.c, v.t]);
      assert.deepEqual(gcmOpen(v.key, salt, iv, v.aad, sealed), v.p);
      for (let i = 0; i < sealed.length; i++) {
        const bad = Buffer.from(sealed);
        bad[i]! ^= 0x01;
        assert.equal(gcmOpen(v.key, salt, iv, v.aad, bad), undefined, `byte ${i}`);
      }
      const badSalt = Buffer.from(salt);
      badSalt[0]! ^= 0x80;
      assert.equal(gcmOpen(v.key, badSalt, iv, v.aad, sealed), undefined);
      const badAad = Buffer.concat([v.aad, Buffer.from([0])]);
      assert.equal(gcmOpen(v.key, salt, iv, badAad, sealed), undefined);
    });
  }

  it("truncated ICVs (RFC 4106 section 6: 8 and 12 octets) are prefixes of the full tag", () => {
    const v = vectors[3]!;
    const salt = v.iv96.subarray(0, 4);
    const iv = v.iv96.subarray(4);
    for (const icv of [8, 12] as const) {
      const sealed = gcmSeal(v.key, salt, iv, v.aad, v.p, icv);
      assert.equal(sealed.length, v.p.length + icv);
      assert.deepEqual(sealed.subarray(v.p.length), v.t.subarray(0, icv));
      assert.deepEqual(gcmOpen(v.key, salt, iv, v.aad, sealed, icv), v.p);
    }
  });

  it("open of input shorter than the ICV is a failure, not a throw", () => {
    const v = vectors[0]!;
    assert.equal(
      gcmOpen(v.key, Buffer.alloc(4), Buffer.alloc(8), Buffer.alloc(0), Buffer.alloc(15)),
      undefined,
    );
  });
});
