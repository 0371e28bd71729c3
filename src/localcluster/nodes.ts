/**
 * Nodes joining and leaving a running local cluster (`podcrypt cluster add-node | remove-node`),
 * as a cloud adds and removes machines: the node's namespaces and agent come and go; the other
 * agents learn of it through the datastore alone.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { espSocketPath } from "../dataplane/esp-userspace/control.js";
import { uapiSocketPath } from "../dataplane/wireguard-userspace/uapi-client.js";
import type { Datastore } from "../datastore/types.js";
import { PodcryptError, ValidationError } from "../errors/index.js";
import { objectName } from "../model/index.js";
import {
  publishServices,
  registerKubernetesNodes,
  agentDatastore,
  roleDatastores,
  startAgent,
  startPod,
  startRelayDaemon,
  type Progress,
} from "./cluster.js";
import type { NodeSpec } from "./config.js";
import { nodeEspIfname, nodeWgIfname, planCluster, type PlannedNode } from "./plan.js";
import { stopProcesses } from "./processes.js";
import { scrapeAddedNode, unscrapeRemovedNode } from "./prometheus.js";
import { datastoreRelay } from "./relay.js";
import { collectStatus } from "./status.js";
import {
  clusterHome,
  plannedNode,
  requireClusterState,
  writeClusterState,
  type ClusterState,
} from "./state.js";
import { addNodes, removeNodes } from "./topology.js";

/** The most nodes a local cluster holds (pod CIDRs 10.244.N.0/24 and underlay addresses .10+N). */
export const MAX_NODES = 64;

async function withStore<T>(
  state: ClusterState,
  openStore: (url: string) => Promise<Datastore>,
  fn: (s: Datastore) => Promise<T>,
): Promise<T> {
  const store = await openStore(state.datastore);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Polls until `done` holds (checking every 250 ms); returns the milliseconds it took. */
export async function until(what: string, deadline: number, done: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (!(await done())) {
    if (Date.now() > deadline) throw new PodcryptError("ETIMEOUT", `timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return Date.now() - start;
}

/**
 * Adds a node (with `pods` plain pods) to the running cluster, starts its agent and pods, and
 * waits until every other node has a session (or SAs) with it. Returns the node and how long the
 * others took to converge after its agent started.
 */
export async function addNode(
  openStore: (url: string) => Promise<Datastore>,
  progress: Progress,
  spec: Partial<NodeSpec>,
  timeoutMs: number,
): Promise<{ node: PlannedNode; convergedMs: number }> {
  const home = clusterHome();
  const state = requireClusterState(home);
  const config = state.plan.config;
  if (config.nodes.length >= MAX_NODES)
    throw new ValidationError("add-node", `the local cluster holds at most ${MAX_NODES} nodes`);
  const name = spec.name ?? nextName(config.nodes.map((n) => n.name));
  const named = objectName.safeParse(name);
  if (!named.success)
    throw new ValidationError("--name", `"${name}" ${named.error.issues[0]?.message ?? "is invalid"}`);
  if (config.nodes.some((n) => n.name === name))
    throw new ValidationError("--name", `the cluster already has a node named ${name}`);
  // Every node keeps the index it has; the new one takes the next free one.
  const nodes = config.nodes.map((n, i) => ({ ...n, index: state.plan.nodes[i]!.index }));
  const index = Math.max(...nodes.map((n) => n.index)) + 1;
  if (index > 200) throw new ValidationError("add-node", "no free node address left in the local cluster");
  const node: NodeSpec = { name, dataplane: spec.dataplane ?? "auto", pods: spec.pods ?? 2, index };
  const pods = Array.from({ length: node.pods }, (_, j) => ({
    name: `${name}-pod-${j + 1}`,
    namespace: "default",
    node: name,
    labels: { app: "demo" },
  }));
  const next = planCluster({ ...config, nodes: [...nodes, node], pods: [...config.pods, ...pods] });
  const added = next.nodes.find((n) => n.name === name)!;
  const addedPods = next.pods.filter((p) => p.node === name);
  progress(`adding ${name} with ${addedPods.length} pods`);
  state.plan = next;
  writeClusterState(state, home);
  await addNodes(next, [added], addedPods);
  const add = (p: ClusterState["processes"][number]): void => {
    state.processes.push(p);
    writeClusterState(state, home);
  };
  const agentUrl = roleDatastores(state).agent;
  const relay = await datastoreRelay(agentDatastore(agentUrl, name));
  if (relay !== undefined) await startRelayDaemon(home, relay, `relay-${name}`, [added], add);
  await withStore(state, openStore, async (s) => {
    await publishServices(s, next);
    await registerKubernetesNodes(s, [added]);
  });
  const started = Date.now();
  add(startAgent(home, agentUrl, added));
  for (const p of addedPods) add(startPod(home, p));
  await scrapeAddedNode(home, added, add);
  progress("waiting until every node has a session with it");
  const convergedMs = await until(`every node has a session with ${name}`, started + timeoutMs, async () => {
    const s = await collectStatus(state, openStore);
    if (!s.enabled) return s.nodes.find((n) => n.name === name)?.live === true;
    return s.nodes.every(
      (n) =>
        n.live &&
        next.nodes.every(
          (o) =>
            o.name === n.name ||
            n.peers.some((p) => p.node === o.name && p.epoch === s.epoch && p.state === "established"),
        ),
    );
  });
  progress(
    `${name} joined: every node reached it ${(convergedMs / 1000).toFixed(1)} s after its agent started`,
  );
  return { node: added, convergedMs };
}

function nextName(existing: string[]): string {
  for (let i = existing.length + 1; ; i++) if (!existing.includes(`node-${i}`)) return `node-${i}`;
}

/**
 * Removes node `name`: stops its agent and pods, deletes its namespaces (its data-plane daemons
 * die with them) and its Node record, then waits until no other node keeps it as a peer. Returns
 * how long that took after the record was deleted.
 */
export async function removeNode(
  openStore: (url: string) => Promise<Datastore>,
  progress: Progress,
  name: string,
  timeoutMs: number,
): Promise<{ convergedMs: number }> {
  const home = clusterHome();
  const state = requireClusterState(home);
  const node = plannedNode(state, name);
  if (state.plan.nodes.length === 1)
    throw new ValidationError("node", `${name} is the last node; use cluster down`);
  const pods = state.plan.pods.filter((p) => p.node === name);
  const netns = new Set([node.netns, ...pods.map((p) => p.netns)]);
  const mine = state.processes.filter(
    (p) => (p.netns !== undefined && netns.has(p.netns)) || p.name === `relay-${name}`,
  );
  progress(`removing ${name}: stopping its agent and ${pods.length} pods`);
  unscrapeRemovedNode(home, name);
  // Out of cluster.json first, so the supervisor does not restart them.
  state.processes = state.processes.filter((p) => !mine.includes(p));
  writeClusterState(state, home);
  await stopProcesses(mine.map((p) => p.pid));
  await removeNodes([node], pods);
  for (const sock of [
    espSocketPath(nodeEspIfname(node.index)),
    uapiSocketPath(nodeWgIfname(node.index, 0)),
    uapiSocketPath(nodeWgIfname(node.index, 1)),
  ])
    rmSync(sock, { force: true });
  rmSync(join(home, "nodes", name), { recursive: true, force: true });
  const config = state.plan.config;
  state.plan = planCluster({
    ...config,
    // Every remaining node keeps its index, so its addresses.
    nodes: config.nodes.flatMap((n, i) =>
      n.name === name ? [] : [{ ...n, index: state.plan.nodes[i]!.index }],
    ),
    pods: config.pods.filter((p) => p.node !== name),
  });
  writeClusterState(state, home);
  const started = Date.now();
  await withStore(state, openStore, async (s) => {
    await s
      .collection("nodes")
      .delete(name)
      .catch(() => undefined);
    await publishServices(s, state.plan);
  });
  const convergedMs = await until(`no node keeps ${name} as a peer`, started + timeoutMs, async () => {
    const s = await collectStatus(state, openStore);
    return s.nodes.every((n) => !n.peers.some((p) => p.node === name));
  });
  progress(
    `${name} removed: every node dropped it ${(convergedMs / 1000).toFixed(1)} s after its record went`,
  );
  return { convergedMs };
}
