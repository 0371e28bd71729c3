import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isValidationError } from "../errors/index.js";
import { createHmac } from "node:crypto";
import { deriveEspKey, espKeyInfo, keyIdForEpoch, keyIdOfSpi, newSaInstance, spiFor } from "./derive.js";
import { generateKeyPair, sharedSecret } from "./x25519.js";

let counter = 0;
const rnd = (n: number): Buffer => Buffer.alloc(n, ++counter);
const a = generateKeyPair(rnd);
const b = generateKeyPair(rnd);
const c = generateKeyPair(rnd);

/** deriveEspKey of b -> a in epoch 258 with the keys and instances above (a regression vector). */
const PINNED = "301d41e1cb183e43399e6929dcd9e84dcc681ff8";

const hex = (m: { key: Buffer; salt: Buffer }): string => Buffer.concat([m.key, m.salt]).toString("hex");

/** SA instances of nodes "a" and "b" (src/keys/derive.ts). */
const IA = "a1".repeat(16);
const IB = "b2".repeat(16);
const inst = (n: string): string => (n.startsWith("a") ? IA : IB);
const ends = (sender: string, receiver: string) => ({
  sender,
  receiver,
  senderInstance: inst(sender),
  receiverInstance: inst(receiver),
});

describe("per-pair ESP key derivation", () => {
  it("both ends derive the same 16+4 bytes for a direction, different per direction", () => {
    const abAtA = deriveEspKey({
      localPrivateKey: a.privateKey,
      remotePublicKey: b.publicKey,
      ...ends("a", "b"),
      epoch: 7,
    });
    const abAtB = deriveEspKey({
      localPrivateKey: b.privateKey,
      remotePublicKey: a.publicKey,
      ...ends("a", "b"),
      epoch: 7,
    });
    const baAtA = deriveEspKey({
      localPrivateKey: a.privateKey,
      remotePublicKey: b.publicKey,
      ...ends("b", "a"),
      epoch: 7,
    });
    const baAtB = deriveEspKey({
      localPrivateKey: b.privateKey,
      remotePublicKey: a.publicKey,
      ...ends("b", "a"),
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
      ...ends("a", "b"),
      epoch: 7,
    };
    const ref = hex(deriveEspKey(base));
    const variants = [
      { epoch: 8 },
      { sender: "a2" },
      { receiver: "b2" },
      { sender: "b", receiver: "a" },
      { senderInstance: "c3".repeat(16) },
      { receiverInstance: "c3".repeat(16) },
      // The instances are bound to their node: swapping them is another key.
      { senderInstance: IB, receiverInstance: IA },
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

  it("info is the documented byte string: names and instances in lo/hi order", () => {
    const info = espKeyInfo("node-b", "node-a", 258, IB, IA);
    const want = Buffer.concat([
      Buffer.from("podcrypt esp v2"),
      Buffer.from([0, 6]),
      Buffer.from("node-a"),
      Buffer.from([0, 6]),
      Buffer.from("node-b"),
      Buffer.from(IA, "hex"),
      Buffer.from(IB, "hex"),
      Buffer.from([2]),
      Buffer.from("0000000000000102", "hex"),
    ]);
    assert.deepEqual(info, want);
  });

  it("matches HKDF-SHA256 computed by hand from HMAC (RFC 5869 section 2), and a pinned vector", () => {
    const d = { localPrivateKey: a.privateKey, remotePublicKey: b.publicKey, ...ends("b", "a"), epoch: 258 };
    const ikm = sharedSecret(a.privateKey, b.publicKey);
    const salt = Buffer.concat([
      Buffer.from("podcrypt esp v2 epoch"),
      Buffer.from("0000000000000102", "hex"),
    ]);
    const prk = createHmac("sha256", salt).update(ikm).digest();
    const t1 = createHmac("sha256", prk)
      .update(Buffer.concat([espKeyInfo("b", "a", 258, IB, IA), Buffer.from([1])]))
      .digest();
    assert.equal(hex(deriveEspKey(d)), t1.subarray(0, 20).toString("hex"));
    assert.equal(hex(deriveEspKey(d)), PINNED);
  });

  it("rejects bad inputs with ValidationErrors naming the field", () => {
    const base = {
      localPrivateKey: a.privateKey,
      remotePublicKey: b.publicKey,
      ...ends("a", "b"),
      epoch: 1,
    };
    for (const [bad, field] of [
      [{ epoch: 0 }, "epoch"],
      [{ epoch: 1.5 }, "epoch"],
      [{ sender: "" }, "sender"],
      [{ receiver: "a" }, "receiver"],
      [{ remotePublicKey: Buffer.alloc(31) }, "publicKey"],
      [{ senderInstance: "" }, "senderInstance"],
      [{ receiverInstance: "AB".repeat(16) }, "receiverInstance"],
      [{ receiverInstance: "ab".repeat(15) }, "receiverInstance"],
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
    const spi = (id: number, s: string, r: string): number => spiFor(id, s, r, inst(s), inst(r));
    for (let id = 1; id <= 15; id++) {
      const x = spi(id, "a", "b");
      assert.equal(keyIdOfSpi(x), id);
      assert.ok(x >= 256 && x <= 0xffff_ffff);
      assert.equal(x & 0x0fff_ffff, spi(1, "a", "b") & 0x0fff_ffff);
    }
    assert.notEqual(spi(3, "a", "b"), spi(3, "b", "a"));
    assert.equal(spi(3, "a", "b"), spi(3, "a", "b"));
    // 200 senders to one receiver: no collisions expected (probability ~ 7e-5).
    const spis = new Set(Array.from({ length: 200 }, (_, i) => spiFor(5, `node-${i}`, "rx", IA, IB)));
    assert.equal(spis.size, 200);
    assert.throws(() => spiFor(0, "a", "b", IA, IB), isValidationError);
    assert.throws(() => spiFor(16, "a", "b", IA, IB), isValidationError);
    assert.throws(() => spiFor(1, "a", "b", "x", IB), isValidationError);
  });

  it("a new SA instance of either end gives new SPIs (the kernel keys its states by SPI)", () => {
    const fresh = newSaInstance();
    assert.match(fresh, /^[0-9a-f]{32}$/);
    assert.notEqual(fresh, newSaInstance());
    const ref = spiFor(4, "a", "b", IA, IB);
    assert.notEqual(spiFor(4, "a", "b", fresh, IB), ref);
    assert.notEqual(spiFor(4, "a", "b", IA, fresh), ref);
    assert.notEqual(spiFor(4, "a", "b", IB, IA), ref);
    assert.equal(spiFor(4, "a", "b", IA, IB), ref);
  });
});
