import { z } from "zod";
import { isBase64Key } from "../keys/x25519.js";

/**
 * A Kubernetes-style object name: a DNS-1123 subdomain (lower-case alphanumerics, `-` and `.`,
 * starting and ending with an alphanumeric, at most 253 characters).
 */
export const objectName = z
  .string()
  .min(1, "must not be empty")
  .max(253, "must be at most 253 characters")
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    "must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')",
  );

/** A Kubernetes namespace name: a DNS-1123 label (at most 63 characters). */
export const namespaceName = z
  .string()
  .min(1, "must not be empty")
  .max(63, "must be at most 63 characters")
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-1123 label (lower-case letters, digits, '-')");

/** An RFC 3339 timestamp with a `Z` or numeric offset, as Kubernetes writes them. */
export const timestamp = z.iso.datetime({ offset: true, message: "must be an RFC 3339 timestamp" });

/** An epoch number: 0 is "never keyed"; every rotation, enable or disable advances it by one. */
export const epochNumber = z.number().int("must be an integer").min(0, "must be >= 0");

/** A base64 X25519 public key (32 bytes). Never put a private key in a resource. */
export const publicKey = z
  .string()
  .refine(isBase64Key, "must be the base64 encoding of a 32-byte X25519 public key");

/** A data-plane mode, docs/design.md#data-planes. */
export const encryptionMode = z.enum(["wireguard", "ipsec"]);
/** A data-plane mode: `wireguard` (default) or `ipsec`. */
export type EncryptionMode = z.infer<typeof encryptionMode>;

/** A step of the make-before-break protocol (docs/design.md#keys-and-rotation); `idle` between runs. */
export const phase = z.enum(["idle", "prepare", "switch", "retire"]);
/** A step of the make-before-break protocol; `idle` between runs. */
export type Phase = z.infer<typeof phase>;

/** An IPv4 or IPv6 CIDR. */
export const cidr = z.union([z.cidrv4(), z.cidrv6()], { message: "must be an IPv4 or IPv6 CIDR" });

/** An IPv4 or IPv6 address. */
export const ipAddress = z.union([z.ipv4(), z.ipv6()], { message: "must be an IPv4 or IPv6 address" });

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go/Kubernetes style duration such as `1h`, `90m`, `1h30m`, `45s` or `500ms` into
 * milliseconds. Returns `undefined` when `s` is not one.
 */
export function parseDuration(s: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
  return total;
}

/** A positive duration string (`1h`, `30m`, `1h30m`, `45s`, `500ms`). */
export const duration = z
  .string()
  .refine((s) => (parseDuration(s) ?? 0) > 0, "must be a positive duration such as 1h, 30m or 45s");

/** One `proto/port` entry of a port list. */
export interface PortSpec {
  protocol: "tcp" | "udp" | "sctp";
  port: number;
}

/**
 * Parses a port list as policies and services write it: `"udp/53,tcp/9153"` (spaces allowed around
 * commas). Throws a plain Error naming the bad entry; schemas turn that into a ValidationError.
 */
export function parsePortList(s: string): PortSpec[] {
  const parts = s.split(",").map((p) => p.trim());
  if (parts.length === 0 || (parts.length === 1 && parts[0] === "")) throw new Error("must not be empty");
  return parts.map(parsePort);
}

/** Parses one `proto/port` entry such as `tcp/80`. */
export function parsePort(entry: string): PortSpec {
  const m = /^(tcp|udp|sctp)\/(\d{1,5})$/i.exec(entry.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535)
    throw new Error(`"${entry}" is not proto/port with proto tcp, udp or sctp and port 1..65535`);
  return { protocol: m[1]!.toLowerCase() as PortSpec["protocol"], port };
}

/** A comma-separated port list string, `"udp/53,tcp/9153"`. */
export const portList = z.string().superRefine((s, ctx) => {
  try {
    parsePortList(s);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
  }
});

/** One `proto/port` string, `"tcp/80"`. */
export const portEntry = z.string().superRefine((s, ctx) => {
  try {
    parsePort(s);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
  }
});
