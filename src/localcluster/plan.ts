import type { ClusterConfig, ServiceSpec } from "./config.js";

/** Prefix of every network namespace the local cluster creates (`cluster down` sweeps it). */
export const NETNS_PREFIX = "pc-";
export const FABRIC_NETNS = `${NETNS_PREFIX}fabric`;
export const FABRIC_BRIDGE = "pcbr0";
/** Underlay: a /24 on the fabric bridge; node i gets .10+i. */
export const UNDERLAY_V4_PREFIX = "172.30.0.";
export const UNDERLAY_V6_PREFIX = "fd30::";
/** Pod network: node i owns 10.244.i.0/24; the cluster pod CIDR covers them all. */
export const CLUSTER_POD_CIDR = "10.244.0.0/16";
/** IPv6 pod network (`ipFamily` ipv6 or dual): node i owns fd00:10:244:i::/64 (i in hex). */
export const CLUSTER_POD_CIDR_V6 = "fd00:10:244::/48";
/** Link-local gateway pods route through (proxy ARP on the node side, as Calico does). */
export const POD_GATEWAY = "169.254.1.1";
/** IPv6 link-local gateway of the pods: the node holds it on every pod veth (link-local is per link). */
export const POD_GATEWAY_V6 = "fe80::1";

/**
 * Interface name prefix of node `index` (the agent's `--if-prefix`): its WireGuard generation
 * interfaces are the prefix plus the slot, its userspace ESP interface the prefix plus `e`, as
 * the agent names them. Unique per node, since the UAPI and ESP socket directories are shared by
 * every node of the machine.
 */
export function nodeIfPrefix(index: number): string {
  return `pc${index}w`;
}

/** WireGuard generation interface `slot` (0 or 1) of node `index`. */
export function nodeWgIfname(index: number, slot: number): string {
  return `${nodeIfPrefix(index)}${slot}`;
}

/** The userspace ESP interface of node `index`. */
export function nodeEspIfname(index: number): string {
  return `${nodeIfPrefix(index)}e`;
}

export interface PlannedNode {
  name: string;
  index: number;
  netns: string;
  /** Node side of the underlay veth (in the node namespace). */
  underlayIf: "eth0";
  /** Fabric side of the underlay veth, enslaved to the bridge. */
  fabricIf: string;
  /** The node's planned fabric addresses; only the one of the underlay family is configured. */
  underlayIPv4: string;
  underlayIPv6: string;
  /** The underlay address the tunnels use (of `config.underlayFamily`). */
  underlayIP: string;
  /**
   * The addresses the node publishes (the agent's `--underlay-ip`, the Kubernetes Node's
   * InternalIPs): `underlayIP`, and on an IPv4 underlay with IPv6 pods its IPv6 fabric address too,
   * the next hop of its IPv6 pods' plaintext while encryption is off (the tunnels stay on IPv4).
   */
  underlayIPs: string[];
  /** The first of `podCIDRs` (IPv4 when the pods have IPv4). */
  podCIDR: string;
  /** One CIDR per pod address family, IPv4 first. */
  podCIDRs: string[];
  dataplane: "auto" | "kernel" | "userspace";
}

export interface PlannedPod {
  name: string;
  namespace: string;
  node: string;
  netns: string;
  /** The first of `ips` (IPv4 when the pod has IPv4), as Kubernetes' `status.podIP`. */
  ip: string;
  /** One address per family, IPv4 first, as `status.podIPs`. */
  ips: string[];
  labels: Record<string, string>;
  /** Node side of the pod veth. */
  hostIf: string;
  /** Ports the pod answers on (from the services selecting it). */
  ports: string[];
}

/** Everything `cluster up` creates, computed before anything is touched. */
export interface ClusterPlan {
  config: ClusterConfig;
  fabric: { netns: string; bridge: string };
  nodes: PlannedNode[];
  pods: PlannedPod[];
  services: ServiceSpec[];
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

/** Lays out names and addresses for a resolved config. Pure. */
export function planCluster(config: ClusterConfig): ClusterPlan {
  const v4 = config.ipFamily !== "ipv6";
  const v6 = config.ipFamily !== "ipv4";
  const nodes = config.nodes.map((n, i): PlannedNode => {
    const index = n.index ?? i + 1;
    const underlayIPv4 = `${UNDERLAY_V4_PREFIX}${10 + index}`;
    const underlayIPv6 = `${UNDERLAY_V6_PREFIX}${(10 + index).toString(16)}`;
    const podCIDRs = [
      ...(v4 ? [`10.244.${index}.0/24`] : []),
      ...(v6 ? [`fd00:10:244:${index.toString(16)}::/64`] : []),
    ];
    return {
      name: n.name,
      index,
      netns: `${NETNS_PREFIX}${n.name}`,
      underlayIf: "eth0",
      fabricIf: `pcf${index}`,
      underlayIPv4,
      underlayIPv6,
      underlayIP: config.underlayFamily === "ipv6" ? underlayIPv6 : underlayIPv4,
      underlayIPs:
        config.underlayFamily === "ipv6"
          ? [underlayIPv6]
          : v6
            ? [underlayIPv4, underlayIPv6]
            : [underlayIPv4],
      podCIDR: podCIDRs[0]!,
      podCIDRs,
      dataplane: n.dataplane,
    };
  });
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const perNode = new Map<string, number>();
  const pods = config.pods.map((p): PlannedPod => {
    const node = byName.get(p.node)!;
    const j = (perNode.get(node.name) ?? 0) + 1;
    perNode.set(node.name, j);
    const ports = [
      ...new Set(
        config.services
          .filter((s) => s.namespace === p.namespace && selects(s.selector, p.labels))
          .flatMap((s) => s.ports),
      ),
    ];
    const ips = [
      ...(v4 ? [`10.244.${node.index}.${9 + j}`] : []),
      ...(v6 ? [`fd00:10:244:${node.index.toString(16)}::${(9 + j).toString(16)}`] : []),
    ];
    return {
      name: p.name,
      namespace: p.namespace,
      node: node.name,
      netns: `${NETNS_PREFIX}${node.name}-${p.namespace}-${p.name}`,
      ip: ips[0]!,
      ips,
      labels: p.labels,
      hostIf: `pcp${j}`,
      ports,
    };
  });
  return {
    config,
    fabric: { netns: FABRIC_NETNS, bridge: FABRIC_BRIDGE },
    nodes,
    pods,
    services: config.services,
  };
}

/** The pods a service selects (its namespace, every selector label matching), as endpoints would list them. */
export function servicePods(plan: ClusterPlan, service: ServiceSpec): PlannedPod[] {
  return plan.pods.filter((p) => p.namespace === service.namespace && selects(service.selector, p.labels));
}

/**
 * The `cluster info --json` document (docs/design.md#the-local-cluster, contract). `underlayIPv4`
 * is left out on an IPv6 underlay, where the node has no IPv4 fabric address; `underlayIP` is the
 * address in use either way.
 */
export function clusterInfo(plan: ClusterPlan): object {
  return {
    fabric: plan.fabric,
    nodes: plan.nodes.map((n) => ({
      name: n.name,
      netns: n.netns,
      ...(plan.config.underlayFamily === "ipv6" ? {} : { underlayIPv4: n.underlayIPv4 }),
      underlayIPv6: n.underlayIPv6,
      underlayIP: n.underlayIP,
      podCIDR: n.podCIDR,
      podCIDRs: n.podCIDRs,
      dataplane: n.dataplane,
    })),
    pods: plan.pods.map((p) => ({
      name: p.name,
      namespace: p.namespace,
      node: p.node,
      netns: p.netns,
      ip: p.ip,
      ips: p.ips,
      labels: p.labels,
    })),
    services: plan.services.map((s) => ({
      name: s.name,
      namespace: s.namespace,
      selector: s.selector,
      ports: s.ports,
    })),
    mode: plan.config.mode,
    ipFamily: plan.config.ipFamily,
    underlayFamily: plan.config.underlayFamily,
    encryption: plan.config.encryption,
    datastore: plan.config.datastore,
  };
}
