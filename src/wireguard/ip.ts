/**
 * IP address text <-> bytes and the address fields of IPv4 (RFC 791 section 3.1) and IPv6
 * (RFC 8200 section 3) headers, for cryptokey routing (whitepaper section 2).
 */
import { isIPv4, isIPv6 } from "node:net";
import { ValidationError } from "../errors/index.js";

/** Parses IPv4 dotted-quad or IPv6 text (no brackets, no zone) into 4 or 16 bytes; undefined if invalid. */
export function parseIp(text: string): Buffer | undefined {
  if (isIPv4(text)) return Buffer.from(text.split(".").map(Number));
  if (!isIPv6(text) || text.includes("%")) return undefined;
  let s = text;
  const lastColon = s.lastIndexOf(":");
  const last = s.slice(lastColon + 1);
  if (last.includes(".")) {
    // embedded IPv4 (RFC 4291 section 2.2, form 3): rewrite as two hex groups
    const v4 = last.split(".").map(Number);
    s = `${s.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const [head, rest] = s.includes("::") ? (s.split("::") as [string, string]) : [s, undefined];
  const parse = (p: string): number[] => (p === "" ? [] : p.split(":").map((h) => parseInt(h, 16)));
  const a = parse(head);
  const b = rest === undefined ? [] : parse(rest);
  const groups =
    rest === undefined ? a : [...a, ...Array<number>(Math.max(0, 8 - a.length - b.length)).fill(0), ...b];
  if (groups.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
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
