/**
 * Simulated nodes for control-plane tests and the scale bench: the real Agent and Controller
 * classes over any Datastore, each agent with a stateful FakeDataplane and in-memory key pairs.
 */
import { Agent } from "../../src/agent/agent.js";
import type { AuthoritySource } from "../../src/agent/claims.js";
import type { AgentSettings } from "../../src/agent/desired.js";
import { systemClock, type Clock } from "../../src/clock.js";
import { Controller } from "../../src/controller/controller.js";
import type { PhaseTiming } from "../../src/protocol/index.js";
import { FakeDataplane, FakeFabric, MemoryEpochKeys } from "./fake-dataplane/index.js";
import { isConflictError } from "../../src/datastore/errors.js";
import type { Datastore } from "../../src/datastore/types.js";
import { createLogger, type Logger } from "../../src/log/logger.js";
import { CLUSTER_ENCRYPTION_NAME, type ClusterEncryption } from "../../src/model/index.js";

export { waitUntil } from "./wait.js";

/** Underlay IPv4 of simulated node `i` (never used for traffic: only a value in the datastore). */
export function simUnderlay(i: number): string {
  return `172.${16 + ((i >> 16) & 15)}.${(i >> 8) & 255}.${i & 255}`;
}

/** Pod CIDR of simulated node `i`. */
export function simPodCidr(i: number): string {
  return `10.${(i >> 8) & 255}.${i & 255}.0/24`;
}

export function simNodeName(i: number): string {
  return `node-${String(i).padStart(4, "0")}`;
}

/** Simulated node `i` as its kubelet and the node IPAM controller register it on Kubernetes. */
export function simNodeRegistration(i: number): { name: string; internalIP: string; podCIDRs: string[] } {
  return { name: simNodeName(i), internalIP: simUnderlay(i), podCIDRs: [simPodCidr(i)] };
}

/** One simulated node. */
export interface SimNode {
  readonly index: number;
  readonly name: string;
  readonly agent: Agent;
  readonly backend: FakeDataplane;
  readonly keys: MemoryEpochKeys;
  readonly store: Datastore;
}

export interface SimNodeOptions {
  heartbeatMs?: number;
  resyncMs?: number;
  logger?: Logger;
  clock?: Clock;
  /** Use this backend instead of a fresh FakeDataplane (a restarted agent reopening its data plane). */
  backend?: FakeDataplane;
  keys?: MemoryEpochKeys;
  /** The network handshakes cross: a session needs both ends configured (default: peers answer at once). */
  fabric?: FakeFabric;
  /** The pod CIDRs the agent publishes (default {@link simPodCidr}): a compromised node lies here. */
  podCIDRs?: string[];
  /** The underlay IPv4 the agent publishes (default {@link simUnderlay}). */
  underlay?: string;
  /** The authority peers' claims are vetted against (the Kubernetes datastore's Nodes). */
  authority?: (onChange: () => void) => Promise<AuthoritySource>;
  /** Workload gating: the agent publishes its wish for its Node's not-ready taint in its record. */
  workloadGate?: boolean;
}

/** A logger that writes nothing unless PODCRYPT_TEST_LOG is set (to a pino level). */
export function testLogger(component: string): Logger {
  return createLogger(component, { level: process.env["PODCRYPT_TEST_LOG"] ?? "silent" });
}

/** Makes (does not start) a simulated node's agent. */
export function simNode(store: Datastore, index: number, o: SimNodeOptions = {}): SimNode {
  const name = simNodeName(index);
  const backend =
    o.backend ??
    new FakeDataplane(o.fabric === undefined ? {} : { fabric: { node: name, network: o.fabric } });
  const keys = o.keys ?? new MemoryEpochKeys();
  const settings: AgentSettings = {
    node: name,
    ifPrefix: "podcrypt",
    wireguardPort: 51820,
    underlayIf: "eth0",
    mtu: 1420,
  };
  const agent = new Agent({
    settings,
    self: {
      underlay: { ipv4: o.underlay ?? simUnderlay(index) },
      podCIDRs: o.podCIDRs ?? [simPodCidr(index)],
      capabilities: { wireguardKernel: false, xfrmKernel: false },
    },
    store,
    backend,
    keys,
    clock: o.clock ?? systemClock,
    logger: o.logger ?? testLogger("agent"),
    ...(o.heartbeatMs === undefined ? {} : { heartbeatMs: o.heartbeatMs }),
    ...(o.resyncMs === undefined ? {} : { resyncMs: o.resyncMs }),
    ...(o.authority === undefined ? {} : { authority: o.authority }),
    ...(o.workloadGate === undefined ? {} : { workloadGate: o.workloadGate }),
  });
  return { index, name, agent, backend, keys, store };
}

/** Makes (does not start) a controller. */
export function simController(
  store: Datastore,
  identity: string,
  timing?: PhaseTiming,
  leaseTtlSeconds = 5,
  clock: Clock = systemClock,
): Controller {
  return new Controller({
    store,
    identity,
    clock,
    logger: testLogger("controller"),
    leaseTtlSeconds,
    ...(timing === undefined ? {} : { timing }),
  });
}

/** The cluster object, or undefined. */
export async function readCluster(store: Datastore): Promise<ClusterEncryption | undefined> {
  return (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))?.value;
}

/** Read-modify-write of the cluster object with CAS, as the CLI does. */
export async function updateCluster(
  store: Datastore,
  change: (c: ClusterEncryption) => ClusterEncryption,
): Promise<ClusterEncryption> {
  const col = store.collection("clusterencryptions");
  for (;;) {
    const cur = await col.get(CLUSTER_ENCRYPTION_NAME);
    if (cur === undefined) throw new Error("no ClusterEncryption yet");
    try {
      return (await col.update(change(cur.value), { revision: cur.revision })).value;
    } catch (e) {
      if (!isConflictError(e)) throw e;
    }
  }
}

/** `podcrypt rotate` without the CLI: asks the controller for a rotation. */
export async function requestRotation(store: Datastore): Promise<ClusterEncryption> {
  // rotateRequestedAt must be strictly later than lastCompletedAt (millisecond timestamps).
  await new Promise((r) => setTimeout(r, 2));
  return updateCluster(store, (c) => ({ ...c, rotateRequestedAt: new Date().toISOString() }));
}

/** The cluster's idle state at `epoch` (a run finished), or false. */
export function idleAt(c: ClusterEncryption | undefined, epoch: number): boolean {
  return c !== undefined && c.phase === "idle" && c.epoch === epoch && c.applied !== undefined;
}

/**
 * Whether `node`'s data plane holds exactly generation `epoch`, with every other node of `peers`
 * as a peer under the public key that node published for `epoch`.
 */
export function converged(
  node: SimNode,
  epoch: number,
  peers: SimNode[],
  published: Map<string, string>,
): boolean {
  if (node.backend.epochs().join() !== String(epoch)) return false;
  for (const p of peers) {
    if (p.name === node.name) continue;
    const key = published.get(`${p.name}/${epoch}`);
    if (key === undefined || !node.backend.hasPeer(p.name, epoch, key)) return false;
  }
  return true;
}

/** Public keys as published in the store, by `node/epoch`. */
export async function publishedKeys(store: Datastore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const n of (await store.collection("nodes").list()).items)
    for (const [e, k] of Object.entries(n.value.publicKeys)) out.set(`${n.key}/${e}`, k);
  return out;
}
