import type { Endpoint } from "../contract.js";
import type { IpPrefix } from "./ip.js";

/** One peer as the UAPI `get` reports it. */
export interface UapiPeerState {
  /** 32-byte Curve25519 public key. */
  readonly publicKey: Buffer;
  /** 32-byte preshared key, or undefined for none (reported as all zeros). */
  readonly presharedKey: Buffer | undefined;
  readonly endpoint: Endpoint | undefined;
  /** Wall-clock time of the last completed handshake in ns since the Unix epoch; 0n for never. */
  readonly lastHandshakeNs: bigint;
  readonly rxBytes: bigint | number;
  readonly txBytes: bigint | number;
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
  readonly allowedIps: readonly IpPrefix[];
}

/** The device as the UAPI `get` reports it. */
export interface UapiDeviceState {
  /** 32-byte private key, or undefined when none is set. */
  readonly privateKey: Buffer | undefined;
  /** Bound UDP port (0 = not bound/not set). */
  readonly listenPort: number;
  /** 0 = none. */
  readonly fwmark: number;
  readonly peers: readonly UapiPeerState[];
}

/**
 * One peer's changes from a `set` request, coalesced from its `public_key=` section in order
 * (a later `replace_allowed_ips=true` discards the `allowed_ip` lines before it).
 */
export interface UapiPeerUpdate {
  readonly publicKey: Buffer;
  /** `preshared_key`: a 32-byte key, or null to clear (all zeros on the wire); undefined = unchanged. */
  readonly presharedKey?: Buffer | null;
  readonly endpoint?: Endpoint;
  /** Seconds, 0 = off; undefined = unchanged. */
  readonly persistentKeepalive?: number;
  /** Remove every allowed IP of the peer before adding `allowedIps`. */
  readonly replaceAllowedIps: boolean;
  /** Allowed IPs to add (masked by the receiver). */
  readonly allowedIps: readonly IpPrefix[];
}

/**
 * What the UAPI needs from a WireGuard device: a small port that the protocol `Device` satisfies
 * through an adapter, and that {@link MemoryUapiDevice} implements in memory for tests.
 * Methods throw to refuse (a {@link UapiError} carries its errno; anything else becomes -ENOANO,
 * or -EADDRINUSE from `setListenPort`/`setFwmark`).
 */
export interface UapiDevice {
  /** The current configuration and counters. */
  state(): UapiDeviceState;
  /** The public key of the current private key, or undefined. Peers with this key are ignored. */
  publicKey(): Buffer | undefined;
  /** Sets the private key; undefined clears it (all zeros on the wire). */
  setPrivateKey(key: Buffer | undefined): void;
  /** Rebinds the UDP socket to `port` (0 = any free port). */
  setListenPort(port: number): Promise<void> | void;
  /** Sets the socket mark (0 = none). */
  setFwmark(mark: number): Promise<void> | void;
  /** Removes every peer (`replace_peers=true`). */
  removeAllPeers(): void;
  /** Whether a peer with this public key exists. */
  hasPeer(publicKey: Buffer): boolean;
  /** Creates the peer if absent, then applies the update. */
  upsertPeer(update: UapiPeerUpdate): void;
  /** Removes a peer; absent peers are not an error. */
  removePeer(publicKey: Buffer): void;
}
