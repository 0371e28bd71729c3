/**
 * Node key pairs: X25519 (RFC 7748) through node:crypto. A node makes one pair per epoch and
 * publishes only the public key (docs/design.md, "Keys"). Keys travel as canonical standard base64
 * of the 32 raw bytes, the encoding WireGuard tools use. The one X25519 helper set: the WireGuard
 * core's DH (src/wireguard/crypto.ts), the UAPI and the data planes use it too.
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from "node:crypto";
import type { RandomBytes } from "../clock.js";
import { PodcryptError, ValidationError } from "../errors/index.js";

export const X25519_KEY_LENGTH = 32;

/** PKCS#8 and SPKI DER prefixes for a raw X25519 key (RFC 8410 sections 4 and 7). */
const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

export interface NodeKeyPair {
  /** 32-byte private scalar, clamped (RFC 7748 section 5). Never logged. */
  readonly privateKey: Buffer;
  /** 32-byte public key (u-coordinate). */
  readonly publicKey: Buffer;
}

/** Clamps a 32-byte scalar as RFC 7748 section 5 decodeScalar25519 does, into a copy. */
export function clamp(scalar: Buffer): Buffer {
  const k = Buffer.from(scalar);
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k;
}

/**
 * The KeyObject of each private key buffer in use, so that deriving the keys of many peers from
 * one node key parses it once (OpenSSL's PKCS#8 decoding is most of an X25519 agreement's cost).
 * Entries die with their buffer; the copy detects a buffer changed in place (zeroed on retire).
 */
const privateKeyObjects = new WeakMap<Buffer, { copy: Buffer; object: KeyObject }>();

function privateKeyObject(privateKey: Buffer): KeyObject {
  if (privateKey.length !== X25519_KEY_LENGTH) {
    throw new ValidationError("privateKey", `must be ${X25519_KEY_LENGTH} bytes, got ${privateKey.length}`);
  }
  const cached = privateKeyObjects.get(privateKey);
  if (cached !== undefined && cached.copy.equals(privateKey)) return cached.object;
  const object = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, privateKey]),
    format: "der",
    type: "pkcs8",
  });
  privateKeyObjects.set(privateKey, { copy: Buffer.from(privateKey), object });
  return object;
}

/** As {@link privateKeyObjects}, for peer keys: both directions of a pair use the same one. */
const publicKeyObjects = new WeakMap<Buffer, { copy: Buffer; object: KeyObject }>();

function publicKeyObject(publicKey: Buffer): KeyObject {
  if (publicKey.length !== X25519_KEY_LENGTH) {
    throw new ValidationError("publicKey", `must be ${X25519_KEY_LENGTH} bytes, got ${publicKey.length}`);
  }
  const cached = publicKeyObjects.get(publicKey);
  if (cached !== undefined && cached.copy.equals(publicKey)) return cached.object;
  const object = createPublicKey({
    key: Buffer.concat([SPKI_PREFIX, publicKey]),
    format: "der",
    type: "spki",
  });
  publicKeyObjects.set(publicKey, { copy: Buffer.from(publicKey), object });
  return object;
}

/** The public key of a private key (X25519 of the base point, RFC 7748 section 6.1). */
export function publicFromPrivate(privateKey: Buffer): Buffer {
  const spki = createPublicKey(privateKeyObject(privateKey)).export({ format: "der", type: "spki" });
  return Buffer.from(spki.subarray(spki.length - X25519_KEY_LENGTH));
}

/** A fresh private key from the injected randomness (32 bytes, clamped, as `wg genkey` makes it). */
export function generatePrivateKey(random: RandomBytes): Buffer {
  return clamp(random(X25519_KEY_LENGTH));
}

/** A fresh key pair from the injected randomness (32 bytes, clamped). */
export function generateKeyPair(random: RandomBytes): NodeKeyPair {
  const privateKey = generatePrivateKey(random);
  return { privateKey, publicKey: publicFromPrivate(privateKey) };
}

/**
 * X25519(privateKey, publicKey). Throws PodcryptError "EKEYAGREEMENT" when the peer's public key
 * is a low-order point (the result would be all zeros: RFC 7748 section 6.1 says to check).
 */
export function sharedSecret(privateKey: Buffer, publicKey: Buffer): Buffer {
  let out: Buffer;
  try {
    out = diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey: publicKeyObject(publicKey) });
  } catch (cause) {
    if (cause instanceof ValidationError) throw cause;
    throw new PodcryptError("EKEYAGREEMENT", "X25519 failed: the peer's public key is not usable", { cause });
  }
  if (out.every((b) => b === 0)) {
    throw new PodcryptError("EKEYAGREEMENT", "X25519 gave the all-zero value: peer public key of low order");
  }
  return out;
}

/** Base64 of a 32-byte key, as `wg` prints it. */
export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("base64");
}

/**
 * True when `text` is the canonical standard base64 of exactly 32 bytes: 44 characters ending in a
 * single `=`, the last letter carrying 4 bits and 2 zero padding bits (so one of `AEIMQUYcgkosw048`).
 * The form `wg` prints and kernel WireGuard accepts; a non-canonical spelling of a key is refused
 * rather than silently read as another text of the same bytes.
 */
export function isBase64Key(text: string): boolean {
  return /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(text);
}

/** Parses {@link isBase64Key} text (surrounding whitespace ignored); `field` names it in the ValidationError. */
export function decodeKey(text: string, field = "key"): Buffer {
  const t = text.trim();
  if (!isBase64Key(t)) {
    throw new ValidationError(
      field,
      "must be the canonical base64 encoding of 32 bytes (44 characters ending in '=', as wg prints it)",
    );
  }
  return Buffer.from(t, "base64");
}
