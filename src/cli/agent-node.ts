/**
 * Who and where the agent's node is, from what a DaemonSet pod has: the node name from `--node` or
 * $NODE_NAME (the downward API's spec.nodeName); the underlay address and pod CIDRs from the flags,
 * else, on the Kubernetes datastore, from the Node object (status.addresses InternalIP,
 * spec.podCIDRs, as the kubelet and the node IPAM controller publish them); the underlay
 * interface from the flag, else the interface that holds the underlay address.
 */
import { isIP } from "node:net";
import type { KubernetesDatastore } from "../datastore/kubernetes/datastore.js";
import { isNotFoundError } from "../datastore/errors.js";
import type { Datastore } from "../datastore/types.js";
import { ValidationError } from "../errors/index.js";
import { cidr, objectName } from "../model/index.js";
import { run } from "../platform/netns/netns.js";

/** This node's name: `--node`, else $NODE_NAME. */
export function resolveNodeName(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const name = flag ?? env["NODE_NAME"];
  if (name === undefined || name === "")
    throw new ValidationError(
      "--node",
      "this node's name is needed: pass --node NAME, or set $NODE_NAME (a DaemonSet sets it from spec.nodeName)",
    );
  const ok = objectName.safeParse(name);
  if (!ok.success)
    throw new ValidationError(
      flag === undefined ? "$NODE_NAME" : "--node",
      `"${name}" ${ok.error.issues[0]!.message}`,
    );
  return name;
}

/** The network of a node as the agent uses it. */
export interface NodeNetwork {
  /** The underlay address of the node's tunnels: the IPv4 one when the node has both. */
  underlayIp: string;
  /** Its underlay addresses, at most one per family (a dual-stack node publishes both). */
  underlay: { ipv4?: string; ipv6?: string };
  podCIDRs: string[];
  /** Where each came from, for the log. */
  source: { underlayIp: "flag" | "node"; podCIDRs: "flag" | "node" | "none" };
}

/** What the Kubernetes datastore offers (the part this file uses). */
type NodeNetworkSource = Pick<KubernetesDatastore, "nodeNetwork">;

/**
 * A node's underlay addresses by family, from `ips` in order: the first of each family (`strict`:
 * a second one of a family is an error naming `field`).
 */
function underlayOf(ips: readonly string[], field: string, strict: boolean): NodeNetwork["underlay"] {
  const out: NodeNetwork["underlay"] = {};
  for (const ip of ips) {
    const family = isIP(ip) === 6 ? "ipv6" : "ipv4";
    if (out[family] === undefined) out[family] = ip;
    else if (strict)
      throw new ValidationError(
        field,
        `two ${family} addresses (${out[family]}, ${ip}): give at most one per family`,
      );
  }
  return out;
}

/**
 * The underlay addresses and pod CIDRs: the flags when given, else the Node object (Kubernetes
 * datastore only): every InternalIP, the first of each family, so a dual-stack Node gives both.
 * The tunnels run over the IPv4 address when there are both. Errors say which flag to pass.
 */
export async function resolveNodeNetwork(
  store: Datastore,
  node: string,
  flags: { underlayIp?: string | readonly string[] | undefined; podCidr?: readonly string[] | undefined },
): Promise<NodeNetwork> {
  const givenIps =
    flags.underlayIp === undefined
      ? undefined
      : typeof flags.underlayIp === "string"
        ? [flags.underlayIp]
        : flags.underlayIp;
  for (const ip of givenIps ?? [])
    if (isIP(ip) === 0) throw new ValidationError("--underlay-ip", `"${ip}" is not an IPv4 or IPv6 address`);
  const given =
    givenIps === undefined || givenIps.length === 0 ? undefined : underlayOf(givenIps, "--underlay-ip", true);
  for (const c of flags.podCidr ?? [])
    if (!cidr.safeParse(c).success) throw new ValidationError("--pod-cidr", `"${c}" is not a CIDR`);
  const givenCidrs = flags.podCidr !== undefined && flags.podCidr.length > 0;
  if (given !== undefined && (givenCidrs || store.backend !== "kubernetes"))
    return {
      underlayIp: (given.ipv4 ?? given.ipv6)!,
      underlay: given,
      podCIDRs: [...(flags.podCidr ?? [])],
      source: { underlayIp: "flag", podCIDRs: givenCidrs ? "flag" : "none" },
    };
  if (store.backend !== "kubernetes")
    throw new ValidationError(
      "--underlay-ip",
      `is required with the ${store.backend} datastore (on the kubernetes datastore the Node's InternalIP is used)`,
    );
  let net: Awaited<ReturnType<NodeNetworkSource["nodeNetwork"]>>;
  try {
    net = await (store as unknown as NodeNetworkSource).nodeNetwork(node);
  } catch (e) {
    if (isNotFoundError(e))
      throw new ValidationError(
        "--node",
        `Kubernetes has no Node named "${node}" (check --node / $NODE_NAME; the kubelet registers its Node)`,
        { cause: e },
      );
    throw e;
  }
  let underlay = given;
  let ipSource: NodeNetwork["source"]["underlayIp"] = "flag";
  if (underlay === undefined) {
    const internal = net.addresses.filter((a) => a.type === "InternalIP" && isIP(a.address) !== 0);
    if (internal.length === 0)
      throw new ValidationError(
        "--underlay-ip",
        `Node "${node}" has no InternalIP in status.addresses (${net.addresses.map((a) => `${a.type} ${a.address}`).join(", ") || "none"}): pass --underlay-ip`,
      );
    // Dual-stack Nodes list an InternalIP of each family; the tunnels take the IPv4 one, as kube-proxy picks.
    underlay = underlayOf(
      internal.map((a) => a.address),
      "--underlay-ip",
      false,
    );
    ipSource = "node";
  }
  const underlayIp = (underlay.ipv4 ?? underlay.ipv6)!;
  if (givenCidrs)
    return {
      underlayIp,
      underlay,
      podCIDRs: [...flags.podCidr!],
      source: { underlayIp: ipSource, podCIDRs: "flag" },
    };
  const bad = net.podCIDRs.find((c) => !cidr.safeParse(c).success);
  if (bad !== undefined)
    throw new ValidationError("--pod-cidr", `Node "${node}" has spec.podCIDRs "${bad}", not a CIDR`);
  if (net.podCIDRs.length === 0)
    throw new ValidationError(
      "--pod-cidr",
      `Node "${node}" has no spec.podCIDRs (the node IPAM controller sets them; with another IPAM pass --pod-cidr)`,
    );
  return { underlayIp, underlay, podCIDRs: net.podCIDRs, source: { underlayIp: ipSource, podCIDRs: "node" } };
}

/** `ip -j addr show` as far as this file reads it. */
interface IpAddrLink {
  ifname: string;
  addr_info?: { local?: string }[];
}

/** The interface that holds `address` (from `ip -j addr show` output). */
export function interfaceHolding(links: readonly IpAddrLink[], address: string): string | undefined {
  const norm = (a: string) => a.toLowerCase();
  return links.find((l) =>
    (l.addr_info ?? []).some((i) => i.local !== undefined && norm(i.local) === norm(address)),
  )?.ifname;
}

/** The interface of this network namespace that holds `address`; ValidationError naming the flag if none does. */
export async function underlayInterfaceOf(address: string): Promise<string> {
  const links = JSON.parse(await run("ip", ["-j", "addr", "show"])) as IpAddrLink[];
  const ifname = interfaceHolding(links, address);
  if (ifname === undefined)
    throw new ValidationError(
      "--underlay-if",
      `no interface here holds the underlay address ${address}: pass --underlay-if (or a --underlay-ip this node has)`,
    );
  return ifname;
}
