/**
 * Per-pair ESP keys for IPsec mode: no cluster-wide secret. For the ordered pair sender ->
 * receiver in an epoch, both ends compute
 *
 *   ikm  = X25519(own private key, other node's public key of that epoch)   (RFC 7748 section 6.1)
 *   salt = "podcrypt esp v2 epoch" || uint64be(epoch)
 *   info = "podcrypt esp v2" || lp(lo) || lp(hi) || inst(lo) || inst(hi) || direction || uint64be(epoch)
 *   keymat = HKDF-SHA256(ikm, salt, info, 20 bytes)                           (RFC 5869 section 2)
 *
 * `lp(x)` is a 2-byte big-endian length followed by the UTF-8 node name; `lo`/`hi` are the two
 * names in byte order, so the info string names the unordered pair identically on both nodes,
 * and `direction` (1 = lo -> hi, 2 = hi -> lo) picks the direction. `inst(x)` is node x's current
 * SA instance: 16 random bytes the node publishes beside its public keys (`Node.saInstance`). The
 * 20 bytes are the RFC 4106 key material: AES-128 key || 4-byte salt (RFC 4106 section 8.1), the
 * layout the kernel's `rfc4106(gcm(aes))` takes.
 *
 * Why the instances: the GCM nonce of an ESP packet is the SA's salt and its 64-bit sequence
 * number (RFC 4106 sections 3.1 and 4), and an outbound SA starts its sequence at 1. Node keys
 * persist on disk for a whole epoch, so without the instances an SA rebuilt within the epoch (a
 * restarted ESP daemon, a rebooted node, kernel states flushed) would send nonces already used
 * under the same key. A node draws a new instance whenever its data plane may have lost an
 * outbound SA's sequence state (src/keys/sa-instance.ts says when), and never
 * rebuilds an outbound SA under the same (instances, epoch) otherwise: a removed peer's SAs stay
 * until their epoch is retired, and epochs never repeat. So (key, nonce) never repeats. Both
 * instances are bound, so either end losing its state also gives fresh inbound replay windows
 * under fresh keys: packets recorded before cannot be replayed into a restarted receiver.
 * Every input is bound: both names, both instances, direction, epoch, and (through the ECDH)
 * both nodes' keys of that epoch.
 */
import { createHash, hkdfSync, randomBytes } from "node:crypto";
import { ValidationError } from "../errors/index.js";
import { sharedSecret } from "./x25519.js";

export const ESP_KEY_LABEL = "podcrypt esp v2";
const SALT_LABEL = "podcrypt esp v2 epoch";
const SPI_LABEL = "podcrypt spi v2";

/** Bytes of an SA instance value (`Node.saInstance`, 32 hex digits). */
export const SA_INSTANCE_BYTES = 16;

/** Key IDs run 1..15 and wrap, like Cilium's (the seed's "3 rfc4106(gcm(aes)) ..." ID). */
export const MAX_KEY_ID = 15;

/** The ESP key material of one direction of one pair in one epoch. */
export interface EspKeyMaterial {
  /** AES-128 key (16 bytes). */
  key: Buffer;
  /** RFC 4106 salt (4 bytes). */
  salt: Buffer;
}

export interface PairDerivation {
  /** This node's private key of `epoch`. */
  localPrivateKey: Buffer;
  /** The other node's public key of `epoch`. */
  remotePublicKey: Buffer;
  /** Node name of the sender of this direction. */
  sender: string;
  /** Node name of the receiver of this direction. */
  receiver: string;
  /** The sender's current SA instance (32 hex digits). */
  senderInstance: string;
  /** The receiver's current SA instance (32 hex digits). */
  receiverInstance: string;
  /** Epoch, a positive integer. */
  epoch: number;
}

/** A new SA instance value: {@link SA_INSTANCE_BYTES} random bytes, hex. */
export function newSaInstance(): string {
  return randomBytes(SA_INSTANCE_BYTES).toString("hex");
}

function checkInstance(field: string, instance: string): Buffer {
  if (!/^[0-9a-f]{32}$/.test(instance))
    throw new ValidationError(field, `must be ${SA_INSTANCE_BYTES} bytes of lowercase hex`);
  return Buffer.from(instance, "hex");
}

function checkEpoch(epoch: number): void {
  if (!Number.isSafeInteger(epoch) || epoch < 1)
    throw new ValidationError("epoch", "must be a positive integer");
}

function checkName(field: string, name: string): Buffer {
  const b = Buffer.from(name, "utf8");
  if (b.length === 0 || b.length > 0xffff)
    throw new ValidationError(field, "must be 1..65535 bytes of UTF-8");
  return b;
}

function lengthPrefixed(b: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length, 0);
  return Buffer.concat([len, b]);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n), 0);
  return b;
}

/** The HKDF info string of the derivation above (exported for the interop notes and tests). */
export function espKeyInfo(
  sender: string,
  receiver: string,
  epoch: number,
  senderInstance: string,
  receiverInstance: string,
): Buffer {
  checkEpoch(epoch);
  const s = checkName("sender", sender);
  const r = checkName("receiver", receiver);
  const si = checkInstance("senderInstance", senderInstance);
  const ri = checkInstance("receiverInstance", receiverInstance);
  const cmp = Buffer.compare(s, r);
  if (cmp === 0) throw new ValidationError("receiver", "must differ from sender");
  const [lo, hi, loInstance, hiInstance, direction] = cmp < 0 ? [s, r, si, ri, 1] : [r, s, ri, si, 2];
  return Buffer.concat([
    Buffer.from(ESP_KEY_LABEL, "utf8"),
    lengthPrefixed(lo),
    lengthPrefixed(hi),
    loInstance,
    hiInstance,
    Buffer.from([direction]),
    u64(epoch),
  ]);
}

/** Derives the key material of sender -> receiver in `epoch` (same result on both nodes). */
export function deriveEspKey(d: PairDerivation): EspKeyMaterial {
  const info = espKeyInfo(d.sender, d.receiver, d.epoch, d.senderInstance, d.receiverInstance);
  const ikm = sharedSecret(d.localPrivateKey, d.remotePublicKey);
  const salt = Buffer.concat([Buffer.from(SALT_LABEL, "utf8"), u64(d.epoch)]);
  const okm = Buffer.from(hkdfSync("sha256", ikm, salt, info, 20));
  ikm.fill(0);
  return { key: okm.subarray(0, 16), salt: okm.subarray(16, 20) };
}

/** The key ID of an epoch: 1..15, wrapping (epoch 1 -> 1, 15 -> 15, 16 -> 1). */
export function keyIdForEpoch(epoch: number): number {
  checkEpoch(epoch);
  return ((epoch - 1) % MAX_KEY_ID) + 1;
}

/**
 * The SPI of sender -> receiver under `keyId` and the two nodes' SA instances. Layout (32 bits,
 * RFC 4303 section 2.1):
 *
 *   bits 31..28  key ID 1..15: the receiver sees the key generation before any lookup, and
 *                since it is never 0 every SPI is >= 2^28, far above the reserved 0..255
 *   bits 27..0   the first 28 bits of SHA-256("podcrypt spi v2" || lp(sender) || lp(receiver) ||
 *                senderInstance || receiverInstance): distinct per direction and, with high
 *                probability, per sender at one receiver and per instance (a new instance gives
 *                new SPIs, so the kernel, which keys its states by SPI, installs new states)
 *
 * A 28-bit hash can collide between two senders at one receiver (about n^2 / 2^29 for n nodes);
 * the SA database keeps both and the ICV picks the right SA (src/esp/sadb.ts).
 */
export function spiFor(
  keyId: number,
  sender: string,
  receiver: string,
  senderInstance: string,
  receiverInstance: string,
): number {
  if (!Number.isInteger(keyId) || keyId < 1 || keyId > MAX_KEY_ID) {
    throw new ValidationError("keyId", `must be an integer in 1..${MAX_KEY_ID}`);
  }
  const h = createHash("sha256")
    .update(SPI_LABEL)
    .update(lengthPrefixed(checkName("sender", sender)))
    .update(lengthPrefixed(checkName("receiver", receiver)))
    .update(checkInstance("senderInstance", senderInstance))
    .update(checkInstance("receiverInstance", receiverInstance))
    .digest();
  return ((keyId << 28) | (h.readUInt32BE(0) & 0x0fff_ffff)) >>> 0;
}

/** The key ID carried in an SPI made by `spiFor`. */
export function keyIdOfSpi(spi: number): number {
  return spi >>> 28;
}
