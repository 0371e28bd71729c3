import { listNetns, deleteNetns, run } from "../platform/netns/netns.js";
import { podMtu } from "../mtu/mtu.js";
import {
  NETNS_PREFIX,
  POD_GATEWAY,
  POD_GATEWAY_V6,
  type ClusterPlan,
  type PlannedNode,
  type PlannedPod,
} from "./plan.js";

/** External MTU of the fabric (the underlay of the local cluster). */
export const FABRIC_MTU = 1500;

/** `ip -batch` runs many commands in one process: one per namespace keeps `up` fast. */
async function ipBatch(netns: string | undefined, commands: string[]): Promise<void> {
  if (commands.length === 0) return;
  const args = netns === undefined ? ["-batch", "-"] : ["-n", netns, "-batch", "-"];
  await run("ip", args, { input: commands.join("\n") + "\n", timeoutMs: 60_000 });
}

async function sysctl(netns: string, settings: string[]): Promise<void> {
  await run("ip", ["netns", "exec", netns, "sysctl", "-qw", ...settings]);
}

/**
 * Creates the namespaces, links, addresses and intra-node routes of `plan`. Routes between nodes
 * and everything about encryption belong to the agents, so nothing here can leak plaintext: until
 * an agent runs, a node has no route to another node's pods at all.
 */
export async function createTopology(plan: ClusterPlan): Promise<void> {
  await ipBatch(undefined, [`netns add ${plan.fabric.netns}`]);
  await ipBatch(plan.fabric.netns, [
    "link set lo up",
    `link add ${plan.fabric.bridge} type bridge`,
    `link set ${plan.fabric.bridge} up`,
  ]);
  await addNodes(plan, plan.nodes, plan.pods);
}

/** Creates `nodes` (attached to the fabric) and `pods` (on nodes of `plan`), as {@link createTopology}. */
export async function addNodes(
  plan: ClusterPlan,
  nodes: readonly PlannedNode[],
  pods: readonly PlannedPod[],
): Promise<void> {
  const nodeOf = (p: PlannedPod): PlannedNode => plan.nodes.find((n) => n.name === p.node)!;
  await ipBatch(
    undefined,
    [...nodes.map((n) => n.netns), ...pods.map((p) => p.netns)].map((ns) => `netns add ${ns}`),
  );
  // Before any link exists: the IPv6 settings apply to links made afterwards.
  await Promise.all([
    ...nodes.map((n) =>
      // Strict reverse-path filtering, as some distributions ship it (RHEL): the agents must cope
      // with it (src/dataplane/node/rpf.ts), and every zero-loss test checks that they do.
      sysctl(n.netns, [
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.rp_filter=1",
        "net.ipv4.conf.default.rp_filter=1",
        ...IPV6_AT_ONCE,
      ]),
    ),
    ...pods.map((p) => sysctl(p.netns, IPV6_AT_ONCE)),
  ]);
  await ipBatch(undefined, [
    ...nodes.map(
      (n) =>
        `link add ${n.fabricIf} netns ${plan.fabric.netns} type veth peer name ${n.underlayIf} netns ${n.netns}`,
    ),
    ...pods.map(
      (p) => `link add ${p.hostIf} netns ${nodeOf(p).netns} type veth peer name eth0 netns ${p.netns}`,
    ),
  ]);
  await ipBatch(
    plan.fabric.netns,
    nodes.flatMap((n) => [
      `link set ${n.fabricIf} master ${plan.fabric.bridge}`,
      `link set ${n.fabricIf} up`,
    ]),
  );
  // As the agents' tunnels: the smaller of both modes, so a mode switch never changes it.
  const v6underlay = plan.config.underlayFamily === "ipv6";
  const mtu = podMtu(FABRIC_MTU, v6underlay);
  await Promise.all(
    nodes.map((n) =>
      ipBatch(n.netns, [
        "link set lo up",
        // Pods route through this link-local gateway; the node answers ARP for it on every pod veth.
        `addr add ${POD_GATEWAY}/32 dev lo`,
        `link set ${n.underlayIf} mtu ${FABRIC_MTU}`,
        // An IPv6 underlay is IPv6 only: the node has no IPv4 fabric address to fall back on.
        ...(v6underlay ? [] : [`addr add ${n.underlayIPv4}/24 dev ${n.underlayIf}`]),
        `addr add ${n.underlayIPv6}/64 dev ${n.underlayIf} nodad`,
        `link set ${n.underlayIf} up`,
      ]),
    ),
  );
  // Node-side pod links (also of pods added to existing nodes).
  const byNode = new Map<string, PlannedPod[]>();
  for (const p of pods) byNode.set(nodeOf(p).netns, [...(byNode.get(nodeOf(p).netns) ?? []), p]);
  await Promise.all(
    [...byNode].map(([ns, list]) =>
      ipBatch(
        ns,
        list.flatMap((p) => [
          // The pods' IPv6 gateway, on every pod link (link-local: the same address on each).
          ...(p.ips.some(isV6) ? [`addr add ${POD_GATEWAY_V6}/64 dev ${p.hostIf} nodad`] : []),
          `link set ${p.hostIf} up`,
          ...p.ips.map((ip) => `route add ${ip}/${isV6(ip) ? 128 : 32} dev ${p.hostIf}`),
        ]),
      ),
    ),
  );
  await Promise.all(
    pods.map((p) =>
      ipBatch(p.netns, [
        "link set lo up",
        `link set eth0 mtu ${mtu}`,
        ...p.ips.map((ip) => `addr add ${ip}/${isV6(ip) ? "128" : "32"} dev eth0${isV6(ip) ? " nodad" : ""}`),
        "link set eth0 up",
        ...(p.ips.some((ip) => !isV6(ip))
          ? [`route add ${POD_GATEWAY} dev eth0 scope link`, `route add default via ${POD_GATEWAY} dev eth0`]
          : []),
        ...(p.ips.some(isV6) ? [`route add default via ${POD_GATEWAY_V6} dev eth0`] : []),
      ]),
    ),
  );
}

const isV6 = (ip: string): boolean => ip.includes(":");

/**
 * IPv6 on, and usable at once: a namespace's addresses skip duplicate address detection (the
 * pods' and nodes' link-local ones too), which would hold each new address back for a second or more.
 */
const IPV6_AT_ONCE = [
  "net.ipv6.conf.all.disable_ipv6=0",
  "net.ipv6.conf.default.disable_ipv6=0",
  "net.ipv6.conf.all.accept_dad=0",
  "net.ipv6.conf.default.accept_dad=0",
];

/** Deletes the namespaces of `nodes` and `pods` (killing what runs inside). */
export async function removeNodes(nodes: readonly PlannedNode[], pods: readonly PlannedPod[]): Promise<void> {
  await Promise.all(pods.map((p) => deleteNetns(p.netns)));
  await Promise.all(nodes.map((n) => deleteNetns(n.netns)));
}

/** Deletes every namespace of the local cluster (killing what runs inside), whatever state it is in. */
export async function destroyTopology(): Promise<string[]> {
  const ours = (await listNetns()).filter((ns) => ns.startsWith(NETNS_PREFIX));
  // Pods first, then nodes, then the fabric: the veths go with their namespaces.
  ours.sort((a, b) => b.length - a.length);
  await Promise.all(ours.map((ns) => deleteNetns(ns)));
  return ours;
}
