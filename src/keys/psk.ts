/**
 * Cilium-compatible pre-shared key option (docs/design.md#keys-and-rotation: an option, never the default).
 *
 * The key string is Cilium's `cilium-ipsec-keys` secret line (seed 002):
 *
 *   <id>[+] rfc4106(gcm(aes)) <hex of 16-byte key || 4-byte salt> <ICV bits>
 *
 * e.g. `3+ rfc4106(gcm(aes)) 0x4b...d 128`. The ID is 1..15 (Cilium rejects 0 and anything above
 * its IPsecMaxKeyVersion, 15); the hex may carry a 0x prefix; ICV bits are 64, 96 or 128
 * (RFC 4106 section 6: 8, 12 or 16 octets).
 *
 * With `+`, as Cilium does since v1.16 (the global key is deprecated there: GHSA-pwqm-x5x6-5586),
 * every direction of every node pair gets its own key (pkg/datapath/linux/ipsec computeNodeIPsecKey):
 *
 *   keymat(src -> dst) = SHA-256(psk || srcIP || dstIP || srcBootID[0:36] || dstBootID[0:36])[0:20]
 *
 * with the node IPs as raw bytes (4 for IPv4, IPv4-mapped IPv6 reduced to 4, else 16) and the
 * boot IDs as the ASCII text of /proc/sys/kernel/random/boot_id, so keys change when a node
 * reboots. Without `+` the one key is used for every pair, as Cilium's legacy mode did; podcrypt
 * accepts it for migration only.
 *
 * SPIs stay podcrypt's layout (src/keys/derive.ts spiFor), not Cilium's SPI = key ID, which falls
 * in the IANA-reserved range 1..255 (RFC 4303 section 2.1).
 */
import { createHash } from "node:crypto";
import { isIPv4 } from "node:net";
import { ipv4Bytes, ipv6Bytes } from "../esp/ip.js";
import { ValidationError } from "../errors/index.js";
import type { EspKeyMaterial } from "./derive.js";
import { MAX_KEY_ID } from "./derive.js";

export const CILIUM_AEAD_ALGORITHM = "rfc4106(gcm(aes))";
const BOOT_ID_LENGTH = 36;

/** A parsed PSK line. `keymat` is secret: never log this object. */
export interface CiliumPsk {
  /** Key ID 1..15. */
  keyId: number;
  /** True when the ID carried `+`: derive per-pair keys. */
  perPair: boolean;
  /** ICV length in bytes (8, 12 or 16). */
  icvLength: 8 | 12 | 16;
  /** 16-byte AES key || 4-byte salt. */
  keymat: Buffer;
}

/**
 * Parses one PSK line. Errors are ValidationErrors whose field names the part that is wrong
 * (`<field>.keyId`, `.algorithm`, `.key`, `.icvBits`, or `<field>` for the overall shape); the
 * key itself never appears in a message.
 */
export function parseCiliumPsk(line: string, field = "psk"): CiliumPsk {
  const parts = line.trim().split(/\s+/);
  if (parts.length !== 4 || parts[0] === "") {
    throw new ValidationError(
      field,
      `expected 4 fields "<id>[+] ${CILIUM_AEAD_ALGORITHM} <hex key+salt> <icv bits>", got ${parts[0] === "" ? 0 : parts.length}`,
    );
  }
  const [idText, algorithm, hexText, icvText] = parts as [string, string, string, string];

  const m = /^([0-9]+)(\+?)$/.exec(idText);
  if (m === null)
    throw new ValidationError(
      `${field}.keyId`,
      `must be a number 1..${MAX_KEY_ID} with an optional '+', got "${idText}"`,
    );
  const keyId = Number(m[1]);
  if (keyId < 1 || keyId > MAX_KEY_ID) {
    throw new ValidationError(`${field}.keyId`, `must be 1..${MAX_KEY_ID}, got ${keyId}`);
  }

  if (algorithm !== CILIUM_AEAD_ALGORITHM) {
    throw new ValidationError(
      `${field}.algorithm`,
      `must be ${CILIUM_AEAD_ALGORITHM} (AES-GCM, RFC 4106), got "${algorithm}"`,
    );
  }

  const hex = hexText.replace(/^0x/i, "");
  if (!/^[0-9a-fA-F]*$/.test(hex)) throw new ValidationError(`${field}.key`, "must be hexadecimal");
  if (hex.length !== 40) {
    throw new ValidationError(
      `${field}.key`,
      `must be 40 hex digits (16-byte AES-128 key + 4-byte salt), got ${hex.length}`,
    );
  }

  const icvBits = /^[0-9]+$/.test(icvText) ? Number(icvText) : NaN;
  if (icvBits !== 64 && icvBits !== 96 && icvBits !== 128) {
    throw new ValidationError(`${field}.icvBits`, `must be 64, 96 or 128, got "${icvText}"`);
  }

  return {
    keyId,
    perPair: m[2] === "+",
    icvLength: (icvBits / 8) as 8 | 12 | 16,
    keymat: Buffer.from(hex, "hex"),
  };
}

/**
 * Parses a secret's whole `keys` value: one line per key, blank lines and `#` comments ignored.
 * The last line is the current key (Cilium's rule). Errors name the line: `psk[2].key`.
 */
export function parseCiliumPskFile(text: string): CiliumPsk[] {
  const out: CiliumPsk[] = [];
  text.split("\n").forEach((line, i) => {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) return;
    out.push(parseCiliumPsk(t, `psk[${i + 1}]`));
  });
  if (out.length === 0) throw new ValidationError("psk", "no key line found");
  return out;
}

function ipBytes(field: string, ip: string): Buffer {
  // Go's net.IP.To4(): IPv4 and IPv4-mapped IPv6 become 4 bytes, other IPv6 16.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  const v4 = mapped?.[1] ?? ip;
  if (isIPv4(v4)) return ipv4Bytes(v4);
  try {
    return ipv6Bytes(ip);
  } catch (cause) {
    throw new ValidationError(field, `not an IP address: "${ip}"`, { cause });
  }
}

/** Who sends and who receives, for the Cilium-style per-pair key. */
export interface CiliumPairInput {
  srcIp: string;
  dstIp: string;
  /** Sender's boot ID (at least 36 characters; the first 36 are used). */
  srcBootId: string;
  dstBootId: string;
}

/**
 * The key material of src -> dst under `psk`: Cilium's per-pair derivation when `psk.perPair`,
 * else the PSK itself.
 */
export function ciliumPairKey(psk: CiliumPsk, pair: CiliumPairInput): EspKeyMaterial {
  let keymat = psk.keymat;
  if (psk.perPair) {
    for (const [f, id] of [
      ["srcBootId", pair.srcBootId],
      ["dstBootId", pair.dstBootId],
    ] as const) {
      if (Buffer.byteLength(id) < BOOT_ID_LENGTH) {
        throw new ValidationError(f, `must be at least ${BOOT_ID_LENGTH} characters (a kernel boot_id)`);
      }
    }
    const digest = createHash("sha256")
      .update(psk.keymat)
      .update(ipBytes("srcIp", pair.srcIp))
      .update(ipBytes("dstIp", pair.dstIp))
      .update(Buffer.from(pair.srcBootId).subarray(0, BOOT_ID_LENGTH))
      .update(Buffer.from(pair.dstBootId).subarray(0, BOOT_ID_LENGTH))
      .digest();
    keymat = digest.subarray(0, psk.keymat.length);
  }
  return { key: Buffer.from(keymat.subarray(0, 16)), salt: Buffer.from(keymat.subarray(16, 20)) };
}
