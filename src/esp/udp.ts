/**
 * UDP encapsulation of ESP, RFC 3948. The data plane's UDP socket on port 4500 hands every
 * datagram payload to `receiveDatagram`, which tells ESP from the other things that share the
 * port (section 2): a 4-byte zero non-ESP marker (IKE, section 2.2) and the one-byte NAT-keepalive
 * 0xFF (section 2.3). podcrypt speaks no IKE, so marked datagrams are dropped and counted; keepalives
 * are ignored and counted.
 */
import { decapsulate, type DecapResult } from "./codec.js";
import type { SaDatabase } from "./sadb.js";

/** The IKE NAT-traversal port ESP-in-UDP uses (RFC 3948 section 2, RFC 7296 section 2.23). */
export const ESP_IN_UDP_PORT = 4500;
/** UDP header length. */
export const UDP_HEADER_LENGTH = 8;

export type UdpPayloadKind = "esp" | "ike" | "nat-keepalive" | "malformed";

/** What a UDP 4500 payload is, from its first bytes alone (RFC 3948 sections 2.1 to 2.3). */
export function classifyUdpPayload(payload: Buffer): UdpPayloadKind {
  return classifyUdpPayloadAt(payload, 0, payload.length);
}

/** {@link classifyUdpPayload} of the `length` bytes at `buf[offset]`, without a subarray. */
export function classifyUdpPayloadAt(buf: Buffer, offset: number, length: number): UdpPayloadKind {
  if (length === 1 && buf[offset] === 0xff) return "nat-keepalive";
  if (length >= 4 && buf.readUInt32BE(offset) === 0) return "ike";
  // An ESP header is 8 bytes; a zero SPI cannot occur in ESP (RFC 4303 section 2.1), so a
  // shorter non-marker payload is garbage.
  if (length < 8) return "malformed";
  return "esp";
}

/**
 * Handles one datagram received on port 4500: ESP is decapsulated, everything else is counted
 * and dropped. Never throws on the bytes.
 */
export function receiveDatagram(db: SaDatabase, payload: Buffer, now: number): DecapResult {
  const kind = classifyUdpPayload(payload);
  if (kind === "esp") return decapsulate(db, payload, now);
  db.drops.count(kind);
  return { ok: false, reason: kind };
}

/**
 * Prepends a UDP header to an ESP packet (RFC 3948 section 2.1), for raw-socket senders and
 * captures. The checksum is 0, which RFC 3948 section 3.1.1 says is what IPv4 senders SHOULD
 * send; over IPv6 a checksum is required (RFC 8200 section 8.1) and must be filled by the caller
 * or the kernel.
 */
export function udpEncapsulate(esp: Buffer, srcPort = ESP_IN_UDP_PORT, dstPort = ESP_IN_UDP_PORT): Buffer {
  const header = Buffer.alloc(UDP_HEADER_LENGTH);
  header.writeUInt16BE(srcPort, 0);
  header.writeUInt16BE(dstPort, 2);
  header.writeUInt16BE(UDP_HEADER_LENGTH + esp.length, 4);
  header.writeUInt16BE(0, 6);
  return Buffer.concat([header, esp]);
}
