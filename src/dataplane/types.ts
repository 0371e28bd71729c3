import type { BackendKind, EncryptionMode } from "../model/index.js";
import type { StrictDrop } from "./node/nft.js";

/** A peer of one key generation: another node, reached at `endpoint`, owning `allowedIps`. */
export interface DesiredPeer {
  node: string;
  /** The peer's public key for this generation's epoch (base64). */
  publicKey: string;
  /** IPsec: the peer's SA instance (`Node.saInstance`); ipsec generations hold only peers with one. */
  saInstance?: string;
  endpoint: { address: string; port: number };
  /**
   * The peer's pod CIDRs, and with host encryption its host (underlay) addresses, IPv4 as a /32
   * and IPv6 as a /128, of the families this node has one of (docs/design.md#host-encryption).
   */
  allowedIps: string[];
}

/**
 * One key generation: the data-plane state of one epoch. Two generations coexist during a phased
 * run (make before break); `slot` (epoch mod 2) picks the interface name and port so they never
 * collide.
 */
export interface DesiredGeneration {
  epoch: number;
  mode: EncryptionMode;
  slot: 0 | 1;
  /** Interface the generation's traffic is routed into (`podcrypt0`/`podcrypt1` by default). */
  ifname: string;
  listenPort: number;
  peers: DesiredPeer[];
}

/**
 * Where traffic to a remote node's pods goes. Routes live in the main table, or with `table:
 * "selected"` in podcrypt's own table, which only packets marked as selected (selective
 * encryption) look up first, or with `table: "host"` in the table of host encryption, which every
 * packet not excluded from it looks up first (docs/design.md#host-encryption).
 */
export type DesiredRoute =
  /** `src`: the source address the kernel picks for the node's own packets (host routes). */
  (
    | { dst: string; kind: "tunnel"; dev: string; src?: string }
    | { dst: string; kind: "plain"; via: string; dev: string }
    /** Selected traffic with no usable tunnel yet: dropped (strict mode), never sent in plaintext. */
    | { dst: string; kind: "blackhole" }
  ) & { table?: "selected" | "host" };

/**
 * Traffic that never takes the host-encryption table, whatever its address: an `ip rule` that
 * sends it to the main table ahead of the host table's rule. Every field given must match; `to`
 * and `from` are CIDRs, `sport`/`dport` need `protocol`.
 */
export interface HostExclusion {
  to?: string;
  from?: string;
  protocol?: "tcp" | "udp" | "sctp";
  sport?: number;
  dport?: number;
}

/** An address family of host addresses (and of `ip rule`'s tables of rules). */
export type HostFamily = "ipv4" | "ipv6";

/**
 * Host encryption on this node (docs/design.md#host-encryption): the `host` routes are looked up
 * by everything but `exclude` (the tunnels' own UDP ports, the datastore, the operator's
 * exclusions), in each of `families` (the families this node has a host address of: each has its
 * own rules, `ip rule` and `ip -6 rule`; an exclusion by CIDR belongs to its CIDR's family only).
 */
export interface DesiredHost {
  families: HostFamily[];
  exclude: HostExclusion[];
}

/** Transport protocols a selector names. */
export type SelectorProtocol = "tcp" | "udp" | "sctp";

/**
 * Traffic of one port of some pods (selective encryption, docs/design.md#selective-encryption): with `local`
 * false, packets *to* `podIPs` (remote pods) on `protocol`/`port`; with `local` true, this node's
 * pods' replies *from* that port.
 */
export interface SelectorMatch {
  protocol: SelectorProtocol;
  port: number;
  /** Sorted, unique, never empty; one address family per match is not required. */
  podIPs: string[];
  local: boolean;
}

/**
 * Selective encryption on this node: what is marked and policy-routed into the tunnel, and what
 * must not arrive from the underlay in plaintext (strict mode). The two differ while a policy
 * change propagates: traffic a change adds is encrypted at once but expected encrypted only once
 * every node encrypts it, and traffic it removes stays encrypted until every node stopped
 * expecting it.
 */
export interface DesiredSelection {
  /** Marked (sent through the `selected` routing table): to remote selected pods, and our selected pods' replies. */
  encrypt: SelectorMatch[];
  /** Dropped when it arrives from the underlay unencrypted (with `dropInbound`): to our selected pods, and remote ones' replies. */
  expectEncrypted: SelectorMatch[];
  /**
   * Addresses of this node whose own traffic is marked as its pods' is when it goes to remote
   * selected pods (marked in output, where the node's pods' traffic is marked in prerouting): the
   * probe endpoint of `verify --via-agents` (src/agent/verify/endpoint.ts), so its probes of a
   * selected port take the selected path. Default none.
   */
  localSources?: string[];
}

/** A remote node and its pod CIDRs, for counting strict-mode drops per peer. */
export interface StrictPeer {
  node: string;
  podCidrs: string[];
}

/** Fail-closed rules (docs/design.md#strict-mode). */
export interface DesiredStrict {
  /** Drop cluster pod traffic leaving through the underlay unencrypted. */
  dropOutbound: boolean;
  /** Drop cluster pod traffic arriving from the underlay unencrypted. */
  dropInbound: boolean;
  /** The underlay interface. */
  underlayIf: string;
  /** This node's pod CIDRs and the other nodes' pod CIDRs. */
  localPodCidrs: string[];
  remotePodCidrs: string[];
  /**
   * The other nodes and their pod CIDRs: a drop is counted against the peer whose pods the packet
   * goes to or comes from. Default none (every drop counted without a peer).
   */
  peers?: StrictPeer[];
  /**
   * Selective encryption: only this traffic is encrypted (the drops above then apply to it, not to
   * all pod traffic). Absent when all inter-node pod traffic is encrypted.
   */
  selection?: DesiredSelection;
  /**
   * Strict host mode (docs/design.md#host-encryption): plaintext to and from the peers' host
   * addresses on the underlay is dropped too, except what host encryption leaves outside the
   * tunnels. Absent when off (host traffic is never dropped).
   */
  host?: DesiredStrictHost;
}

/** What strict host mode drops and what it lets pass. */
export interface DesiredStrictHost {
  /** Drop host traffic leaving through the underlay unencrypted (to the peers' host addresses). */
  dropOutbound: boolean;
  /** Drop host traffic arriving from the underlay unencrypted (from the peers' host addresses). */
  dropInbound: boolean;
  /**
   * The other nodes and their host addresses (`/32`, `/128`, either family): a drop is counted
   * against the peer whose address the packet goes to or comes from. Nodes not listed (not known
   * yet) are never dropped.
   */
  peers: Array<{ node: string; addresses: string[] }>;
  /** What stays outside the tunnels (the host rules' exclusions): never dropped, in either direction. */
  exclude: HostExclusion[];
}

/** Everything the agent wants installed on its node. */
export interface DesiredNodeState {
  generations: DesiredGeneration[];
  /**
   * IPsec: the SA instance this node published last (its own Node record), the value a data
   * plane that kept its SA state continues with. Absent before the first publication.
   */
  saInstance?: string;
  routes: DesiredRoute[];
  /** Host encryption's exclusions; absent when host encryption is off (no host rules). */
  host?: DesiredHost;
  strict: DesiredStrict;
  /** MTU of the tunnel interfaces. */
  mtu: number;
}

/** Per-peer counters read back from a data plane, for status (docs/design.md#cli). */
export interface ObservedPeer {
  node: string;
  epoch: number;
  ifname: string;
  /** WireGuard: peer public key; IPsec: SPIs. */
  publicKey?: string;
  spiIn?: string;
  spiOut?: string;
  keyId?: number;
  endpoint?: string;
  txBytes: number;
  rxBytes: number;
  txPackets?: number;
  rxPackets?: number;
  /** Milliseconds since the epoch of the latest handshake (WireGuard), if any. */
  latestHandshake?: number;
  /** IPsec: the outbound SA's sequence numbers near their end; the cluster should rotate now. */
  rekeySoon?: boolean;
  /** IPsec (userspace ESP): the outbound SA's last sequence number sent, and the highest it may use. */
  sequence?: number;
  sequenceLimit?: number;
}

/**
 * Persistent keepalive (seconds) both WireGuard backends give every tunnel peer, so a new
 * generation's sessions exist before traffic switches to it.
 */
export const PEER_KEEPALIVE_S = 25;

/** One backend's reconciler: the only code that touches the kernel or a data-plane daemon. */
export interface DataplaneBackend {
  /** What the node publishes as its `backend`; `none` for a stand-in without a data plane of its own. */
  readonly kind: BackendKind;
  /**
   * Installs `desired` idempotently: reads what is installed, applies the difference. A failure
   * forces a full resync on the next call. `privateKey(epoch)` gives the node's own key.
   */
  reconcile(desired: DesiredNodeState, privateKey: (epoch: number) => Buffer): Promise<void>;
  /** Reads per-peer counters. */
  observe(): Promise<ObservedPeer[]>;
  /** Releases handles; never tears down installed state (traffic keeps flowing without the agent). */
  close(): Promise<void>;
  /**
   * IPsec: this node's SA instance as the data plane holds it after the last reconcile (the agent
   * publishes it); undefined while no IPsec data plane runs. See src/keys/sa-instance.ts.
   */
  saInstance(): string | undefined;
  /**
   * Packets strict mode dropped, per peer: going out (instead of leaving in plaintext) and coming
   * in (plaintext from a peer that should have encrypted). Monotonic while the agent runs. Absent
   * on backends without strict rules (the fake).
   */
  strictDrops?(): Promise<StrictDrop[]>;
  /**
   * A planned restart of the node's userspace data-plane daemons (an upgrade), one after another:
   * each is replaced by a successor that takes its TUN device, UDP socket and sessions or SAs over
   * (`--take-over`), so no packet, session or sequence number is lost (docs/design.md, "A planned
   * restart (an upgrade)"). Returns the interfaces handed over. Absent where nothing can hand over
   * (kernel data planes have no daemon).
   */
  handOverDaemons?(): Promise<string[]>;
}
