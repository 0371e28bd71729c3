/**
 * Desired state of the kernel XFRM (IPsec) backend: ESP tunnel-mode SAs with rfc4106(gcm(aes))
 * (RFC 4106: 128-bit AES key + 32-bit salt) and the policies that steer traffic into them
 * (docs/design.md#data-planes). Plain data for {@link XfrmReconciler.reconcile}.
 */

/** One ESP SA (`ip xfrm state`), identified by (src, dst, spi). */
export interface XfrmSaSpec {
  /** Outer (underlay) source and destination addresses. */
  src: string;
  dst: string;
  /** SPI; with IPsec mode's key IDs the low bits carry the key ID (docs/design.md#keys-and-rotation). */
  spi: number;
  /** Binds the SA to policies' templates; must be in the reconciler's owned range. */
  reqid: number;
  /** 20 bytes: AES-128 key then 4-byte salt (RFC 4106 section 8.1). Key material. */
  key: Buffer;
  /** ICV length in bits: 64, 96 or 128 (default 128). */
  icvBits?: 64 | 96 | 128;
  /** ESP in UDP (RFC 3948), e.g. {sport: 4500, dport: 4500}; undefined: plain ESP. */
  encap?: { sport: number; dport: number };
  /** Only packets with this mark use the SA (outbound selection), e.g. key-ID marks. */
  mark?: { value: number; mask: number };
  /** XFRM interface ID: the SA carries only the traffic of the interface with this `if_id`. */
  ifId?: number;
  /** Anti-replay window of an inbound SA in packets (RFC 4303 section 3.4.3). Default 0 (off). */
  replayWindow?: number;
}

/** One policy (`ip xfrm policy`), identified by (dir, selector, mark). */
export interface XfrmPolicySpec {
  dir: "in" | "out" | "fwd";
  /** Inner selector: source and destination CIDRs, optionally an upper protocol and ports. */
  src: string;
  dst: string;
  proto?: "tcp" | "udp" | "sctp";
  sport?: number;
  dport?: number;
  mark?: { value: number; mask: number };
  /** Lower priority value wins (default 0). */
  priority?: number;
  /**
   * XFRM interface ID: the policy then only applies to traffic routed into (out) or received on
   * (in, fwd) the interface with this `if_id`, so routes decide what is encrypted.
   */
  ifId?: number;
  /** The template: the tunnel endpoints and the SA's reqid (tunnel mode, ESP). */
  tmpl: { src: string; dst: string; reqid: number };
}

/**
 * An XFRM interface (`ip link add NAME type xfrm dev UNDERLAY if_id N`): route-based IPsec. Traffic
 * routed into it is matched against the policies with its `if_id`; what the SAs with that `if_id`
 * decapsulate arrives on it.
 */
export interface XfrmLinkSpec {
  ifname: string;
  ifId: number;
  /** The underlay interface the encapsulated packets leave by. */
  dev: string;
  mtu: number;
}

export interface XfrmDesired {
  states: XfrmSaSpec[];
  policies: XfrmPolicySpec[];
  /** XFRM interfaces (route-based mode); none for policy-based use. */
  links?: XfrmLinkSpec[];
}
