import { existsSync } from "node:fs";
import { CONTROLLER_ELECTION } from "../controller/controller.js";
import { applied, isLive, liveFromHeartbeats, type Liveness } from "../protocol/index.js";
import type { RefusedClaim } from "../agent/claims.js";
import type { Datastore } from "../datastore/types.js";
import { espGet, espSocketPath, type EspStatus } from "../dataplane/esp-userspace/control.js";
import { uapiGet, uapiSocketPath } from "../dataplane/wireguard-userspace/uapi-client.js";
import { keyIdForEpoch } from "../keys/derive.js";
import { CLUSTER_ENCRYPTION_NAME, type Node } from "../model/index.js";
import { kernelWireguardRows, kernelXfrmRows } from "./kernel-status.js";
import { nodeEspIfname, nodeWgIfname } from "./plan.js";
import { alive } from "./processes.js";
import { wireguardPeerRow, type PeerStatus } from "./peer-status.js";
import type { ClusterState } from "./state.js";

export interface NodeStatus {
  name: string;
  backend: string;
  live: boolean;
  heartbeat?: string;
  epochs: number[];
  acknowledged?: string;
  errors: string[];
  /**
   * The agent's reconcile failure going on, or the last one with `clearedAt` (src/agent/failures.ts):
   * the error, its causes outermost first (a failed command with its command line, exit code and
   * stderr), since when, how many passes failed so.
   */
  reconcileError?: NonNullable<Node["status"]>["reconcileError"];
  /** Selective encryption: hash of the selector set the node has installed (equal on every node once a policy change is in force). */
  selection?: string;
  /**
   * Restarts of the node's components: the agent by the cluster's supervisor, the data-plane
   * daemons by the agent (from the node's status record); the last of each (ISO 8601).
   */
  restarts: { agent: number; lastAgent?: string; dataplane: number; lastDataplane?: string };
  /**
   * The leak detector: packets the node's strict rules dropped since its agent started, per peer
   * (non-zero only): `out` would have left for the peer in plaintext, `in` arrived from it in
   * plaintext although it should have been encrypted. `peer` "" is an address no node owns.
   */
  plaintextDrops?: Array<{ peer: string; direction: "out" | "in"; packets: number }>;
  /**
   * Host encryption as the node's agent installed it last (Node `status.hostEncryption`):
   * `applied` when it routes host traffic through its tunnels, how many host routes, to which
   * peers. Absent before the agent's first pass.
   */
  hostEncryption?: { applied: boolean; routes: number; peers: string[] };
  peers: PeerStatus[];
}

/** One controller replica of the local cluster. */
export interface ControllerStatus {
  name: string;
  /** Its identity in the leader election. */
  identity: string;
  pid: number;
  running: boolean;
  /** It holds the controller lease. */
  leader: boolean;
  restarts: number;
  lastRestart?: string;
}

export interface ClusterStatus {
  enabled: boolean;
  mode: string;
  /** `all` inter-node pod traffic, or `selective` (only what policies select). */
  encryption: "all" | "selective";
  /**
   * Node-to-node encryption (docs/design.md#host-encryption) as the cluster asks for it; whether
   * each node applies it is in its `hostEncryption`.
   */
  hostEncryption: boolean;
  phase: string;
  epoch: number;
  target?: { epoch: number; enabled: boolean; mode: string };
  desired: { enabled: boolean; mode: string };
  timeouts: Array<{ node: string; epoch: number; phase: string }>;
  /**
   * Nodes that missed a rotation (agent down): the others keep `epoch` for them until they catch
   * up or `until`; `switchAt` once they are catching up. Runs wait meanwhile.
   */
  lagging: Array<{ node: string; epoch: number; since: string; until: string; switchAt?: string }>;
  /**
   * Claims of node records that agents refuse and do not apply (src/agent/claims.ts): pod CIDRs
   * or addresses outside what Kubernetes assigned the node, pod CIDRs overlapping another node's.
   * As the live agents report them (their node's status record), each with the nodes whose agent
   * refuses it (`by`): what the data planes actually do, not a judgement made here.
   */
  refusedClaims: ReportedRefusal[];
  nodes: NodeStatus[];
  /** The local cluster's controllers (a leader and a standby) and its supervisor. */
  controllers: ControllerStatus[];
  supervisor?: { pid: number; running: boolean };
}

/** A refused claim and the nodes whose agents report refusing it. */
export type ReportedRefusal = RefusedClaim & { by: string[] };

/**
 * The claims the live agents report refusing (their node's `status.refusedClaims`), merged: one
 * entry per claim and reason, with every reporting node in `by`; in node, field and value order.
 * A node that does not report (agent down) is left out: its last report may be stale.
 */
export function reportedRefusals(nodes: readonly Node[], live: Liveness): ReportedRefusal[] {
  const merged = new Map<string, ReportedRefusal>();
  for (const n of nodes) {
    if (!isLive(n, live)) continue;
    for (const r of n.status?.refusedClaims ?? []) {
      const k = JSON.stringify([r.node, r.field, r.value, r.reason, r.with ?? ""]);
      const m = merged.get(k);
      if (m === undefined) merged.set(k, { ...r, by: [n.name] });
      else if (!m.by.includes(n.name)) m.by.push(n.name);
    }
  }
  const order = (r: ReportedRefusal): string =>
    `${r.node}\0${r.field}\0${r.value}\0${r.reason}\0${r.with ?? ""}`;
  return [...merged.values()]
    .map((r) => ({ ...r, by: r.by.sort() }))
    .sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
}

/**
 * One row per peer and key ID of an ESP daemon: the inbound and outbound SA of that key ID, with
 * bytes and packets each way. The epoch is the newest of the node's key epochs with that key ID.
 */
export function espPeerRows(s: EspStatus, epochs: number[]): PeerStatus[] {
  const rows = new Map<string, PeerStatus>();
  for (const sa of s.sas) {
    const k = `${sa.peer}|${sa.keyId}`;
    let row = rows.get(k);
    if (row === undefined) {
      const endpoint = s.peers.find((p) => p.name === sa.peer)?.endpoint;
      const epoch = epochs.filter((e) => keyIdForEpoch(e) === sa.keyId).sort((a, b) => b - a)[0];
      row = {
        node: sa.peer,
        state: "connecting",
        keyId: sa.keyId,
        txBytes: 0,
        rxBytes: 0,
        txPackets: 0,
        rxPackets: 0,
        epoch: epoch ?? -1,
        ifname: s.ifname,
        ...(endpoint === undefined ? {} : { endpoint: `${endpoint.address}:${endpoint.port}` }),
        ageS: sa.ageS,
        active: false,
      };
      rows.set(k, row);
    }
    row.ageS = Math.max(row.ageS ?? 0, sa.ageS);
    if (sa.direction === "out") {
      row.spiOut = sa.spi;
      row.txBytes += sa.bytes;
      row.txPackets = (row.txPackets ?? 0) + sa.packets;
      row.active = sa.active === true;
    } else {
      row.spiIn = sa.spi;
      row.rxBytes += sa.bytes;
      row.rxPackets = (row.rxPackets ?? 0) + sa.packets;
    }
    // Both SAs of the pair installed: the peer is reachable the ipsec way.
    if (row.spiIn !== undefined && row.spiOut !== undefined) row.state = "established";
  }
  return [...rows.values()];
}

/** Reads the cluster's state from the datastore and each node's data plane counters. */
export async function collectStatus(
  state: ClusterState,
  openStore: (url: string) => Promise<Datastore>,
  /** Bounds the datastore reads, e.g. with a timeout. Default: unbounded. */
  guard: <T>(reads: Promise<T>) => Promise<T> = (reads) => reads,
): Promise<ClusterStatus> {
  const { nodes, cluster, leader, heartbeats } = await guard(
    (async () => {
      const store = await openStore(state.datastore);
      try {
        const cluster = (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))?.value;
        const nodes: Node[] = (await store.collection("nodes").list()).items.map((i) => i.value);
        const leader = await store.leader(CONTROLLER_ELECTION);
        const heartbeats = await store.heartbeats();
        return { nodes, cluster, leader, heartbeats };
      } finally {
        await store.close();
      }
    })(),
  );
  const now = Date.now();
  const a = cluster === undefined ? { enabled: false, mode: "wireguard" as const } : applied(cluster);
  const out: ClusterStatus = {
    enabled: a.enabled,
    mode: a.mode,
    encryption: cluster?.encryption ?? "all",
    hostEncryption: cluster?.hostEncryption ?? false,
    phase: cluster?.phase ?? "idle",
    epoch: cluster?.epoch ?? 0,
    ...(cluster?.target === undefined ? {} : { target: cluster.target }),
    desired: { enabled: cluster?.enabled ?? false, mode: cluster?.mode ?? "wireguard" },
    timeouts: (cluster?.timeouts ?? []).map((t) => ({ node: t.node, epoch: t.epoch, phase: t.phase })),
    lagging: (cluster?.lagging ?? []).map((l) => ({ ...l })),
    refusedClaims: reportedRefusals(nodes, liveFromHeartbeats(heartbeats, now)),
    nodes: [],
    controllers: state.processes
      .filter((p) => p.role === "controller")
      .map((p) => {
        const i = p.argv?.indexOf("--identity") ?? -1;
        const identity = i >= 0 ? (p.argv![i + 1] ?? p.name) : p.name;
        return {
          name: p.name,
          identity,
          pid: p.pid,
          running: alive(p.pid),
          leader: leader === identity,
          restarts: p.restarts ?? 0,
          ...(p.lastRestart === undefined ? {} : { lastRestart: p.lastRestart }),
        };
      }),
  };
  const sup = state.processes.find((p) => p.role === "supervisor");
  if (sup !== undefined) out.supervisor = { pid: sup.pid, running: alive(sup.pid) };
  // Kernel data planes: read in each node's namespace (side by side: a few processes per node).
  const modes = new Set([a.mode, cluster?.target?.mode]);
  const kernel = await Promise.all(
    state.plan.nodes.map(async (pn) => {
      const n = nodes.find((x) => x.name === pn.name);
      const rows: PeerStatus[] = [];
      const errors: string[] = [];
      // A node that runs a kernel data plane may hold both kinds during a mode switch.
      if (n === undefined || (n.backend !== "wireguard-kernel" && n.backend !== "xfrm"))
        return { rows, errors };
      const read = async (what: string, f: () => Promise<PeerStatus[]>): Promise<void> => {
        try {
          rows.push(...(await f()));
        } catch (e) {
          errors.push(`status: reading ${what} failed: ${(e as Error).message}`.slice(0, 1000));
        }
      };
      if (n.capabilities.wireguardKernel && modes.has("wireguard"))
        await read("kernel WireGuard", () => kernelWireguardRows(pn, nodes));
      if (n.capabilities.xfrmKernel && modes.has("ipsec"))
        await read("kernel XFRM", () => kernelXfrmRows(pn, state.plan.nodes, n));
      return { rows, errors };
    }),
  );
  for (const [i, pn] of state.plan.nodes.entries()) {
    const n = nodes.find((x) => x.name === pn.name);
    const peers: PeerStatus[] = [...kernel[i]!.rows];
    for (const slot of [0, 1]) {
      const ifname = nodeWgIfname(pn.index, slot);
      if (!existsSync(uapiSocketPath(ifname))) continue;
      const dev = await uapiGet(ifname).catch(() => undefined);
      for (const p of dev?.peers ?? [])
        peers.push(wireguardPeerRow(nodes, ifname, { ...p, latestHandshakeMs: p.lastHandshake }));
    }
    const esp = espSocketPath(nodeEspIfname(pn.index));
    if (existsSync(esp)) {
      const st = await espGet(esp).catch(() => undefined);
      if (st !== undefined) peers.push(...espPeerRows(st, Object.keys(n?.publicKeys ?? {}).map(Number)));
    }
    if (!a.enabled && peers.length === 0) {
      for (const other of state.plan.nodes.filter((o) => o.name !== pn.name)) {
        peers.push({
          node: other.name,
          state: "plaintext",
          keyId: null,
          txBytes: 0,
          rxBytes: 0,
          txPackets: null,
          rxPackets: null,
          epoch: out.epoch,
        });
      }
    }
    const last = n?.acknowledgements.at(-1);
    const agent = state.processes.find((p) => p.role === "agent" && p.netns === pn.netns);
    const daemons = n?.status?.daemonRestarts;
    out.nodes.push({
      name: pn.name,
      backend: n?.backend ?? "none",
      live: n !== undefined && isLive(n, liveFromHeartbeats(heartbeats, now)),
      ...(heartbeats.has(pn.name) ? { heartbeat: heartbeats.get(pn.name)! } : {}),
      epochs: Object.keys(n?.publicKeys ?? {}).map(Number),
      ...(last === undefined ? {} : { acknowledged: `${last.phase}@${last.epoch}` }),
      errors: [...(n?.status?.errors ?? []), ...kernel[i]!.errors],
      ...(n?.status?.reconcileError === undefined ? {} : { reconcileError: n.status.reconcileError }),
      ...(n?.status?.selection === undefined ? {} : { selection: n.status.selection }),
      restarts: {
        agent: agent?.restarts ?? 0,
        ...(agent?.lastRestart === undefined ? {} : { lastAgent: agent.lastRestart }),
        dataplane: daemons?.count ?? 0,
        ...(daemons?.last === undefined ? {} : { lastDataplane: daemons.last }),
      },
      plaintextDrops: (n?.status?.plaintextDrops ?? []).map((d) => ({ ...d })),
      ...(n?.status?.hostEncryption === undefined
        ? {}
        : { hostEncryption: { ...n.status.hostEncryption, peers: [...n.status.hostEncryption.peers] } }),
      peers: peers.sort((x, y) => x.node.localeCompare(y.node) || x.epoch - y.epoch),
    });
  }
  return out;
}
