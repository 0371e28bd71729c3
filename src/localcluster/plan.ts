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
/** Link-local gateway pods route through (proxy ARP on the node side, as Calico does). */
export const POD_GATEWAY = "169.254.1.1";

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
  underlayIPv4: string;
  underlayIPv6: string;
  podCIDR: string;
  dataplane: "auto" | "kernel" | "userspace";
}

export interface PlannedPod {
  name: string;
  namespace: string;
  node: string;
  netns: string;
  ip: string;
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
  const nodes = config.nodes.map((n, i): PlannedNode => {
    const index = n.index ?? i + 1;
    return {
      name: n.name,
      index,
      netns: `${NETNS_PREFIX}${n.name}`,
      underlayIf: "eth0",
      fabricIf: `pcf${index}`,
      underlayIPv4: `${UNDERLAY_V4_PREFIX}${10 + index}`,
      underlayIPv6: `${UNDERLAY_V6_PREFIX}${(10 + index).toString(16)}`,
      podCIDR: `10.244.${index}.0/24`,
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
    return {
      name: p.name,
      namespace: p.namespace,
      node: node.name,
      netns: `${NETNS_PREFIX}${node.name}-${p.namespace}-${p.name}`,
      ip: `10.244.${node.index}.${9 + j}`,
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

/** The `cluster info --json` document (docs/design.md#the-local-cluster, contract). */
export function clusterInfo(plan: ClusterPlan): object {
  return {
    fabric: plan.fabric,
    nodes: plan.nodes.map((n) => ({
      name: n.name,
      netns: n.netns,
      underlayIPv4: n.underlayIPv4,
      underlayIPv6: n.underlayIPv6,
      podCIDR: n.podCIDR,
      dataplane: n.dataplane,
    })),
    pods: plan.pods.map((p) => ({
      name: p.name,
      namespace: p.namespace,
      node: p.node,
      netns: p.netns,
      ip: p.ip,
      labels: p.labels,
    })),
    services: plan.services.map((s) => ({
      name: s.name,
      namespace: s.namespace,
      selector: s.selector,
      ports: s.ports,
    })),
    mode: plan.config.mode,
    encryption: plan.config.encryption,
    datastore: plan.config.datastore,
  };
}
