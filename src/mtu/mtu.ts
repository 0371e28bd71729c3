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
 * Tunnel MTU from the external MTU (docs/design.md#mtu):
 * - IPsec over IPIP: `EXTMTU - 46 - ((EXTMTU - 46) mod 4)` (the MKE SecureOverlay formula, which
 *   fits ESP with an 8-byte ICV); ESP in UDP adds 8 more bytes of overhead.
 * - IPsec in tunnel mode (podcrypt's own, 16-byte ICV): the outer IP header (20, or 40 over IPv6),
 *   the UDP header when encapsulated (8), SPI and sequence number (8), the explicit IV (8) and the
 *   ICV (16) surround a payload of the inner packet plus 2 trailer bytes padded to a multiple of
 *   4: the largest inner packet whose ESP packet still fits.
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
  if (input.ipip === true) {
    const room = extMtu - 46 - udp;
    return room - (room % 4);
  }
  const payload = extMtu - (input.ipv6 === true ? 40 : 20) - udp - 8 - 8 - 16;
  return payload - (payload % 4) - 2;
}

/**
 * The MTU a node gives its tunnel interfaces and pods: the smaller of both modes' (ESP in UDP for
 * IPsec), so switching modes never changes it.
 */
export function podMtu(extMtu: number, ipv6 = false): number {
  return Math.min(
    tunnelMtu({ extMtu, mode: "wireguard", ipv6 }),
    tunnelMtu({ extMtu, mode: "ipsec", ipv6, udpEncap: true }),
  );
}
