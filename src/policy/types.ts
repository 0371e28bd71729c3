/**
 * The internal form every accepted policy document is normalized into, whatever it was written as
 * (podcrypt `EncryptionPolicy` or StarlingX `IPsecPolicy`), and the selector set policies resolve
 * to. The stored shape matches src/model/encryption-policy.ts (ports as a `"udp/53,tcp/9153"`
 * string); the parsed shape here carries the ports already split.
 */

/** Transport protocols a port selector can name. ICMP has no ports and is refused. */
export const PROTOCOLS = ["tcp", "udp", "sctp"] as const;
/** A port-based transport protocol. */
export type Protocol = (typeof PROTOCOLS)[number];

/** One `proto/port` entry, e.g. `{protocol: "udp", port: 53}` for `udp/53`. */
export interface PortSpec {
  readonly protocol: Protocol;
  /** 1..65535. */
  readonly port: number;
}

/** The API groups and kinds a policy document can be written as. */
export const POLICY_KINDS = {
  EncryptionPolicy: "podcrypt.io/v1",
  IPsecPolicy: "starlingx.io/v1",
} as const;
/** `EncryptionPolicy` (podcrypt.io/v1, namespaced) or `IPsecPolicy` (starlingx.io/v1, cluster-scoped). */
export type PolicyKind = keyof typeof POLICY_KINDS;

/** One rule: encrypt traffic to the pods of `service` in `namespace` on `ports`. */
export interface PolicyRule {
  /** Unique among all rules of all policies: it names data-plane objects. */
  readonly name: string;
  readonly service: string;
  readonly namespace: string;
  readonly ports: readonly PortSpec[];
}

/** A validated policy object, in the internal form. */
export interface Policy {
  readonly kind: PolicyKind;
  readonly name: string;
  /** The object's namespace: set for EncryptionPolicy (default `default`), absent for IPsecPolicy. */
  readonly namespace: string | undefined;
  readonly rules: readonly PolicyRule[];
}

/**
 * A policy as the datastore keeps it (the shape of src/model's `EncryptionPolicy`): ports as the
 * canonical comma-separated string.
 */
export interface StoredPolicy {
  readonly name: string;
  readonly namespace?: string | undefined;
  readonly policies: readonly {
    readonly name: string;
    readonly service: string;
    readonly namespace: string;
    readonly ports: string;
  }[];
}

/** A service as policy resolution needs it (src/model's `Service`). */
export interface ServiceInput {
  readonly name: string;
  readonly namespace: string;
  /** Label selector (equality only, as Kubernetes Services). Empty selects nothing. */
  readonly selector?: Readonly<Record<string, string>>;
  /** `proto/port` strings the service serves. Informational for resolution. */
  readonly ports?: readonly string[];
}

/** The ready pod addresses of a service (src/model's `Endpoints`, e.g. from EndpointSlices). */
export interface EndpointsInput {
  /** Same name and namespace as the service. */
  readonly name: string;
  readonly namespace: string;
  readonly addresses: readonly { readonly ip: string; readonly pod?: string; readonly node?: string }[];
}

/** A pod: where it runs and its address. Used to place endpoint IPs on nodes and for selectors. */
export interface PodInput {
  readonly name: string;
  readonly namespace: string;
  readonly node: string;
  readonly ip: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** Everything resolution reads: the full current state, not a delta. */
export interface ResolveInputs {
  readonly policies: readonly Policy[];
  readonly services: readonly ServiceInput[];
  /** When a service has endpoints, they are authoritative; otherwise its selector is matched against pods. */
  readonly endpoints?: readonly EndpointsInput[];
  readonly pods: readonly PodInput[];
}

/**
 * One data-plane selector: traffic to (and from) `podIPs` on `protocol`/`port`, all of which run on
 * `node`. XFRM selectors in IPsec mode, marks and policy routing in WireGuard mode.
 */
export interface Selector {
  /** Destination node that hosts every pod IP of this selector. */
  readonly node: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** Sorted, unique. Never empty. */
  readonly podIPs: readonly string[];
  /** Rules that select this traffic, as `Kind/[namespace/]name#rule`, sorted. */
  readonly sources: readonly string[];
}

/** What a rule could not resolve (for policy status and `policy list`), never an error. */
export interface ResolveWarning {
  /** `Kind/[namespace/]name#rule`. */
  readonly source: string;
  readonly message: string;
}

/** The full desired selector set, sorted by node, protocol, port. */
export interface SelectorSet {
  readonly selectors: readonly Selector[];
  readonly warnings: readonly ResolveWarning[];
}

/** One selector whose pod IPs or sources changed between two sets. */
export interface SelectorChange {
  readonly before: Selector;
  readonly after: Selector;
  readonly addedIPs: readonly string[];
  readonly removedIPs: readonly string[];
}

/** The difference of two selector sets. Apply `added` and `changed` before `removed` (make before break). */
export interface SelectorDiff {
  readonly added: readonly Selector[];
  readonly removed: readonly Selector[];
  readonly changed: readonly SelectorChange[];
}
