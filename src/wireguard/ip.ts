/**
 * IP address text <-> bytes and the address fields of IPv4 (RFC 791 section 3.1) and IPv6
 * (RFC 8200 section 3) headers, for cryptokey routing (whitepaper section 2). The one IP parser of
 * the WireGuard core: it reads addresses as Go's net/netip does (wireguard-go), and the UAPI's
 * text forms (uapi/ip.ts) are built on it.
 */
import { ValidationError } from "../errors/index.js";

/** Parses an IPv4 dotted quad the way Go's net/netip does (four parts, no leading zeros); undefined if invalid. */
export function parseIPv4(text: string): Buffer | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = Buffer.alloc(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p.startsWith("0"))) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

/**
 * Parses an IPv6 address (RFC 4291 section 2.2: hex groups, one "::", an embedded IPv4 tail in
 * the last two groups; no zone); undefined if invalid.
 */
export function parseIPv6(text: string): Buffer | undefined {
  if (text.length < 2 || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string, last: boolean): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (last && i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIPv4(p);
        if (v4 === undefined) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? groups(halves[1]!, true) : [];
  if (head === undefined || tail === undefined) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    all = head;
  }
  if (all.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** Parses IPv4 dotted-quad or IPv6 text (no brackets, no zone) into 4 or 16 bytes; undefined if invalid. */
export function parseIp(text: string): Buffer | undefined {
  return text.includes(":") ? parseIPv6(text) : parseIPv4(text);
}

/** Like {@link parseIp} but throws a ValidationError naming `field`. */
export function parseIpStrict(text: string, field: string): Buffer {
  const b = parseIp(text);
  if (b === undefined) throw new ValidationError(field, `not an IP address: ${JSON.stringify(text)}`);
  return b;
}

/** Canonical text of a 4- or 16-byte address (RFC 5952 for IPv6, as `wg` prints it). */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) throw new RangeError("address must be 4 or 16 bytes");
  return formatIPv6(b);
}

/**
 * RFC 5952 text of a 16-byte IPv6 address: lower-case hex groups without leading zeros, the
 * longest run of two or more zero groups (the first on ties) as "::" (section 4.2). IPv4-mapped
 * addresses get no special form here; callers that want `::ffff:a.b.c.d` check for it first.
 */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/**
 * The source or destination address of the IP packet at `buf[offset, offset+length)`, as a view
 * (4 bytes for IPv4, 16 for IPv6); undefined when the header is too short or the version unknown.
 */
export function packetAddress(
  buf: Buffer,
  offset: number,
  length: number,
  which: "src" | "dst",
): Buffer | undefined {
  if (length < 1 || offset + length > buf.length) return undefined;
  const version = buf[offset]! >> 4;
  if (version === 4) {
    if (length < 20) return undefined;
    const at = offset + (which === "src" ? 12 : 16);
    return buf.subarray(at, at + 4);
  }
  if (version === 6) {
    if (length < 40) return undefined;
    const at = offset + (which === "src" ? 8 : 24);
    return buf.subarray(at, at + 16);
  }
  return undefined;
}
