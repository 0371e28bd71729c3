/**
 * SAs as lines of Wireshark's `esp_sa` UAT (the "ESP SAs" table of Edit > Preferences > Protocols >
 * ESP, stored in the `esp_sa` file of a profile), for `podcrypt debug esp-sa --tshark`.
 *
 * A line has eight quoted fields, in the order of epan/dissectors/packet-ipsec.c's UAT:
 *   "protocol","src ip","dst ip","spi","encryption algorithm","encryption key",
 *   "authentication algorithm","authentication key"
 * protocol is "IPv4" or "IPv6"; addresses may be "*" (any); the SPI is 0x + 8 hex digits; the
 * encryption algorithm for RFC 4106 is "AES-GCM with 16 octet ICV [RFC4106]" (or the 8 / 12
 * octet variants); the encryption key is 0x + hex of key || salt (20 bytes, RFC 4106 section 8.1);
 * GCM authenticates itself, so the authentication algorithm is "NULL" with an empty key.
 *
 * These lines contain key material: they exist only for this explicit debug export and must never
 * be logged.
 */
import { isIPv6 } from "node:net";
import type { Sa } from "./sa.js";
import { formatSpi } from "./sa.js";

/** tshark's name of AES-GCM with this ICV length (bytes). */
export function tsharkGcmAlgorithm(icvLength: 8 | 12 | 16): string {
  return `AES-GCM with ${icvLength} octet ICV [RFC4106]`;
}

function quote(s: string): string {
  // UAT strings are double-quoted; a quote or backslash inside is written as \xNN.
  return `"${s.replace(/["\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}"`;
}

/** One `esp_sa` UAT line for `sa`. */
export function tsharkEspSaLine(sa: Sa): string {
  const src = sa.srcAddress ?? "*";
  const dst = sa.dstAddress ?? "*";
  const family = isIPv6(src) || isIPv6(dst) ? "IPv6" : "IPv4";
  const keymat = `0x${Buffer.concat([sa.key, sa.salt]).toString("hex")}`;
  return [family, src, dst, formatSpi(sa.spi), tsharkGcmAlgorithm(sa.icvLength), keymat, "NULL", ""]
    .map(quote)
    .join(",");
}

/** The contents of an `esp_sa` file for these SAs, one line each. */
export function tsharkEspSaFile(sas: Iterable<Sa>): string {
  return [...sas].map((sa) => `${tsharkEspSaLine(sa)}\n`).join("");
}

/**
 * tshark options that decrypt with these SAs, and verify each GCM ICV, without touching any profile:
 * `-o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE
 * -o uat:esp_sa:<line> ...`.
 */
export function tsharkOptions(sas: Iterable<Sa>): string[] {
  const args = ["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"];
  for (const sa of sas) args.push("-o", `uat:esp_sa:${tsharkEspSaLine(sa)}`);
  return args;
}
