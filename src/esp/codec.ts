/**
 * ESP tunnel mode (RFC 4303) with AES-GCM (RFC 4106): bytes in, bytes or a drop reason out.
 *
 * Wire layout (RFC 4303 section 2, RFC 4106 section 3):
 *
 *   SPI (4) | Sequence Number (4) | IV (8) | ciphertext of [inner IP packet | Padding | Pad Length (1)
 *   | Next Header (1)] | ICV (8, 12 or 16)
 *
 * Tunnel mode carries the whole inner IP packet; Next Header is 4 (IPv4) or 41 (IPv6) (RFC 4303
 * section 2.6). GCM needs no block padding, but the ciphertext must end on a 4-byte boundary
 * (section 2.4), so 0..3 padding bytes 1, 2, 3 are added (the default contents of section 2.4).
 *
 * Packet-path problems come back as `{ ok: false, reason }` and are counted in the SA database;
 * nothing here throws on input bytes.
 */
import { ESP_IV_LENGTH, gcmOpen, gcmSeal } from "./gcm.js";
import type { EspDropReason } from "./drops.js";
import type { InboundSa, OutboundSa } from "./sa.js";
import type { SaDatabase } from "./sadb.js";

/** IP protocol numbers used as ESP Next Header (IANA). */
export const NEXT_HEADER_IPV4 = 4;
export const NEXT_HEADER_IPV6 = 41;
/** "No next header": a dummy packet (RFC 4303 section 2.6). */
export const NEXT_HEADER_NONE = 59;

/** SPI + sequence number. */
export const ESP_HEADER_LENGTH = 8;

/**
 * Bytes ESP adds to an inner packet of length `innerLength` with this ICV length: header, IV,
 * padding to 4 bytes, pad length, next header and ICV. For MTU arithmetic.
 */
export function espOverhead(innerLength: number, icvLength = 16): number {
  const pad = (4 - ((innerLength + 2) % 4)) % 4;
  return ESP_HEADER_LENGTH + ESP_IV_LENGTH + pad + 2 + icvLength;
}

export type EncapResult =
  { ok: true; packet: Buffer; seq: number; rekeySoon: boolean } | { ok: false; reason: EspDropReason };

export type DecapResult =
  | { ok: true; inner: Buffer; nextHeader: 4 | 41; sa: InboundSa; seq: number }
  | { ok: false; reason: EspDropReason; spi?: number };

/** Next Header for an inner IP packet from its version nibble, or undefined if it is not IP. */
function nextHeaderOf(inner: Buffer): 4 | 41 | undefined {
  if (inner.length >= 20 && inner[0]! >> 4 === 4) return NEXT_HEADER_IPV4;
  if (inner.length >= 40 && inner[0]! >> 4 === 6) return NEXT_HEADER_IPV6;
  return undefined;
}

/** The AAD of RFC 4106 section 5: SPI || seq (32-bit), or SPI || seq high || seq low with ESN. */
function aadFor(spi: number, seq: number, esn: boolean): Buffer {
  const aad = Buffer.allocUnsafe(esn ? 12 : 8);
  aad.writeUInt32BE(spi, 0);
  if (esn) {
    aad.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 4);
    aad.writeUInt32BE(seq % 0x1_0000_0000, 8);
  } else {
    aad.writeUInt32BE(seq, 4);
  }
  return aad;
}

/** The explicit IV: the 64-bit sequence number, big-endian (see sa.ts for why this is unique). */
function ivFor(seq: number): Buffer {
  const iv = Buffer.allocUnsafe(ESP_IV_LENGTH);
  iv.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 0);
  iv.writeUInt32BE(seq % 0x1_0000_0000, 4);
  return iv;
}

/**
 * Encrypts one inner IP packet for `sa` (RFC 4303 section 3.3). Takes the SA's next sequence
 * number; at exhaustion returns reason "seq-exhausted" and sends nothing. `rekeySoon` in the
 * result mirrors the SA's threshold so the caller can signal the controller.
 */
export function encapsulate(sa: OutboundSa, inner: Buffer, now: number): EncapResult {
  const nextHeader = nextHeaderOf(inner);
  if (nextHeader === undefined) return { ok: false, reason: "malformed" };
  const seq = sa.nextSequence();
  if (seq === undefined) return { ok: false, reason: "seq-exhausted" };

  const padLength = (4 - ((inner.length + 2) % 4)) % 4;
  const plaintext = Buffer.allocUnsafe(inner.length + padLength + 2);
  inner.copy(plaintext, 0);
  for (let i = 1; i <= padLength; i++) plaintext[inner.length + i - 1] = i;
  plaintext[plaintext.length - 2] = padLength;
  plaintext[plaintext.length - 1] = nextHeader;

  const iv = ivFor(seq);
  const sealed = gcmSeal(sa.key, sa.salt, iv, aadFor(sa.spi, seq, sa.esn), plaintext, sa.icvLength);
  const header = Buffer.allocUnsafe(ESP_HEADER_LENGTH);
  header.writeUInt32BE(sa.spi, 0);
  header.writeUInt32BE(seq % 0x1_0000_0000, 4);
  sa.account(inner.length, now);
  return { ok: true, packet: Buffer.concat([header, iv, sealed]), seq, rekeySoon: sa.rekeySoon };
}

function drop(db: SaDatabase, reason: EspDropReason, spi?: number): DecapResult {
  db.drops.count(reason);
  return spi === undefined ? { ok: false, reason } : { ok: false, reason, spi };
}

/**
 * Verifies and decrypts one ESP packet (RFC 4303 section 3.4): SA lookup by SPI, replay check
 * before the ICV, ICV, window update only after the ICV verified, then the trailer and the inner
 * header. Every failure is counted in `db.drops` (and the SA's own counters) and returned.
 */
export function decapsulate(db: SaDatabase, packet: Buffer, now: number): DecapResult {
  if (packet.length < ESP_HEADER_LENGTH + ESP_IV_LENGTH) return drop(db, "malformed");
  const spi = packet.readUInt32BE(0);
  const low = packet.readUInt32BE(4);
  const candidates = db.inboundCandidates(spi);
  if (candidates.length === 0) return drop(db, "unknown-spi", spi);

  const iv = packet.subarray(ESP_HEADER_LENGTH, ESP_HEADER_LENGTH + ESP_IV_LENGTH);
  const sealed = packet.subarray(ESP_HEADER_LENGTH + ESP_IV_LENGTH);
  // With colliding SPIs the most telling reason wins: a replay on one SA explains an ICV
  // failure on another.
  let reason: EspDropReason = "malformed";
  const note = (r: EspDropReason): void => {
    if (r === "replay" || (r === "auth-failed" && reason === "malformed")) reason = r;
  };
  for (const sa of candidates) {
    const bodyLength = sealed.length - sa.icvLength;
    // At least pad length + next header, ending on a 4-byte boundary (section 2.4).
    if (bodyLength < 2 || (ESP_HEADER_LENGTH + ESP_IV_LENGTH + bodyLength) % 4 !== 0) {
      note("malformed");
      continue;
    }
    const seq = sa.fullSequence(low);
    if (!sa.replay.check(seq)) {
      if (candidates.length === 1) sa.replayDrops += 1;
      note("replay");
      continue;
    }
    const plaintext = gcmOpen(sa.key, sa.salt, iv, aadFor(spi, seq, sa.esn), sealed, sa.icvLength);
    if (plaintext === undefined) {
      if (candidates.length === 1) sa.authFailures += 1;
      note("auth-failed");
      continue;
    }
    // Authenticated: from here on this SA owns the packet.
    if (!sa.replay.update(seq)) return drop(db, "replay", spi);
    return openTrailer(db, sa, plaintext, seq, now);
  }
  return drop(db, reason, spi);
}

/**
 * The checks of an authenticated, decrypted ESP payload (inner packet, padding, pad length, next
 * header; RFC 4303 section 2.4 and 2.6): the inner packet, or a counted drop. The replay window
 * must have been updated before. Exported for the batched receive path of the userspace data
 * plane, which decrypts in native code.
 */
export function openTrailer(
  db: SaDatabase,
  sa: InboundSa,
  plaintext: Buffer,
  seq: number,
  now: number,
): DecapResult {
  const nextHeader = plaintext[plaintext.length - 1]!;
  const padLength = plaintext[plaintext.length - 2]!;
  const payloadLength = plaintext.length - 2 - padLength;
  if (payloadLength < 0) return drop(db, "bad-padding", sa.spi);
  for (let i = 0; i < padLength; i++) {
    if (plaintext[payloadLength + i] !== i + 1) return drop(db, "bad-padding", sa.spi);
  }
  if (nextHeader === NEXT_HEADER_NONE) return drop(db, "dummy", sa.spi);
  let inner = plaintext.subarray(0, payloadLength);
  if (nextHeader === NEXT_HEADER_IPV4) {
    if (inner.length < 20 || inner[0]! >> 4 !== 4) return drop(db, "malformed", sa.spi);
    const total = inner.readUInt16BE(2);
    if (total < 20 || total > inner.length) return drop(db, "malformed", sa.spi);
    // Anything after the inner packet is TFC padding (RFC 4303 section 2.7).
    inner = inner.subarray(0, total);
  } else if (nextHeader === NEXT_HEADER_IPV6) {
    if (inner.length < 40 || inner[0]! >> 4 !== 6) return drop(db, "malformed", sa.spi);
    const total = 40 + inner.readUInt16BE(4);
    if (total > inner.length) return drop(db, "malformed", sa.spi);
    inner = inner.subarray(0, total);
  } else {
    return drop(db, "malformed", sa.spi);
  }
  sa.account(inner.length, now);
  return { ok: true, inner, nextHeader, sa, seq };
}
