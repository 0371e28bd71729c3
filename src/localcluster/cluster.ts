import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { espSocketPath } from "../dataplane/esp-userspace/control.js";
import { uapiSocketPath } from "../dataplane/wireguard-userspace/uapi-client.js";
import { failureChain } from "../agent/failures.js";
import { rootCauseText } from "../errors/describe.js";
import { PodcryptError } from "../errors/index.js";
import { listNetns } from "../platform/netns/netns.js";
import { CLUSTER_ENCRYPTION_NAME } from "../model/index.js";
import type { KubernetesDatastore } from "../datastore/kubernetes/datastore.js";
import type { Datastore } from "../datastore/types.js";
import type { ClusterConfig } from "./config.js";
import { VERIFY_PORT } from "./echo.js";
import {
  CLUSTER_POD_CIDR,
  CLUSTER_POD_CIDR_V6,
  NETNS_PREFIX,
  nodeEspIfname,
  nodeIfPrefix,
  nodeWgIfname,
  planCluster,
  servicePods,
  type ClusterPlan,
  type PlannedNode,
  type PlannedPod,
} from "./plan.js";
import { alive, startDaemon, stopProcesses, waitForLog } from "./processes.js";
import { datastoreRelay, type RelayTarget } from "./relay.js";
import {
  clusterHome,
  readClusterState,
  removeClusterHome,
  writeClusterState,
  type ClusterProcess,
  type ClusterState,
} from "./state.js";
import { readSupervisorRecord } from "./supervisor.js";
import { createTopology, destroyTopology } from "./topology.js";
import { freeLoopbackPort, PROMETHEUS_ADDRESS, PROMETHEUS_NETNS, startPrometheus } from "./prometheus.js";
import { collectStatus, type ClusterStatus } from "./status.js";

/** The controllers `cluster up` runs: process name and election identity (whichever takes the lease first leads). */
export const CONTROLLERS: ReadonlyArray<readonly [name: string, identity: string]> = [
  ["controller", "controller-1"],
  ["controller-2", "controller-2"],
];

/**
 * Starts the cluster's supervisor (src/localcluster/supervisor.ts) in the background. Not
 * supervised itself: `podcrypt cluster supervise` starts a new one when it died.
 */
export function startSupervisor(home: string): ClusterProcess {
  const p = startDaemon(home, "supervisor", "supervisor", ["cluster", "supervise", "--foreground"]);
  delete p.argv;
  return p;
}

/** See plan.ts; exported here too for the callers that manage a cluster through this module. */
export { nodeIfPrefix };

/** The datastore URL the daemons of a local cluster use. */
export function datastoreUrl(config: ClusterConfig, home: string): string {
  return config.datastore === "local" ? `local:${join(home, "store")}` : config.datastore;
}

/** The URL each daemon role uses: its own from the config's `datastores`, else the cluster's. */
export function roleDatastores(state: Pick<ClusterState, "datastore" | "datastores">): {
  controller: string;
  agent: string;
} {
  return state.datastores ?? { controller: state.datastore, agent: state.datastore };
}

/**
 * On the kubernetes datastore, registers the plan's nodes as kubelets would (Node objects with
 * their InternalIP and pod CIDR), where Kubernetes has none yet: agents read them from there.
 */
export async function registerKubernetesNodes(
  store: Datastore,
  nodes: readonly PlannedNode[],
): Promise<void> {
  if (store.backend !== "kubernetes") return;
  const k8s = store as unknown as Pick<KubernetesDatastore, "registerNode">;
  for (const n of nodes)
    await k8s.registerNode({
      name: n.name,
      internalIP: n.underlayIPs[0]!,
      ...(n.underlayIPs[1] === undefined ? {} : { internalIP2: n.underlayIPs[1] }),
      podCIDRs: n.podCIDRs,
    });
}

export type Progress = (line: string) => void;

/** Whether the cluster is in the state `up` waits for: every node reporting, and encrypted when enabled. */
export function isSettled(
  status: ClusterStatus,
  plan: ClusterPlan,
): { ok: boolean; waiting: string[]; firstPerNode: string[] } {
  const waiting: string[] = [];
  // What each node waits for first: a failing reconcile's cause explains the missing peers after it.
  const firstPerNode: string[] = [];
  if (status.phase !== "idle") firstPerNode.push(`phase ${status.phase}`);
  for (const n of plan.nodes) {
    const before = waiting.length;
    settleWaits(status, plan, n.name, waiting);
    if (waiting.length > before) firstPerNode.push(waiting[before]!);
  }
  if (status.phase !== "idle") waiting.unshift(`phase ${status.phase}`);
  return { ok: waiting.length === 0, waiting, firstPerNode };
}

/** What node `name` still waits for, appended to `waiting`. */
function settleWaits(status: ClusterStatus, plan: ClusterPlan, name: string, waiting: string[]): void {
  const s = status.nodes.find((x) => x.name === name);
  if (s === undefined || !s.live) {
    waiting.push(`${name}: agent not reporting`);
    return;
  }
  const f = s.reconcileError;
  if (f !== undefined && f.clearedAt === undefined)
    // Without the count, which changes every pass: the progress line repeats only when news.
    waiting.push(`${name}: reconcile failing since ${f.since}: ${rootCauseText(failureChain(f))}`);
  if (!status.enabled) return;
  for (const other of plan.nodes) {
    if (other.name === name) continue;
    const p = s.peers.find((q) => q.node === other.name && q.epoch === status.epoch);
    if (p === undefined) waiting.push(`${name}→${other.name}: no peer`);
    // WireGuard: a handshake completed; IPsec: both SAs of the pair installed.
    else if (p.state !== "established")
      waiting.push(`${name}→${other.name}: ${p.keyId === null ? "no handshake" : "SAs not installed"}`);
  }
}

/**
 * `podcrypt cluster up`: builds the namespaces, starts the real controller and agents (which start
 * the data planes), and returns once the cluster is encrypted (or plaintext with `--disabled`).
 * Everything it creates is recorded first, so `down` can remove it even if `up` crashes midway.
 */
export async function clusterUp(
  config: ClusterConfig,
  openStore: (url: string) => Promise<Datastore>,
  progress: Progress,
  timeoutMs = 90_000,
  /** `prometheus`: also run a Prometheus that scrapes every daemon (src/localcluster/prometheus.ts). */
  extras: { prometheus?: boolean } = {},
): Promise<ClusterState> {
  const home = clusterHome();
  const existing = readClusterState(home);
  if (existing !== undefined) {
    throw new PodcryptError(
      "ECLUSTEREXISTS",
      `a local cluster is already running (${existing.plan.nodes.length} nodes, since ${existing.createdAt}); nothing changed: \`podcrypt status\` shows it, \`podcrypt cluster down\` removes it`,
    );
  }
  const leftovers = (await listNetns()).filter((n) => n.startsWith(NETNS_PREFIX));
  if (leftovers.length > 0) {
    throw new PodcryptError(
      "ECLUSTEREXISTS",
      `namespaces of an earlier cluster remain (${leftovers.slice(0, 3).join(", ")}...): run \`podcrypt cluster down\` first`,
    );
  }
  const started = Date.now();
  const plan = planCluster(config);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const url = datastoreUrl(config, home);
  const roles =
    config.datastores === undefined
      ? undefined
      : { controller: config.datastores.controller ?? url, agent: config.datastores.agent ?? url };
  // A datastore on the host's loopback is relayed into the node namespaces (src/localcluster/relay.ts).
  const relay = await datastoreRelay(
    agentDatastore(roles?.agent ?? config.datastore, plan.nodes[0]?.name ?? ""),
  );
  const state: ClusterState = {
    version: 1,
    createdAt: new Date().toISOString(),
    plan,
    datastore: url,
    ...(roles === undefined ? {} : { datastores: roles }),
    processes: [],
  };
  writeClusterState(state, home);
  // The supervisor watches cluster.json: what is added below is kept running from then on.
  const add = (p: ClusterState["processes"][number]): void => {
    state.processes.push(p);
    writeClusterState(state, home);
  };
  add(startSupervisor(home));

  progress(`creating ${plan.nodes.length} nodes and ${plan.pods.length} pods (network namespaces)`);
  await createTopology(plan);

  const store = await openStore(url);
  try {
    const clusters = store.collection("clusterencryptions");
    if ((await clusters.get(CLUSTER_ENCRYPTION_NAME)) === undefined) {
      await clusters.create({
        name: CLUSTER_ENCRYPTION_NAME,
        enabled: config.enabled,
        mode: config.mode,
        encryption: config.encryption,
        ...(config.hostEncryption === true ? { hostEncryption: true } : {}),
        ...(config.strictHost === true ? { strictHost: true } : {}),
      });
    }
    await publishServices(store, plan);
    await registerKubernetesNodes(store, plan.nodes);
  } finally {
    await store.close();
  }

  if (relay !== undefined) {
    progress(`relaying the datastore at ${relay.host}:${relay.port} into the node namespaces`);
    await startRelayDaemon(home, relay, "relay", plan.nodes, add);
  }

  progress("starting controllers (a leader and a standby) and agents");
  const { controller: controllerUrl, agent: agentUrl } = roleDatastores(state);
  // Two replicas, as the manifests' Deployment runs them: the lease elects one, the other waits.
  const metricsPorts: Array<{ name: string; port: number }> = [];
  for (const [name, identity] of CONTROLLERS) {
    // The host's port 9808 stays free (another controller may start beside this one); a port of
    // its own when Prometheus scrapes it.
    const port = extras.prometheus === true ? await freeLoopbackPort() : 0;
    if (port !== 0) metricsPorts.push({ name, port });
    add(
      startDaemon(home, "controller", name, [
        "controller",
        "--datastore",
        controllerUrl,
        "--identity",
        identity,
        "--health-address",
        `127.0.0.1:${port}`,
        ...(config.phaseTimeoutSeconds === undefined
          ? []
          : ["--phase-timeout", String(config.phaseTimeoutSeconds)]),
      ]),
    );
  }
  for (const n of plan.nodes) add(startAgent(home, agentUrl, n));
  for (const p of plan.pods) add(startPod(home, p));

  progress(
    config.enabled
      ? "waiting until every pair of nodes is encrypted"
      : "waiting until every node reports (encryption disabled)",
  );
  await waitSettled(state, openStore, progress, started + timeoutMs);
  if (extras.prometheus === true) {
    progress(`starting Prometheus at ${PROMETHEUS_ADDRESS} in namespace ${PROMETHEUS_NETNS}`);
    await startPrometheus(home, plan.nodes, metricsPorts, add);
  }
  progress(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return state;
}

/**
 * Creates or updates the services of `plan` and their endpoints, as Kubernetes' endpoints
 * controller would publish them: the pods each service selects, each with every address it has
 * (dual-stack pods one of each family, as a dual-stack Service's EndpointSlices list them), so
 * selective encryption selects a service's IPv6 traffic as well as its IPv4 traffic.
 */
export async function publishServices(store: Datastore, plan: ClusterPlan): Promise<void> {
  for (const s of plan.services) {
    await store
      .collection("services")
      .create({ name: s.name, namespace: s.namespace, selector: s.selector, ports: s.ports })
      .catch(() => undefined);
    const endpoints = {
      name: s.name,
      namespace: s.namespace,
      addresses: servicePods(plan, s).flatMap((p) => p.ips.map((ip) => ({ ip, pod: p.name, node: p.node }))),
    };
    const col = store.collection("endpoints");
    const cur = await col.get(`${s.namespace}/${s.name}`);
    if (cur === undefined) await col.create(endpoints);
    else if (JSON.stringify(cur.value.addresses) !== JSON.stringify(endpoints.addresses))
      await col.update(endpoints, { revision: cur.revision });
  }
}

/**
 * The datastore URL of node `node`'s agent: `{node}` in the role's URL is the node's name, so each
 * agent can have a kubeconfig of its own (on Kubernetes a DaemonSet pod's token is bound to its
 * node, and the admission policy lets it write only that node's record; on etcd each agent logs in
 * as its own user, `user=podcrypt-node-{node}&password-file=DIR/podcrypt-node-{node}.password`).
 * The URL-encoded form (`%7Bnode%7D`, as URLSearchParams writes it) is replaced too.
 */
export function agentDatastore(url: string, node: string): string {
  return url.replace(/\{node\}|%7Bnode%7D/gi, node);
}

/**
 * Starts the agent of node `n` inside its namespace. On the kubernetes datastore it runs as in a
 * DaemonSet: $NODE_NAME only, its underlay address and pod CIDR read from its Node object.
 */
export function startAgent(home: string, url: string, n: PlannedNode): ClusterProcess {
  const kubernetes = url === "kubernetes" || url.startsWith("kubernetes:");
  const identity = kubernetes
    ? []
    : ["--node", n.name, "--underlay-ip", ...n.underlayIPs, "--pod-cidr", ...n.podCIDRs];
  return startDaemon(
    home,
    "agent",
    `agent-${n.name}`,
    [
      "agent",
      ...identity,
      "--datastore",
      agentDatastore(url, n.name),
      "--state-dir",
      join(home, "nodes", n.name),
      "--cluster-cidr",
      CLUSTER_POD_CIDR,
      ...(n.podCIDRs.some((c) => c.includes(":")) ? [CLUSTER_POD_CIDR_V6] : []),
      "--if-prefix",
      nodeIfPrefix(n.index),
      "--dataplane",
      n.dataplane,
    ],
    n.netns,
    kubernetes ? { NODE_NAME: n.name } : {},
  );
}

/** Starts pod `p`'s echo service (the verify port and the ports of the services selecting it). */
export function startPod(home: string, p: PlannedPod): ClusterProcess {
  return startDaemon(
    home,
    "echo",
    `pod-${p.namespace}-${p.name}`,
    ["debug", "echo", "--ports", [`tcp/${VERIFY_PORT}`, `udp/${VERIFY_PORT}`, ...p.ports].join(",")],
    p.netns,
  );
}

/** Starts a datastore relay into the namespaces of `nodes` and waits until it listens. */
export async function startRelayDaemon(
  home: string,
  relay: RelayTarget,
  name: string,
  nodes: readonly PlannedNode[],
  add: (p: ClusterProcess) => void,
): Promise<void> {
  const p = startDaemon(home, "relay", name, [
    "debug",
    "relay",
    "--to",
    relay.host.includes(":") ? `[${relay.host}]:${relay.port}` : `${relay.host}:${relay.port}`,
    "--netns",
    nodes.map((n) => n.netns).join(","),
  ]);
  add(p);
  await waitForLog(p, "relaying", 20_000);
}

/**
 * Waits until the cluster is settled ({@link isSettled}), printing what it waits for; fails when
 * a daemon exits or `deadline` (ms since the epoch) passes.
 */
export async function waitSettled(
  state: ClusterState,
  openStore: (url: string) => Promise<Datastore>,
  progress: Progress,
  deadline: number,
): Promise<void> {
  let last = "";
  let firsts: string[] = [];
  for (;;) {
    // cluster.json with the supervisor's record: the instance of each process that runs now.
    const current = readClusterState(clusterHome()) ?? state;
    const dead = current.processes.filter((p) => p.role !== "echo" && !alive(p.pid));
    if (dead.length > 0) {
      throw new PodcryptError(
        "EUP",
        `${dead.map((d) => d.name).join(", ")} exited; see ${dead[0]!.log} (then \`podcrypt cluster down\`)`,
      );
    }
    const asked = Date.now();
    const status = await collectStatus(state, openStore).catch(() => undefined);
    // Looking costs the agents something too (the store's lock, the kernel reads): on a slow
    // machine, look no more often than a look takes.
    const pause = Math.max(250, Date.now() - asked);
    if (status !== undefined) {
      const s = isSettled(status, state.plan);
      if (s.ok) return;
      firsts = s.firstPerNode;
      const line = `  ${s.waiting.length} pending: ${s.waiting.slice(0, 3).join("; ")}${s.waiting.length > 3 ? "; ..." : ""}`;
      if (line !== last) progress(line);
      last = line;
    }
    if (Date.now() > deadline) {
      throw new PodcryptError(
        "EUP",
        `the cluster did not settle in time: ${firsts.join("; ") || "no status could be read"}; logs in ${join(clusterHome(), "logs")}`,
      );
    }
    await sleep(pause);
  }
}

/** `podcrypt cluster down`: stops every process and removes every namespace and file `up` made. */
export async function clusterDown(): Promise<{ processes: number; namespaces: number; hadState: boolean }> {
  const home = clusterHome();
  let state: ClusterState | undefined;
  try {
    state = readClusterState(home);
  } catch {
    state = undefined;
  }
  // The supervisor first, so nothing is restarted while the rest stops; then every process by the
  // pid running now, and any other the supervisor ever recorded.
  const supervisors = [
    ...(state?.processes.filter((p) => p.role === "supervisor").map((p) => p.pid) ?? []),
    readSupervisorRecord(home)?.pid,
  ].filter((p): p is number => p !== undefined);
  await stopProcesses(supervisors.filter(alive));
  try {
    state = readClusterState(home) ?? state;
  } catch {
    // keep what was read
  }
  const recorded = Object.values(readSupervisorRecord(home)?.processes ?? {}).map((r) => r.pid);
  const pids = [...new Set([...(state?.processes.map((p) => p.pid) ?? []), ...recorded, ...supervisors])];
  await stopProcesses(pids.filter(alive));
  const namespaces = await destroyTopology();
  // Daemons killed with their namespaces leave their control sockets behind (the directories are shared).
  for (const n of state?.plan.nodes ?? []) {
    for (const sock of [
      espSocketPath(nodeEspIfname(n.index)),
      uapiSocketPath(nodeWgIfname(n.index, 0)),
      uapiSocketPath(nodeWgIfname(n.index, 1)),
    ])
      rmSync(sock, { force: true });
  }
  const hadState = state !== undefined || (existsSync(home) && readdirSync(home).length > 0);
  removeClusterHome(home);
  return { processes: pids.length, namespaces: namespaces.length, hadState };
}
