/**
 * Desired state of the kernel WireGuard backend: what {@link WireguardKernelReconciler.reconcile}
 * installs. Plain data, no classes: build it from the generations and compare it with
 * `assert.deepEqual` in tests. Routes are not here: the node's CompositeBackend owns them.
 */

/** One peer of an interface (wg(8) `[Peer]`). */
export interface WgPeerSpec {
  /** The peer's public key, base64 (44 characters). */
  publicKey: string;
  /** Where to send to; undefined leaves it to be learned from the peer's packets. */
  endpoint?: { address: string; port: number };
  /** CIDRs routed to this peer inside the tunnel (cryptokey routing). Host bits are ignored. */
  allowedIps: string[];
  /** Seconds between keepalives; 0 or undefined: off. */
  persistentKeepalive?: number;
  /** Optional preshared key, base64. Key material. */
  presharedKey?: string;
}

/** One kernel WireGuard interface. */
export interface WgInterfaceSpec {
  /** Interface name (at most 15 characters); must be one the reconciler owns. */
  ifname: string;
  /** This node's private key for the interface, base64. Key material: never logged. */
  privateKey: string;
  listenPort: number;
  /** SO_MARK of the interface's UDP packets; 0 or undefined: none. */
  fwmark?: number;
  /** Interface MTU (docs/design.md#mtu: external MTU - 60 on an IPv4 underlay). */
  mtu: number;
  /**
   * IPv4 addresses (`a.b.c.d/32`) the interface carries with host scope: never a source address,
   * there so reverse-path filtering can accept packets on it (see the backend's RPF_ADDRESS).
   */
  hostAddresses?: string[];
  peers: WgPeerSpec[];
}

/** Interfaces to install. */
export interface WgKernelDesired {
  interfaces: WgInterfaceSpec[];
}
