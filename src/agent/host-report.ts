/**
 * What a node reports of its host encryption (docs/design.md#host-encryption) in its status
 * record, for `podcrypt status` and the status page: computed from the desired state the agent
 * just installed, so it says what the node does, not what the cluster asks for.
 */
import type { DesiredNodeState } from "../dataplane/types.js";
import type { Node } from "../model/index.js";

/** A node's host encryption as its last pass installed it (Node `status.hostEncryption`). */
export interface HostReport {
  /** The node routes host traffic through its tunnels (its rules and host table are installed). */
  applied: boolean;
  /** Host routes installed (one per peer host address whose tunnel is up). */
  routes: number;
  /** The peers those routes lead to, sorted. */
  peers: string[];
}

/**
 * The host report of `desired` (what the agent installed): `applied` when it carries host
 * encryption's exclusions, the host table's routes counted, and each route's destination named
 * by the node among `nodes` that owns the address (a route to an address no node owns is counted,
 * not named).
 */
export function hostReport(desired: DesiredNodeState, nodes: readonly Node[]): HostReport {
  const hostRoutes = desired.routes.filter((r) => r.table === "host");
  const owner = new Map<string, string>();
  for (const n of nodes)
    for (const ip of [n.underlay.ipv4, n.underlay.ipv6]) if (ip !== undefined) owner.set(ip, n.name);
  const peers = new Set<string>();
  for (const r of hostRoutes) {
    const name = owner.get(r.dst.split("/")[0]!);
    if (name !== undefined) peers.add(name);
  }
  return { applied: desired.host !== undefined, routes: hostRoutes.length, peers: [...peers].sort() };
}
