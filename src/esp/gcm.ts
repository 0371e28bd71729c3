/**
 * AES-GCM as ESP uses it (RFC 4106), through node:crypto (OpenSSL).
 *
 * RFC 4106 section 4: the 12-byte GCM nonce is the 4-byte salt (from the key material, section 8.1)
 * followed by the 8-byte explicit IV carried in each packet. Section 5: the AAD is SPI || 32-bit
 * sequence number, or SPI || high 32 bits || low 32 bits with extended sequence numbers. Section 6:
 * the ICV is the GCM tag truncated to 8, 12 or 16 octets (16 is the MUST and our default).
 */
import { createCipheriv, createDecipheriv } from "node:crypto";

/** AES-128 key length in bytes (RFC 4106 section 8.1: the key material is key || salt). */
export const GCM_KEY_LENGTH = 16;
/** Salt length in bytes (RFC 4106 section 4). */
export const GCM_SALT_LENGTH = 4;
/** Explicit per-packet IV length in bytes (RFC 4106 section 3.1). */
export const ESP_IV_LENGTH = 8;
/** Key material length as the kernel's `rfc4106(gcm(aes))` takes it: 16-byte key + 4-byte salt. */
export const GCM_KEYMAT_LENGTH = GCM_KEY_LENGTH + GCM_SALT_LENGTH;

/** ICV lengths RFC 4106 section 6 allows, in bytes. */
export type IcvLength = 8 | 12 | 16;
/** The default ICV length: RFC 4106 section 6 says 16 octets MUST be supported. */
export const DEFAULT_ICV_LENGTH: IcvLength = 16;

/** True when `n` is an ICV length RFC 4106 allows. */
export function isIcvLength(n: number): n is IcvLength {
  return n === 8 || n === 12 || n === 16;
}

function nonce(salt: Buffer, iv: Buffer): Buffer {
  return Buffer.concat([salt, iv], GCM_SALT_LENGTH + ESP_IV_LENGTH);
}

/**
 * Encrypts `plaintext` and returns ciphertext || ICV. `key` 16 bytes, `salt` 4 bytes, `iv` 8 bytes;
 * the (key, iv) pair must never repeat (RFC 4106 section 3.1).
 */
export function gcmSeal(
  key: Buffer,
  salt: Buffer,
  iv: Buffer,
  aad: Buffer,
  plaintext: Buffer,
  icvLength: IcvLength = DEFAULT_ICV_LENGTH,
): Buffer {
  const cipher = createCipheriv("aes-128-gcm", key, nonce(salt, iv), { authTagLength: icvLength });
  cipher.setAAD(aad);
  const head = cipher.update(plaintext);
  const tail = cipher.final();
  return Buffer.concat([head, tail, cipher.getAuthTag()]);
}

/**
 * Verifies and decrypts ciphertext || ICV. Returns the plaintext, or undefined when the ICV does not
 * verify (no plaintext is released then: RFC 4303 section 3.4.4).
 */
export function gcmOpen(
  key: Buffer,
  salt: Buffer,
  iv: Buffer,
  aad: Buffer,
  sealed: Buffer,
  icvLength: IcvLength = DEFAULT_ICV_LENGTH,
): Buffer | undefined {
  if (sealed.length < icvLength) return undefined;
  const body = sealed.subarray(0, sealed.length - icvLength);
  const tag = sealed.subarray(sealed.length - icvLength);
  const decipher = createDecipheriv("aes-128-gcm", key, nonce(salt, iv), { authTagLength: icvLength });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const head = decipher.update(body);
  try {
    const tail = decipher.final();
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    // OpenSSL reports a tag mismatch by throwing from final(); on the packet path that is a drop.
    return undefined;
  }
}
