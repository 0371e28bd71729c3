import { isIPv4, isIPv6 } from "node:net";
import { ValidationError } from "../../errors/index.js";

/**
 * Canonical text of an IP address as the kernel tools print it (IPv4 dotted quad, IPv6 compressed
 * lower case), so desired and installed values compare as strings.
 */
export function canonicalIp(address: string, field = "address"): string {
  if (isIPv4(address)) return address.split(".").map(Number).join(".");
  if (isIPv6(address)) return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  throw new ValidationError(field, `not an IP address: ${address}`);
}

/**
 * Canonical CIDR: address with host bits cleared (as WireGuard's allowed IPs and the routing
 * table store it) and an explicit prefix length (/32 or /128 when none was given).
 */
export function canonicalCidr(cidr: string, field = "cidr"): string {
  const [addr = "", len] = cidr.split("/");
  const v6 = isIPv6(addr);
  if (!v6 && !isIPv4(addr)) throw new ValidationError(field, `not a CIDR: ${cidr}`);
  const bits = v6 ? 128 : 32;
  const prefix = len === undefined ? bits : Number(len);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits || (len !== undefined && !/^\d+$/.test(len)))
    throw new ValidationError(field, `bad prefix length: ${cidr}`);
  const bytes = v6 ? ipv6Bytes(addr) : addr.split(".").map(Number);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  const text = v6
    ? canonicalIp(
        Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16)).join(
          ":",
        ),
      )
    : bytes.join(".");
  return `${text}/${prefix}`;
}

/** The 16 bytes of an IPv6 address (validated by the caller). */
function ipv6Bytes(address: string): number[] {
  let text = canonicalIp(address);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const q = v4[1]!.split(".").map(Number);
    text =
      text.slice(0, -v4[1]!.length) +
      `${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

/** `address:port` as wg(8) prints an endpoint (IPv6 in brackets). */
export function formatEndpoint(address: string, port: number): string {
  const ip = canonicalIp(address, "endpoint.address");
  return isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** The address of a canonical or plain IP as a bigint, with its bit width. */
function ipBits(address: string): { value: bigint; bits: 32 | 128 } {
  if (isIPv4(address))
    return { value: address.split(".").reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n), bits: 32 };
  return { value: ipv6Bytes(address).reduce((acc, b) => (acc << 8n) | BigInt(b), 0n), bits: 128 };
}

/**
 * The addresses of a CIDR as a closed range of integers of its family (`bits` 32 or 128): two
 * CIDRs of one family share an address exactly when their ranges intersect, and then one contains
 * the other. Throws ValidationError on garbage.
 */
export function cidrRange(cidr: string): { bits: 32 | 128; first: bigint; last: bigint } {
  const [a, l] = canonicalCidr(cidr).split("/");
  const { value, bits } = ipBits(a!);
  const host = BigInt(bits - Number(l));
  return { bits, first: value, last: value | ((1n << host) - 1n) };
}

/**
 * Whether CIDR `inner` lies inside CIDR `outer` (same family, prefix at least as long, same
 * network bits). A bare address counts as a host CIDR. Throws ValidationError on garbage.
 */
export function cidrContains(outer: string, inner: string): boolean {
  const [oa, ol] = canonicalCidr(outer, "outer").split("/");
  const [ia, il] = canonicalCidr(inner, "inner").split("/");
  const o = ipBits(oa!);
  const i = ipBits(ia!);
  if (o.bits !== i.bits || Number(il) < Number(ol)) return false;
  const shift = BigInt(o.bits - Number(ol));
  return o.value >> shift === i.value >> shift;
}
