import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isValidationError } from "../errors/index.js";
import { deriveEspKey, espKeyInfo, keyIdForEpoch, keyIdOfSpi, spiFor } from "./derive.js";
import { generateKeyPair } from "./x25519.js";

let counter = 0;
const rnd = (n: number): Buffer => Buffer.alloc(n, ++counter);
const a = generateKeyPair(rnd);
const b = generateKeyPair(rnd);
const c = generateKeyPair(rnd);

const hex = (m: { key: Buffer; salt: Buffer }): string => Buffer.concat([m.key, m.salt]).toString("hex");

describe("per-pair ESP key derivation", () => {
  it("both ends derive the same 16+4 bytes for a direction, different per direction", () => {
    const abAtA = deriveEspKey({
      localPrivateKey: a.privateKey,
      remotePublicKey: b.publicKey,
      sender: "a",
      receiver: "b",
      epoch: 7,
    });
    const abAtB = deriveEspKey({
      localPrivateKey: b.privateKey,
      remotePublicKey: a.publicKey,
      sender: "a",
      receiver: "b",
      epoch: 7,
    });
    const baAtA = deriveEspKey({
      localPrivateKey: a.privateKey,
      remotePublicKey: b.publicKey,
      sender: "b",
      receiver: "a",
      epoch: 7,
    });
    const baAtB = deriveEspKey({
      localPrivateKey: b.privateKey,
      remotePublicKey: a.publicKey,
      sender: "b",
      receiver: "a",
      epoch: 7,
    });
    assert.equal(abAtA.key.length, 16);
    assert.equal(abAtA.salt.length, 4);
    assert.equal(hex(abAtA), hex(abAtB));
    assert.equal(hex(baAtA), hex(baAtB));
    assert.notEqual(hex(abAtA), hex(baAtA));
  });

  it("every binding input changes the key", () => {
    const base = {
      localPrivateKey: a.privateKey,
      remotePublicKey: b.publicKey,
      sender: "a",
      receiver: "b",
      epoch: 7,
    };
    const ref = hex(deriveEspKey(base));
    const variants = [
      { epoch: 8 },
      { sender: "a2" },
      { receiver: "b2" },
      { sender: "b", receiver: "a" },
      { remotePublicKey: c.publicKey },
      { localPrivateKey: c.privateKey },
      // Length prefixes keep ("ab","c") and ("a","bc") apart.
      { sender: "ab", receiver: "c" },
    ];
    const seen = new Set([ref]);
    for (const v of variants) {
      const k = hex(deriveEspKey({ ...base, ...v }));
      assert.equal(seen.has(k), false, JSON.stringify(Object.keys(v)));
      seen.add(k);
    }
    assert.notEqual(
      hex(deriveEspKey({ ...base, sender: "ab", receiver: "c" })),
      hex(deriveEspKey({ ...base, sender: "a", receiver: "bc" })),
    );
  });

  it("info is the documented byte string", () => {
    const info = espKeyInfo("node-b", "node-a", 258);
    const want = Buffer.concat([
      Buffer.from("podcrypt esp v1"),
      Buffer.from([0, 6]),
      Buffer.from("node-a"),
      Buffer.from([0, 6]),
      Buffer.from("node-b"),
      Buffer.from([2]),
      Buffer.from("0000000000000102", "hex"),
    ]);
    assert.deepEqual(info, want);
  });

  it("rejects bad inputs with ValidationErrors naming the field", () => {
    const base = {
      localPrivateKey: a.privateKey,
      remotePublicKey: b.publicKey,
      sender: "a",
      receiver: "b",
      epoch: 1,
    };
    for (const [bad, field] of [
      [{ epoch: 0 }, "epoch"],
      [{ epoch: 1.5 }, "epoch"],
      [{ sender: "" }, "sender"],
      [{ receiver: "a" }, "receiver"],
      [{ remotePublicKey: Buffer.alloc(31) }, "publicKey"],
    ] as const) {
      assert.throws(
        () => deriveEspKey({ ...base, ...bad }),
        (e: unknown) => isValidationError(e) && e.field === field,
      );
    }
  });
});

describe("key IDs and SPIs", () => {
  it("key IDs run 1..15 and wrap", () => {
    const table: Array<[number, number]> = [
      [1, 1],
      [2, 2],
      [15, 15],
      [16, 1],
      [17, 2],
      [30, 15],
      [31, 1],
    ];
    for (const [epoch, id] of table) assert.equal(keyIdForEpoch(epoch), id, `epoch ${epoch}`);
  });

  it("SPIs carry the key ID in the top 4 bits, are >= 256, differ per direction and key ID", () => {
    for (let id = 1; id <= 15; id++) {
      const spi = spiFor(id, "a", "b");
      assert.equal(keyIdOfSpi(spi), id);
      assert.ok(spi >= 256 && spi <= 0xffff_ffff);
      assert.equal(spi & 0x0fff_ffff, spiFor(1, "a", "b") & 0x0fff_ffff);
    }
    assert.notEqual(spiFor(3, "a", "b"), spiFor(3, "b", "a"));
    assert.equal(spiFor(3, "a", "b"), spiFor(3, "a", "b"));
    // 200 senders to one receiver: no collisions expected (probability ~ 7e-5).
    const spis = new Set(Array.from({ length: 200 }, (_, i) => spiFor(5, `node-${i}`, "rx")));
    assert.equal(spis.size, 200);
    assert.throws(() => spiFor(0, "a", "b"), isValidationError);
    assert.throws(() => spiFor(16, "a", "b"), isValidationError);
  });
});
