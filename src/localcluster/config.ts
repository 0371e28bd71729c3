import { z } from "zod";
import { ValidationError } from "../errors/index.js";
import { parseYamlText } from "../errors/yaml.js";

const NAME = /^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$/;
const PORT = /^(tcp|udp)\/([0-9]{1,5})$/;

const dataplane = z.enum(["auto", "kernel", "userspace"]);
const labels = z.record(z.string(), z.string());

const nodeSchema = z.strictObject({
  name: z.string().regex(NAME, "must be a DNS label of at most 32 characters"),
  dataplane: dataplane.optional(),
  pods: z.number().int().min(0).max(50).optional(),
});
const podSchema = z.strictObject({
  name: z.string().regex(NAME, "must be a DNS label of at most 32 characters"),
  namespace: z.string().regex(NAME).default("default"),
  node: z.string(),
  labels: labels.default({}),
});
const portSchema = z.string().refine((p) => {
  const m = PORT.exec(p);
  return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
}, "must be tcp/PORT or udp/PORT with PORT 1-65535");
const serviceSchema = z.strictObject({
  name: z.string().regex(NAME),
  namespace: z.string().regex(NAME).default("default"),
  selector: labels,
  ports: z.array(portSchema).min(1),
});

/** The `--config` YAML of docs/design.md#the-local-cluster (contract). Every field is optional. */
export const clusterConfigSchema = z.strictObject({
  mode: z.enum(["wireguard", "ipsec"]).default("wireguard"),
  encryption: z.enum(["all", "selective"]).default("all"),
  dataplane: dataplane.default("auto"),
  datastore: z.string().default("local"),
  /**
   * Per-role datastore URLs (default: `datastore` for both), e.g. one kubeconfig per service
   * account on the kubernetes datastore; `datastore` stays the one `cluster up`, status, verify
   * and policy use. `{node}` in the agent's URL is replaced by the node's name (a kubeconfig per
   * node, whose token is bound to that node as a DaemonSet pod's is; on etcd, a user per node:
   * `user=podcrypt-node-{node}&password-file=DIR/podcrypt-node-{node}.password`).
   */
  datastores: z
    .strictObject({ controller: z.string().min(1).optional(), agent: z.string().min(1).optional() })
    .optional(),
  enabled: z.boolean().default(true),
  /**
   * The controllers' `--phase-timeout`: how long a live node may take to acknowledge a phase
   * before the cluster moves on without it (default the controller's, 30 s). Raise it where the
   * nodes are slow, as under emulation.
   */
  phaseTimeoutSeconds: z.number().int().min(5).max(3600).optional(),
  /**
   * Node-to-node encryption: traffic between the nodes' (IPv4 underlay) addresses goes through the
   * tunnels too (docs/design.md#host-encryption). Default false.
   */
  hostEncryption: z.boolean().default(false),
  /**
   * Strict host mode: plaintext host traffic between the nodes is dropped too, except what host
   * encryption leaves outside the tunnels (docs/design.md#host-encryption). Needs
   * `hostEncryption`. Default false.
   */
  strictHost: z.boolean().default(false),
  /** Address families of the pods (see {@link IpFamily}). */
  ipFamily: z.enum(["ipv4", "ipv6", "dual"]).default("ipv4"),
  /** Family of the underlay (the nodes' addresses the tunnels run over); default: see {@link UnderlayFamily}. */
  underlayFamily: z.enum(["ipv4", "ipv6"]).optional(),
  nodes: z
    .array(nodeSchema, { error: "must be a list of nodes, e.g. [{name: node-1, pods: 2}]" })
    .max(64)
    .optional(),
  pods: z.array(podSchema).default([]),
  services: z.array(serviceSchema).default([]),
});

export type ClusterConfigInput = z.input<typeof clusterConfigSchema>;

export interface NodeSpec {
  name: string;
  dataplane: "auto" | "kernel" | "userspace";
  pods: number;
  /**
   * Position that numbers the node's addresses (underlay .10+index, pods 10.244.index.0/24).
   * Default: its place in the list; nodes added to a running cluster keep theirs when others leave.
   */
  index?: number;
}
export interface PodSpec {
  name: string;
  namespace: string;
  node: string;
  labels: Record<string, string>;
}
export interface ServiceSpec {
  name: string;
  namespace: string;
  selector: Record<string, string>;
  ports: string[];
}

/**
 * The pods' address families: `ipv4` (10.244.N.0/24 per node, the default), `ipv6`
 * (fd00:10:244:N::/64 per node) or `dual` (both, every pod holding one address of each).
 */
export type IpFamily = "ipv4" | "ipv6" | "dual";

/**
 * The underlay's family: the nodes' fabric addresses of only this family carry the tunnels
 * (172.30.0.1N/24 or fd30::1N/64). Default: `ipv6` when the pods are IPv6-only, else `ipv4`; an
 * IPv6 underlay carrying dual-stack pods is `ipFamily: dual` with `underlayFamily: ipv6`.
 */
export type UnderlayFamily = "ipv4" | "ipv6";

/** A fully resolved cluster description: defaults applied, references checked. */
export interface ClusterConfig {
  mode: "wireguard" | "ipsec";
  encryption: "all" | "selective";
  datastore: string;
  /** Per-role datastore URLs, when they differ from `datastore`. */
  datastores?: { controller?: string; agent?: string };
  enabled: boolean;
  /** Node-to-node encryption (docs/design.md#host-encryption); absent: off. */
  hostEncryption?: boolean;
  /** Strict host mode (docs/design.md#host-encryption); absent: off. */
  strictHost?: boolean;
  /** The controllers' `--phase-timeout`; absent: their default. */
  phaseTimeoutSeconds?: number;
  ipFamily: IpFamily;
  underlayFamily: UnderlayFamily;
  nodes: NodeSpec[];
  pods: PodSpec[];
  services: ServiceSpec[];
}

/** Flags of `cluster up` that override or fill the config file. */
export interface ClusterFlags {
  nodes?: number;
  podsPerNode?: number;
  mode?: "wireguard" | "ipsec";
  dataplane?: "auto" | "kernel" | "userspace";
  datastore?: string;
  disabled?: boolean;
  /** `--host-encryption`: switch node-to-node encryption on (config `hostEncryption`). */
  hostEncryption?: boolean;
  /** `--strict-host`: switch strict host mode on (config `strictHost`; needs host encryption). */
  strictHost?: boolean;
  ipFamily?: IpFamily;
  underlayFamily?: UnderlayFamily;
}

export const DEFAULT_NODES = 3;
export const DEFAULT_PODS_PER_NODE = 2;

/** Parses the YAML text of a config file; errors name the field (`nodes[1].name: ...`). */
export function parseClusterConfigText(text: string, source = "config"): ClusterConfigInput {
  return (parseYamlText(text, source) ?? {}) as ClusterConfigInput;
}

/** Validates a config document, applies flags and defaults, and checks cross references. */
export function resolveClusterConfig(input: unknown, flags: ClusterFlags = {}): ClusterConfig {
  const parsed = clusterConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path
      .map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`))
      .join("")
      .replace(/^\./, "");
    throw new ValidationError(field, issue.message);
  }
  const c = parsed.data;
  const defaultDataplane = flags.dataplane ?? c.dataplane;
  let nodes: NodeSpec[];
  if (c.nodes !== undefined && flags.nodes === undefined) {
    nodes = c.nodes.map((n) => ({
      name: n.name,
      dataplane: n.dataplane ?? defaultDataplane,
      pods: flags.podsPerNode ?? n.pods ?? DEFAULT_PODS_PER_NODE,
    }));
  } else {
    const count = flags.nodes ?? DEFAULT_NODES;
    if (count < 1 || count > 64) throw new ValidationError("nodes", `must be from 1 to 64, got ${count}`);
    nodes = Array.from({ length: count }, (_, i) => ({
      name: `node-${i + 1}`,
      dataplane: defaultDataplane,
      pods: flags.podsPerNode ?? DEFAULT_PODS_PER_NODE,
    }));
  }
  if (nodes.length === 0) throw new ValidationError("nodes", "at least one node is needed");
  const names = new Set<string>();
  nodes.forEach((n, i) => {
    if (names.has(n.name)) throw new ValidationError(`nodes[${i}].name`, `duplicate node name "${n.name}"`);
    names.add(n.name);
  });
  const podKeys = new Set<string>();
  c.pods.forEach((p, i) => {
    if (!names.has(p.node)) throw new ValidationError(`pods[${i}].node`, `no node named "${p.node}"`);
    const key = `${p.namespace}/${p.name}`;
    if (podKeys.has(key)) throw new ValidationError(`pods[${i}].name`, `duplicate pod ${key}`);
    podKeys.add(key);
  });
  const svcKeys = new Set<string>();
  c.services.forEach((s, i) => {
    const key = `${s.namespace}/${s.name}`;
    if (svcKeys.has(key)) throw new ValidationError(`services[${i}].name`, `duplicate service ${key}`);
    svcKeys.add(key);
  });
  const pods: PodSpec[] = [];
  for (const n of nodes) {
    for (let j = 1; j <= n.pods; j++)
      pods.push({ name: `${n.name}-pod-${j}`, namespace: "default", node: n.name, labels: { app: "demo" } });
  }
  pods.push(...c.pods);
  const ipFamily = flags.ipFamily ?? c.ipFamily;
  const hostEncryption = flags.hostEncryption === true || c.hostEncryption;
  const strictHost = flags.strictHost === true || c.strictHost;
  // Strict host mode guards host traffic that host encryption tunnels: alone it would guard nothing.
  if (strictHost && !hostEncryption)
    throw new ValidationError(
      flags.strictHost === true ? "--strict-host" : "strictHost",
      "needs host encryption (--host-encryption, config hostEncryption: true)",
    );
  return {
    mode: flags.mode ?? c.mode,
    encryption: c.encryption,
    datastore: flags.datastore ?? c.datastore,
    ...(c.datastores === undefined ? {} : { datastores: c.datastores }),
    enabled: flags.disabled === true ? false : c.enabled,
    ...(hostEncryption ? { hostEncryption: true } : {}),
    ...(strictHost ? { strictHost: true } : {}),
    ...(c.phaseTimeoutSeconds === undefined ? {} : { phaseTimeoutSeconds: c.phaseTimeoutSeconds }),
    ipFamily,
    underlayFamily: flags.underlayFamily ?? c.underlayFamily ?? (ipFamily === "ipv6" ? "ipv6" : "ipv4"),
    nodes,
    pods,
    services: c.services,
  };
}
