/**
 * Why the ESP packet path did not deliver a packet. Packet-path garbage is counted, never thrown
 * (CONTRIBUTING.md); these names appear in status and metrics.
 */
export type EspDropReason =
  | "malformed" // too short, misaligned (RFC 4303 section 2.4), bad inner IP header, unknown next header
  | "unknown-spi" // no inbound SA for the SPI (RFC 4303 section 3.4.2)
  | "replay" // duplicate or older than the window (RFC 4303 section 3.4.3)
  | "auth-failed" // ICV did not verify (RFC 4303 section 3.4.4)
  | "bad-padding" // pad length past the payload or padding bytes not 1, 2, 3, ... (section 2.4)
  | "dummy" // next header 59: a traffic-flow-confidentiality dummy packet, discarded (section 2.6)
  | "seq-exhausted" // outbound SA has used its last sequence number (section 3.3.3)
  | "ike" // UDP 4500 datagram with the non-ESP marker: IKE, which podcrypt does not speak (RFC 3948 2.2)
  | "nat-keepalive"; // UDP 4500 datagram of the single byte 0xFF (RFC 3948 section 2.3), ignored

export const ESP_DROP_REASONS: readonly EspDropReason[] = [
  "malformed",
  "unknown-spi",
  "replay",
  "auth-failed",
  "bad-padding",
  "dummy",
  "seq-exhausted",
  "ike",
  "nat-keepalive",
];

/** Per-reason counters. */
export class EspDropCounters {
  private readonly counts = new Map<EspDropReason, number>(ESP_DROP_REASONS.map((r) => [r, 0]));

  count(reason: EspDropReason): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
  }

  get(reason: EspDropReason): number {
    return this.counts.get(reason) ?? 0;
  }

  /** All reasons with their counts (zeros included), for status and metrics. */
  snapshot(): Record<EspDropReason, number> {
    return Object.fromEntries(this.counts) as Record<EspDropReason, number>;
  }
}
