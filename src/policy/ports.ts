import { ValidationError } from "../errors/index.js";
import { PROTOCOLS, type PortSpec, type Protocol } from "./types.js";

/** Lowest and highest valid port; 0 is "any" to the kernel and never a service port. */
export const MIN_PORT = 1;
export const MAX_PORT = 65535;

/** Protocols people write that have no ports; named in the error so the fix is obvious. */
const PORTLESS = new Set(["icmp", "icmpv6", "ipv6-icmp", "esp", "ah", "gre", "ipip"]);

/**
 * Parses one `proto/port` entry (`tcp/80`, `UDP/53`); protocols are case-insensitive and come out
 * lower case. Port ranges (`tcp/8000-8080`) are refused: neither the stored model nor StarlingX has
 * them. Throws a ValidationError naming `field`.
 */
export function parsePortEntry(entry: string, field: string): PortSpec {
  const text = entry.trim();
  if (text === "") throw new ValidationError(field, "empty entry in the port list (check for a stray comma)");
  const slash = text.indexOf("/");
  if (slash < 0) {
    if (/^\d+$/.test(text))
      throw new ValidationError(
        field,
        `"${text}" has no protocol: write tcp/${text}, udp/${text} or sctp/${text}`,
      );
    throw new ValidationError(field, `"${text}" is not proto/port (for example tcp/80 or udp/53)`);
  }
  const proto = text.slice(0, slash).trim().toLowerCase();
  const portText = text.slice(slash + 1).trim();
  if (PORTLESS.has(proto))
    throw new ValidationError(field, `protocol "${proto}" has no ports; use tcp, udp or sctp`);
  if (!(PROTOCOLS as readonly string[]).includes(proto))
    throw new ValidationError(
      field,
      `unknown protocol "${text.slice(0, slash).trim()}" in "${text}"; use tcp, udp or sctp`,
    );
  if (/^\d+\s*-\s*\d+$/.test(portText))
    throw new ValidationError(field, `port ranges such as "${text}" are not supported; list each port`);
  if (!/^\d+$/.test(portText))
    throw new ValidationError(field, `"${portText}" in "${text}" is not a port number`);
  const port = Number(portText);
  if (port < MIN_PORT || port > MAX_PORT)
    throw new ValidationError(field, `port ${port} is out of range ${MIN_PORT}-${MAX_PORT}`);
  return { protocol: proto as Protocol, port };
}

/**
 * Parses a port list as StarlingX and podcrypt write it: `"udp/53,tcp/53,tcp/9153"` (spaces allowed
 * around commas), or an array of entries. Duplicates are refused. Throws a ValidationError naming
 * `field`.
 */
export function parsePortList(value: string | readonly string[], field: string): PortSpec[] {
  const entries = typeof value === "string" ? value.split(",") : value;
  if (entries.length === 0 || (entries.length === 1 && entries[0]!.trim() === ""))
    throw new ValidationError(field, "must list at least one port (for example tcp/80)");
  const out: PortSpec[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    const spec = parsePortEntry(entry, field);
    const key = formatPort(spec);
    if (seen.has(key)) throw new ValidationError(field, `duplicate port ${key}`);
    seen.add(key);
    out.push(spec);
  }
  return out;
}

/** `tcp/80`. */
export function formatPort(p: PortSpec): string {
  return `${p.protocol}/${p.port}`;
}

/** The canonical list string, in the order given: `udp/53,tcp/53`. */
export function formatPortList(ports: readonly PortSpec[]): string {
  return ports.map(formatPort).join(",");
}
