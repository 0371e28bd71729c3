import { ValidationError } from "../errors/index.js";

/** Encryption modes podcrypt supports. */
export type Mode = "wireguard" | "ipsec";

export interface MtuInput {
  /** MTU of the underlay (external) interface. */
  extMtu: number;
  mode: Mode;
  /** Underlay is IPv6 (WireGuard: 80 bytes of overhead instead of 60). */
  ipv6?: boolean;
  /** IPsec: ESP carried over IPIP, as in the MKE SecureOverlay seeds. */
  ipip?: boolean;
  /** IPsec: ESP in UDP (RFC 3948) adds the 8-byte UDP header. Default true for podcrypt's ESP. */
  udpEncap?: boolean;
}

/** Smallest external MTU we accept: IPv4's minimum datagram size that every link must carry. */
export const MIN_EXT_MTU = 576;
export const MAX_EXT_MTU = 65535;

/**
 * Tunnel MTU from the external MTU (DESIGN.md section 6):
 * - IPsec over IPIP: `EXTMTU - 46 - ((EXTMTU - 46) mod 4)` (MKE SecureOverlay formula); ESP in
 *   UDP adds 8 more bytes of overhead.
 * - IPsec without IPIP: ESP tunnel mode is 20 (outer IPv4, 40 for IPv6) + 8 (SPI, seq) + 8 (IV) +
 *   up to 3+2 (padding, trailer) + 16 (ICV); rounded down to a multiple of 4 like the IPIP formula.
 * - WireGuard: `EXTMTU - 60` over IPv4, `- 80` over IPv6.
 */
export function tunnelMtu(input: MtuInput): number {
  const { extMtu, mode } = input;
  if (!Number.isInteger(extMtu) || extMtu < MIN_EXT_MTU || extMtu > MAX_EXT_MTU) {
    throw new ValidationError(
      "ext-mtu",
      `must be an integer from ${MIN_EXT_MTU} to ${MAX_EXT_MTU}, got ${extMtu}`,
    );
  }
  if (mode === "wireguard") {
    if (input.ipip === true) throw new ValidationError("ipip", "applies to --mode ipsec only");
    return extMtu - (input.ipv6 === true ? 80 : 60);
  }
  const udp = input.udpEncap === true ? 8 : 0;
  const outerIp = input.ipv6 === true ? 40 : 20;
  // IPIP inner header (20) + ESP (26 worst case before alignment) = 46, as in the seeds.
  const overhead = (input.ipip === true ? 46 : outerIp + 26) + udp;
  const room = extMtu - overhead;
  return room - (room % 4);
}
