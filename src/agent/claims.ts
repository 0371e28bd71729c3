/**
 * Which of a peer's claims an agent believes. A node record is written by that node's agent, so a
 * compromised node could claim another node's pod CIDRs (a more specific prefix wins the route, and
 * the traffic would be encrypted to the liar) or another address. Before anything is derived from
 * the records, every agent vets them here, the same way on every node:
 *
 * 1. Authority (Kubernetes): a pod CIDR is believed only inside the Node's `spec.podCIDRs` (set by
 *    the node IPAM controller, which agents cannot write), an underlay address only when it is one
 *    of the Node's `status.addresses`. A record without a Kubernetes Node is believed in nothing.
 * 2. Overlap (every datastore): a claim that overlaps a claim this agent already believes (it
 *    applied it in its last pass: `standing`) is refused, and the standing one keeps its traffic:
 *    a node that starts claiming another node's range, or a more specific prefix of it, diverts
 *    nothing. Two overlapping claims of which neither (or both) stood are both refused, since
 *    nothing says which node is right (an agent that starts with conflicting records in place).
 *    Refused ranges are dropped in strict mode (desired.ts adds them to the drop set) or left
 *    unrouted, never sent to a node that may be lying. With an authority, what survives step 1 is
 *    inside what the authority assigned, so this happens only when the authority itself assigned
 *    overlapping ranges; the node the authority assigns a range to therefore always wins over a
 *    liar. Claims overlapping this node's own pod CIDRs are refused, and this node's own claims are
 *    never vetted (it knows its own).
 *
 * Refused claims are never applied; they are reported in `podcrypt status` and the agent's
 * `podcrypt_agent_refused_claims` metric.
 */
import { cidrContains, cidrRange } from "../platform/netlink/addr.js";
import type { Node } from "../model/index.js";
import { textMemo } from "../text-memo.js";

/** What the cluster's authority (Kubernetes) says a node was given. */
export interface NodeAuthority {
  /** The Node's `spec.podCIDRs` (or `spec.podCIDR`). */
  podCIDRs: readonly string[];
  /** The addresses of the Node's `status.addresses` (any type). */
  addresses: readonly string[];
}

/**
 * The authority's view by node name: `undefined` for a node it does not know. Datastores without
 * an authority (local, etcd) pass no lookup at all.
 */
export type AuthorityLookup = (node: string) => NodeAuthority | undefined;

/** Why a claim was refused. */
export type RefusalReason =
  /** A pod CIDR not inside the Node's `spec.podCIDRs`. */
  | "outside-assigned-pod-cidrs"
  /** An underlay address not among the Node's `status.addresses`. */
  | "address-not-assigned"
  /** No Kubernetes Node of that name: nothing of the record is believed. */
  | "no-such-node"
  /** A pod CIDR overlapping another node's (`with`). */
  | "overlaps-other-node";

/** One claim of a node's record that agents do not apply. */
export interface RefusedClaim {
  /** The node whose record makes the claim. */
  node: string;
  field: "podCIDRs" | "underlay";
  /** The CIDR or address claimed. */
  value: string;
  reason: RefusalReason;
  /** For an overlap: the other node. */
  with?: string;
}

/** The records as an agent may use them, and what was refused. */
export interface VettedNodes {
  /**
   * The nodes with refused claims removed (pod CIDRs dropped, a refused underlay address left out);
   * a node with nothing refused is the same object as given, so memoisation by identity holds.
   */
  nodes: Node[];
  /** In node-name, field and value order. */
  refused: RefusedClaim[];
}

function contains(outer: string, inner: string): boolean {
  try {
    return cidrContains(outer, inner);
  } catch {
    return false; // garbage from the authority contains nothing
  }
}

/** Whether CIDRs `a` and `b` share an address (one contains the other); false for garbage. */
export const cidrsOverlap = (a: string, b: string): boolean => contains(a, b) || contains(b, a);

const byName = (a: { node: string }, b: { node: string }): number =>
  a.node < b.node ? -1 : a.node > b.node ? 1 : 0;

/** The pod CIDRs an agent believed per node in its last pass (its {@link VettedNodes.nodes}). */
export type StandingClaims = ReadonlyMap<string, readonly string[]>;

/** The pod CIDRs `vetted` believes, by node, as {@link vetClaims} takes them back as `standing`. */
export function standingClaims(vetted: VettedNodes): StandingClaims {
  // Records are never modified once read (every version is a new object): kept, not copied.
  return new Map(vetted.nodes.map((n) => [n.name, n.podCIDRs]));
}

/**
 * Vets every node's claims but `self`'s (see the module comment). Pure and deterministic: the same
 * records, authority and `standing` claims give the same result on every node, whatever their
 * order.
 */
export function vetClaims(
  nodes: readonly Node[],
  self: string,
  authority?: AuthorityLookup,
  standing?: StandingClaims,
): VettedNodes {
  const refused: RefusedClaim[] = [];
  // Step 1: the authority.
  const believed = new Map<
    string,
    { node: Node; podCIDRs: readonly string[]; ipv4: boolean; ipv6: boolean }
  >();
  for (const n of nodes) {
    if (n.name === self || authority === undefined) {
      believed.set(n.name, { node: n, podCIDRs: n.podCIDRs, ipv4: true, ipv6: true });
      continue;
    }
    const a = authority(n.name);
    const addressOk = (ip: string | undefined): boolean =>
      ip === undefined || (a?.addresses.some((x) => contains(x, ip)) ?? false);
    const reasonFor = (field: RefusedClaim["field"]): RefusalReason =>
      a === undefined
        ? "no-such-node"
        : field === "podCIDRs"
          ? "outside-assigned-pod-cidrs"
          : "address-not-assigned";
    const podCIDRs: string[] = [];
    for (const c of n.podCIDRs) {
      if (a !== undefined && a.podCIDRs.some((x) => contains(x, c))) podCIDRs.push(c);
      else refused.push({ node: n.name, field: "podCIDRs", value: c, reason: reasonFor("podCIDRs") });
    }
    const ipv4 = addressOk(n.underlay.ipv4);
    const ipv6 = addressOk(n.underlay.ipv6);
    for (const [ok, ip] of [
      [ipv4, n.underlay.ipv4],
      [ipv6, n.underlay.ipv6],
    ] as const)
      if (!ok && ip !== undefined)
        refused.push({ node: n.name, field: "underlay", value: ip, reason: reasonFor("underlay") });
    believed.set(n.name, { node: n, podCIDRs, ipv4, ipv6 });
  }
  // Step 2: overlaps between nodes (this node's own claims always stand).
  const all = [...believed.values()];
  const dropped = new Map<string, Set<string>>();
  const stood = (node: string, cidr: string): boolean =>
    node === self || (standing?.get(node)?.includes(cidr) ?? false);
  // Which claims overlap which, found once for all (on 1000 nodes, comparing every claim with
  // every other was a million CIDR comparisons per pass, most of an agent's time).
  const overlapping = overlapsAmong(all.map((b) => b.podCIDRs));
  for (const [bi, b] of overlapping.size === 0 ? [] : all.entries()) {
    if (b.node.name === self) continue;
    for (const c of b.podCIDRs) {
      const hits = overlapping.get(`${bi}|${c}`);
      if (hits === undefined) continue;
      // A standing claim is kept against one that did not stand.
      const keeps = (other: string, o: string): boolean => stood(b.node.name, c) && !stood(other, o);
      for (const oi of [...hits.keys()].sort((x, y) => x - y)) {
        const other = all[oi]!;
        if (other === b) continue;
        const hit = other.podCIDRs.find((o) => hits.get(oi)!.has(o) && !keeps(other.node.name, o));
        if (hit === undefined) continue;
        let d = dropped.get(b.node.name);
        if (d === undefined) dropped.set(b.node.name, (d = new Set()));
        if (d.has(c)) continue;
        d.add(c);
        refused.push({
          node: b.node.name,
          field: "podCIDRs",
          value: c,
          reason: "overlaps-other-node",
          with: other.node.name,
        });
      }
    }
  }
  const out = nodes.map((n): Node => {
    const b = believed.get(n.name)!;
    const d = dropped.get(n.name);
    const podCIDRs = d === undefined ? b.podCIDRs : b.podCIDRs.filter((c) => !d.has(c));
    if (b.ipv4 && b.ipv6 && podCIDRs.length === n.podCIDRs.length) return n;
    const underlay = {
      ...(b.ipv4 && n.underlay.ipv4 !== undefined ? { ipv4: n.underlay.ipv4 } : {}),
      ...(b.ipv6 && n.underlay.ipv6 !== undefined ? { ipv6: n.underlay.ipv6 } : {}),
    };
    return { ...n, underlay, podCIDRs: [...podCIDRs] };
  });
  refused.sort(
    (x, y) =>
      byName(x, y) ||
      (x.field < y.field ? -1 : x.field > y.field ? 1 : 0) ||
      (x.value < y.value ? -1 : x.value > y.value ? 1 : 0),
  );
  return { nodes: out, refused };
}

/** Parsed CIDRs by text (null: garbage, which overlaps nothing). */
const rangeOf = textMemo((cidr): ReturnType<typeof cidrRange> | null => {
  try {
    return cidrRange(cidr);
  } catch {
    return null;
  }
});

/**
 * For the claims of `owners` (owner index → CIDRs), which claims of other owners overlap each:
 * `"ownerIndex|cidr"` → owner index → the overlapping CIDRs of that owner. Claims that overlap
 * nothing are absent. CIDRs either nest or are disjoint, so after sorting by first address every
 * claim overlaps exactly the claims that start within its range after it (and those whose range
 * it starts within before it, found from their side): O(n log n) plus the overlaps.
 */
function overlapsAmong(owners: ReadonlyArray<readonly string[]>): Map<string, Map<number, Set<string>>> {
  const entries: Array<{ owner: number; cidr: string; bits: number; first: bigint; last: bigint }> = [];
  for (const [owner, cidrs] of owners.entries())
    for (const cidr of cidrs) {
      const r = rangeOf(cidr);
      if (r !== null) entries.push({ owner, cidr, bits: r.bits, first: r.first, last: r.last });
    }
  entries.sort((x, y) => x.bits - y.bits || (x.first < y.first ? -1 : x.first > y.first ? 1 : 0));
  const out = new Map<string, Map<number, Set<string>>>();
  const note = (a: (typeof entries)[number], b: (typeof entries)[number]): void => {
    const k = `${a.owner}|${a.cidr}`;
    let m = out.get(k);
    if (m === undefined) out.set(k, (m = new Map()));
    let s = m.get(b.owner);
    if (s === undefined) m.set(b.owner, (s = new Set()));
    s.add(b.cidr);
  };
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    for (let j = i + 1; j < entries.length; j++) {
      const f = entries[j]!;
      if (f.bits !== e.bits || f.first > e.last) break;
      if (f.owner === e.owner) continue;
      note(e, f);
      note(f, e);
    }
  }
  return out;
}

/** One line per refused claim, for logs and `podcrypt status`. */
export function describeRefusal(r: RefusedClaim): string {
  const what = r.field === "podCIDRs" ? `pod CIDR ${r.value}` : `underlay address ${r.value}`;
  switch (r.reason) {
    case "outside-assigned-pod-cidrs":
      return `${what} of ${r.node} refused: outside the Node's spec.podCIDRs`;
    case "address-not-assigned":
      return `${what} of ${r.node} refused: not among the Node's status.addresses`;
    case "no-such-node":
      return `${what} of ${r.node} refused: no Kubernetes Node ${r.node}`;
    case "overlaps-other-node":
      return `${what} of ${r.node} refused: overlaps pod CIDRs of ${r.with ?? "another node"}`;
  }
}

/** An authority kept current (the Kubernetes datastore's Node informer). */
export interface AuthoritySource {
  lookup: AuthorityLookup;
  /** Stops following the authority. */
  close(): void;
}
