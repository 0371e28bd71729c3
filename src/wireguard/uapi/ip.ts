/**
 * IP address, prefix and endpoint text as the UAPI carries it. The formats follow Go's
 * `net/netip` (which wireguard-go uses), so that `wg` sees byte-identical output from podcrypt and
 * wireguard-go: IPv4 dotted quad without leading zeros, IPv6 in RFC 5952 form with IPv4-mapped
 * addresses as `::ffff:a.b.c.d`, endpoints `a.b.c.d:port` and `[v6]:port`.
 */
import { formatIPv6, parseIPv4, parseIPv6, parseIp } from "../ip.js";

/** An IP address as bytes: 4 for IPv4, 16 for IPv6 (parsed by src/wireguard/ip.ts). */
export type IpBytes = Uint8Array;

/** An allowed-IPs entry: address bytes (masked when formatted) and prefix length. */
export interface IpPrefix {
  readonly address: IpBytes;
  readonly bits: number;
}

/** Formats address bytes as Go's netip.Addr.String() does (RFC 5952 for IPv6). */
export function formatIp(bytes: IpBytes): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  // IPv4-mapped: ::ffff:a.b.c.d
  if (bytes.subarray(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff)
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  return formatIPv6(bytes);
}

/** Parses `addr/bits` (the prefix length is mandatory, as in netip.ParsePrefix); undefined if invalid. */
export function parsePrefix(text: string): IpPrefix | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const address = parseIp(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  if (address === undefined || !/^\d{1,3}$/.test(bitsText)) return undefined;
  if (bitsText.length > 1 && bitsText.startsWith("0")) return undefined;
  const bits = Number(bitsText);
  if (bits > address.length * 8) return undefined;
  return { address, bits };
}

/** The prefix with the host bits cleared. */
export function maskPrefix(prefix: IpPrefix): IpPrefix {
  const out = new Uint8Array(prefix.address);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix.bits - 8 * i));
    out[i] = out[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return { address: out, bits: prefix.bits };
}

/** Formats a prefix masked, as wireguard-go prints allowed IPs (`10.0.0.0/24`, `fd00::/64`). */
export function formatPrefix(prefix: IpPrefix): string {
  const m = maskPrefix(prefix);
  return `${formatIp(m.address)}/${m.bits}`;
}

/** A parsed endpoint: address text in canonical form (never bracketed, zone dropped) and port. */
export interface ParsedEndpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * Parses `a.b.c.d:port` or `[v6]:port` (netip.ParseAddrPort: a literal address, no host names; an
 * IPv6 zone is accepted and dropped, as wireguard-go's bind does). Undefined if invalid.
 */
export function parseEndpoint(text: string): ParsedEndpoint | undefined {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return undefined;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    const zone = host.indexOf("%");
    if (zone >= 0) {
      if (zone === host.length - 1) return undefined;
      host = host.slice(0, zone);
    }
    if (parseIPv6(host) === undefined) return undefined;
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) return undefined;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (parseIPv4(host) === undefined) return undefined;
  }
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65535) return undefined;
  return { address: formatIp(parseIp(host)!), port };
}

/** Formats an endpoint as wireguard-go's DstToString: `a.b.c.d:port` or `[v6]:port`. */
export function formatEndpoint(endpoint: { address: string; port: number }): string {
  const bytes = parseIp(endpoint.address);
  const addr = bytes === undefined ? endpoint.address : formatIp(bytes);
  return addr.includes(":") ? `[${addr}]:${endpoint.port}` : `${addr}:${endpoint.port}`;
}
