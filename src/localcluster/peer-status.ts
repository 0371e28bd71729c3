/**
 * The row `podcrypt status` shows per peer of a node, in its own module so that the userspace
 * (status.ts) and kernel (kernel-status.ts) readers both build it without importing each other.
 */
/** One peer of one node, as `status` shows it (docs/design.md#cli contract fields first). */
export interface PeerStatus {
  node: string;
  /** `established` (handshake done / SA installed), `connecting`, or `plaintext` when encryption is off. */
  state: "established" | "connecting" | "plaintext";
  keyId: number | null;
  txBytes: number;
  rxBytes: number;
  txPackets: number | null;
  rxPackets: number | null;
  epoch: number;
  ifname?: string;
  publicKey?: string;
  endpoint?: string;
  latestHandshake?: number;
  /** IPsec: the SA pair of this key ID, as `swanctl --list-sa` shows it (SPIs as 0x + 8 hex digits). */
  spiIn?: string;
  spiOut?: string;
  /** IPsec: seconds since the older of the two SAs was installed. */
  ageS?: number;
  /** IPsec: the outbound SA of this key ID is the one sending to the peer. */
  active?: boolean;
}
