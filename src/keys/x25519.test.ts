import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isPodcryptError, isValidationError } from "../errors/index.js";
import {
  clamp,
  decodeKey,
  encodeKey,
  generateKeyPair,
  isBase64Key,
  publicFromPrivate,
  sharedSecret,
} from "./x25519.js";

const h = (s: string): Buffer => Buffer.from(s, "hex");
// RFC 7748 section 6.1.
const alicePriv = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
const alicePub = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
const bobPriv = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
const bobPub = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
const shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

describe("X25519 node keys (RFC 7748)", () => {
  it("public-from-private and the shared secret match RFC 7748 section 6.1", () => {
    assert.deepEqual(publicFromPrivate(alicePriv), alicePub);
    assert.deepEqual(publicFromPrivate(bobPriv), bobPub);
    assert.deepEqual(sharedSecret(alicePriv, bobPub), shared);
    assert.deepEqual(sharedSecret(bobPriv, alicePub), shared);
  });

  it("generates clamped keys from the injected randomness", () => {
    let calls = 0;
    const pair = generateKeyPair((n) => {
      calls++;
      return Buffer.alloc(n, 0xff);
    });
    assert.equal(calls, 1);
    assert.deepEqual(pair.privateKey, clamp(Buffer.alloc(32, 0xff)));
    assert.equal(pair.privateKey[0]! & 7, 0);
    assert.equal(pair.privateKey[31]! & 0xc0, 0x40);
    assert.deepEqual(pair.publicKey, publicFromPrivate(pair.privateKey));
  });

  it("base64 encoding round-trips and rejects other lengths with a ValidationError naming the field", () => {
    assert.deepEqual(decodeKey(encodeKey(alicePub)), alicePub);
    assert.deepEqual(decodeKey(` ${encodeKey(alicePub)}\n`), alicePub);
    for (const bad of [
      "",
      "abc",
      Buffer.alloc(31).toString("base64"),
      Buffer.alloc(33).toString("base64"),
      "%".repeat(43) + "=",
      // The same 32 bytes spelled with non-zero padding bits: not the canonical text of any key.
      encodeKey(Buffer.alloc(32)).slice(0, 42) + "B=",
    ]) {
      assert.throws(
        () => decodeKey(bad, "node.publicKey"),
        (e: unknown) => isValidationError(e) && e.field === "node.publicKey",
      );
    }
  });

  it("accepts only the canonical base64 of 32 bytes (the last letter's 2 padding bits zero)", () => {
    const text = encodeKey(alicePub);
    assert.equal(isBase64Key(text), true);
    for (const last of "AEIMQUYcgkosw048")
      assert.equal(isBase64Key(`${text.slice(0, 42)}${last}=`), true, last);
    for (const last of "BFJNRVZdhlptx159/")
      assert.equal(isBase64Key(`${text.slice(0, 42)}${last}=`), false, last);
    assert.equal(isBase64Key(` ${text}`), false, "no whitespace (decodeKey trims it)");
  });

  it("refuses low-order public keys", () => {
    for (const low of [
      Buffer.alloc(32),
      h("0100000000000000000000000000000000000000000000000000000000000000"),
    ]) {
      assert.throws(
        () => sharedSecret(alicePriv, low),
        (e: unknown) => isPodcryptError(e, "EKEYAGREEMENT") && !e.message.includes(alicePriv.toString("hex")),
      );
    }
  });
});
