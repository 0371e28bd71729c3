/**
 * Minimal IPv4 and IPv6 packet builders for the tunnel's inner and outer headers (RFC 791 section
 * 3.1, RFC 8200 section 3) and the Internet checksum (RFC 1071). Used to frame ESP-in-UDP for
 * captures and by tests; the data plane itself sends through UDP sockets.
 */
import { isIPv4, isIPv6 } from "node:net";

/** IANA protocol numbers used here. */
export const IPPROTO_UDP = 17;
export const IPPROTO_ESP = 50;

/** RFC 1071 one's-complement sum of 16-bit words, folded and inverted. */
export function internetChecksum(data: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data.readUInt16BE(i);
  if (data.length % 2 === 1) sum += data[data.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Dotted-quad to 4 bytes; throws RangeError on anything else (control path only). */
export function ipv4Bytes(address: string): Buffer {
  if (!isIPv4(address)) throw new RangeError(`not an IPv4 address: ${address}`);
  return Buffer.from(address.split(".").map(Number));
}

/** IPv6 text to 16 bytes (with :: compression); throws RangeError on anything else. */
export function ipv6Bytes(address: string): Buffer {
  if (!isIPv6(address) || address.includes(".")) throw new RangeError(`not an IPv6 address: ${address}`);
  const [head = "", tail] = address.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** An IPv4 packet (20-byte header, no options, DF clear, TTL 64) with a valid header checksum. */
export function ipv4Packet(src: string, dst: string, protocol: number, payload: Buffer, id = 0): Buffer {
  const header = Buffer.alloc(20);
  header[0] = 0x45;
  header.writeUInt16BE(20 + payload.length, 2);
  header.writeUInt16BE(id & 0xffff, 4);
  header[8] = 64;
  header[9] = protocol;
  ipv4Bytes(src).copy(header, 12);
  ipv4Bytes(dst).copy(header, 16);
  header.writeUInt16BE(internetChecksum(header), 10);
  return Buffer.concat([header, payload]);
}

/** An IPv6 packet (40-byte header, hop limit 64). */
export function ipv6Packet(src: string, dst: string, nextHeader: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(40);
  header.writeUInt32BE(0x6000_0000, 0);
  header.writeUInt16BE(payload.length, 4);
  header[6] = nextHeader;
  header[7] = 64;
  ipv6Bytes(src).copy(header, 8);
  ipv6Bytes(dst).copy(header, 24);
  return Buffer.concat([header, payload]);
}

/** A UDP datagram (RFC 768) with its checksum over the IPv4 pseudo-header. */
export function udpOverIpv4(
  src: string,
  dst: string,
  srcPort: number,
  dstPort: number,
  data: Buffer,
): Buffer {
  const udp = Buffer.alloc(8 + data.length);
  udp.writeUInt16BE(srcPort, 0);
  udp.writeUInt16BE(dstPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  data.copy(udp, 8);
  const pseudo = Buffer.alloc(12);
  ipv4Bytes(src).copy(pseudo, 0);
  ipv4Bytes(dst).copy(pseudo, 4);
  pseudo[9] = IPPROTO_UDP;
  pseudo.writeUInt16BE(udp.length, 10);
  const sum = internetChecksum(Buffer.concat([pseudo, udp]));
  udp.writeUInt16BE(sum === 0 ? 0xffff : sum, 6);
  return ipv4Packet(src, dst, IPPROTO_UDP, udp);
}
