/**
 * The cryptographic primitives of WireGuard (whitepaper section 5.4 "Messages", first list):
 * DH = X25519 (RFC 7748), HASH = BLAKE2s-256 and MAC = keyed BLAKE2s-128 (RFC 7693), HMAC and the
 * HKDF-style KDF over BLAKE2s (RFC 2104 / RFC 5869 as used by Noise), AEAD = ChaCha20-Poly1305
 * (RFC 8439), XAEAD = XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) and TAI64N timestamps.
 *
 * X25519 is the node keys' (src/keys/x25519.ts: keys, base64 text, the agreement that `dh` wraps);
 * it and ChaCha20-Poly1305 run in OpenSSL through node:crypto; BLAKE2s and XChaCha20 come from
 * the audited @noble packages (OpenSSL has no keyed BLAKE2s-128 in Node's API).
 */
import { createCipheriv, createDecipheriv, timingSafeEqual } from "node:crypto";
import { blake2s } from "@noble/hashes/blake2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ValidationError } from "../errors/index.js";
import { sharedSecret } from "../keys/x25519.js";
import { AEAD_TAG_SIZE, KEY_SIZE, MAC_SIZE, TIMESTAMP_SIZE } from "./constants.js";

const toBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/**
 * Whitepaper 5.4 DH: X25519(private, public) (RFC 7748 section 5). Returns undefined when the result
 * is all zeros (a low-order public key), which WireGuard must reject; never throws on peer input.
 */
export function dh(privateKey: Buffer, publicKey: Buffer): Buffer | undefined {
  if (privateKey.length !== KEY_SIZE || publicKey.length !== KEY_SIZE) return undefined;
  try {
    return sharedSecret(privateKey, publicKey);
  } catch {
    return undefined; // a low-order point: OpenSSL refuses it, or the result is all zeros
  }
}

/** True when every byte is zero (constant time in the length). */
export function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

/** Constant-time equality of two byte strings of equal length (false when lengths differ). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Whitepaper 5.4 HASH(input): BLAKE2s with a 32-byte digest (RFC 7693). */
export function hash(...parts: Uint8Array[]): Buffer {
  const h = blake2s.create({ dkLen: 32 });
  for (const p of parts) h.update(p);
  return toBuffer(h.digest());
}

/** Whitepaper 5.4 MAC(key, input): keyed BLAKE2s with a 16-byte digest (RFC 7693 section 2.5). */
export function mac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = blake2s.create({ key, dkLen: MAC_SIZE });
  for (const p of parts) h.update(p);
  return toBuffer(h.digest());
}

/** Whitepaper 5.4 HMAC(key, input): HMAC (RFC 2104) over BLAKE2s-256. */
export function hmacBlake2s(key: Uint8Array, input: Uint8Array): Buffer {
  return toBuffer(hmac(blake2s, key, input));
}

/**
 * Whitepaper 5.4 KDFn(key, input): tau0 = HMAC(key, input), tau1 = HMAC(tau0, 0x1),
 * tau_i = HMAC(tau0, tau_{i-1} || i). Returns n 32-byte outputs (n = 1..3).
 */
export function kdf(n: 1 | 2 | 3, key: Uint8Array, input: Uint8Array): Buffer[] {
  const prk = hmacBlake2s(key, input);
  const out: Buffer[] = [];
  let prev: Buffer = Buffer.alloc(0);
  for (let i = 1; i <= n; i++) {
    prev = hmacBlake2s(prk, Buffer.concat([prev, Buffer.of(i)]));
    out.push(prev);
  }
  prk.fill(0);
  return out;
}

/** The 12-byte ChaCha20-Poly1305 nonce of WireGuard: 32 zero bits then the 64-bit counter, little-endian (whitepaper 5.4.6). */
export function counterNonce(counter: number | bigint): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64LE(BigInt(counter), 4);
  return n;
}

/** RFC 8439 section 2.8 AEAD_CHACHA20_POLY1305 with a raw 12-byte nonce; returns ciphertext || tag. */
export function chachaPolySeal(key: Buffer, nonce: Buffer, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: AEAD_TAG_SIZE });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  c.final();
  return Buffer.concat([body, c.getAuthTag()]);
}

/** Opens a {@link chachaPolySeal} box; undefined when too short or the tag does not verify (never throws). */
export function chachaPolyOpen(
  key: Buffer,
  nonce: Buffer,
  sealed: Uint8Array,
  aad: Uint8Array,
): Buffer | undefined {
  if (sealed.length < AEAD_TAG_SIZE) return undefined;
  const ctLen = sealed.length - AEAD_TAG_SIZE;
  try {
    const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: AEAD_TAG_SIZE });
    d.setAAD(aad, { plaintextLength: ctLen });
    d.setAuthTag(sealed.subarray(ctLen));
    const body = d.update(sealed.subarray(0, ctLen));
    d.final();
    return body;
  } catch {
    return undefined;
  }
}

/** Whitepaper 5.4 AEAD(key, counter, plain, auth): ChaCha20-Poly1305 with the counter nonce; returns ciphertext || tag. */
export function aeadEncrypt(
  key: Buffer,
  counter: number | bigint,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Buffer {
  return chachaPolySeal(key, counterNonce(counter), plaintext, aad);
}

/** Opens an {@link aeadEncrypt} box; undefined when the tag does not verify (never throws). */
export function aeadDecrypt(
  key: Buffer,
  counter: number | bigint,
  sealed: Uint8Array,
  aad: Uint8Array,
): Buffer | undefined {
  return chachaPolyOpen(key, counterNonce(counter), sealed, aad);
}

/** Whitepaper 5.4 XAEAD: XChaCha20-Poly1305 with a 24-byte nonce (used only by cookie replies, 5.4.7). */
export function xaeadEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Buffer {
  return toBuffer(xchacha20poly1305(key, nonce, aad).encrypt(plaintext));
}

/** Opens an {@link xaeadEncrypt} box; undefined on failure (never throws). */
export function xaeadDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
): Buffer | undefined {
  try {
    return toBuffer(xchacha20poly1305(key, nonce, aad).decrypt(sealed));
  } catch {
    return undefined;
  }
}

/** TAI64 label of the Unix epoch: 2^62 + 10 (TAI - UTC offset in 1970), as wireguard-go's tai64n.go. */
const TAI64_BASE = 0x400000000000000an;
/** wireguard-go rounds nanoseconds down to ~16.7 ms so a timestamp does not leak a fine-grained clock. */
const TAI64N_WHITENER = 0x1000000;

/** Whitepaper 5.4.2: TAI64N timestamp (12 bytes, big-endian seconds label then nanoseconds) of a wall-clock time in ms. */
export function tai64n(wallMs: number): Buffer {
  const out = Buffer.alloc(TIMESTAMP_SIZE);
  const sec = Math.floor(wallMs / 1000);
  const nsec = Math.floor((wallMs - sec * 1000) * 1e6);
  out.writeBigUInt64BE(TAI64_BASE + BigInt(sec), 0);
  out.writeUInt32BE(nsec - (nsec % TAI64N_WHITENER), 8);
  return out;
}

/** Compares two TAI64N timestamps as big-endian byte strings: true when `a` is strictly after `b`. */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) > 0;
}

/** Parses a hex key (64 hex digits) as the UAPI carries it; ValidationError names `field`. */
export function parseKeyHex(text: string, field = "key"): Buffer {
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new ValidationError(field, "not a hex 32-byte key");
  return Buffer.from(text, "hex");
}

/** Lower-case hex of a key, as the UAPI `get` prints it. */
export function keyToHex(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString("hex");
}
