/**
 * The row `podcrypt status` shows per peer of a node, in its own module so that the userspace
 * (status.ts) and kernel (kernel-status.ts) readers both build it without importing each other.
 */
import type { Node } from "../model/index.js";

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

/** What a WireGuard interface reports of one peer, kernel (`wg show dump`) or userspace (UAPI `get=1`). */
export interface WireguardPeerReading {
  /** Base64. */
  readonly publicKey: string;
  readonly endpoint?: string | undefined;
  /** Milliseconds since the epoch of the latest handshake, 0 for none. */
  readonly latestHandshakeMs: number;
  readonly txBytes: number;
  readonly rxBytes: number;
}

/**
 * The status row of a peer of WireGuard interface `ifname`: its node and epoch are those of the
 * first Node record publishing its public key (`?` and -1 when none does).
 */
export function wireguardPeerRow(
  nodes: readonly Node[],
  ifname: string,
  p: WireguardPeerReading,
): PeerStatus {
  const owner = keyOwner(nodes, p.publicKey);
  return {
    node: owner?.node ?? "?",
    state: p.latestHandshakeMs > 0 ? "established" : "connecting",
    keyId: null,
    txBytes: p.txBytes,
    rxBytes: p.rxBytes,
    txPackets: null,
    rxPackets: null,
    epoch: owner?.epoch ?? -1,
    ifname,
    publicKey: p.publicKey,
    ...(p.endpoint === undefined ? {} : { endpoint: p.endpoint }),
    ...(p.latestHandshakeMs > 0 ? { latestHandshake: p.latestHandshakeMs } : {}),
  };
}

function keyOwner(nodes: readonly Node[], key: string): { node: string; epoch: number } | undefined {
  for (const n of nodes)
    for (const [e, k] of Object.entries(n.publicKeys))
      if (k === key) return { node: n.name, epoch: Number(e) };
  return undefined;
}
