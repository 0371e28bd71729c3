/**
 * What the controller's status page (and `podcrypt status --watch`) shows, computed from the
 * datastore alone: the ClusterEncryption object and the node records, whose agents publish their
 * tunnels to every live peer (`status.tunnels`, src/agent/tunnels.ts), their acknowledgements of
 * rotation phases and their counters. Pure: records and the time in, the view out.
 */
import { applied, isLive, liveFromHeartbeats } from "../protocol/index.js";
import type { ClusterEncryption, Node } from "../model/index.js";

/** An underlay address family: each ordered pair has its tunnel over one of them. */
export type Family = "ipv4" | "ipv6";

/**
 * The state of one ordered pair (from, to): the tunnel `from` keeps to `to` as `from` reports it.
 * `encrypted`: up; `pending`: not up yet (no handshake, no SA pair, not reported yet);
 * `plaintext-allowed`: encryption is off, pods talk in the clear by configuration; `failing`: what
 * `from` sends is not answered, or one of the two agents stopped reporting.
 */
export type PairState = "encrypted" | "pending" | "plaintext-allowed" | "failing";

/** One ordered pair of nodes. */
export interface PairView {
  from: string;
  to: string;
  family: Family;
  state: PairState;
  /** Why it is not encrypted, in words (never key material). */
  reason?: string;
}

/** One node's row: liveness, data plane, counters. */
export interface NodeView {
  name: string;
  live: boolean;
  backend: string;
  heartbeat?: string;
  /** Epochs the node holds keys of. */
  epochs: number[];
  /** Problems of the agent's last reconcile. */
  errors: string[];
  /** When the agent last judged its tunnels. */
  tunnelsAt?: string;
  /**
   * Host encryption as the node's agent installed it last (Node `status.hostEncryption`): applied
   * or not, its host routes and the peers they tunnel to. Absent before the agent's first pass.
   */
  hostEncryption?: { applied: boolean; routes: number; peers: string[] };
  /**
   * Counters the node's record carries, by name: `daemonRestarts` (data-plane daemons the agent
   * started again) today; every numeric counter the agents add to their status is listed here.
   */
  counters: Record<string, number>;
}

/** One phase of one rotation, from the nodes' acknowledgements: first and last, and how many. */
export interface PhaseView {
  /** When the controller started it (known for the current or last run only). */
  started?: string;
  firstAck?: string;
  lastAck?: string;
  acks: number;
}

/** One rotation (or enable/disable/mode change) to `epoch`. */
export interface RotationView {
  epoch: number;
  /** Still running (the cluster's target). */
  running: boolean;
  prepare: PhaseView;
  switch: PhaseView;
  retire: PhaseView;
}

/** Everything the page shows. */
export interface StatusView {
  generatedAt: string;
  cluster: {
    enabled: boolean;
    mode: string;
    encryption: "all" | "selective";
    strict: boolean;
    /** Node-to-node encryption as the cluster asks for it (each node's `hostEncryption`: what it applies). */
    hostEncryption: boolean;
    epoch: number;
    phase: string;
    target?: { epoch: number; enabled: boolean; mode: string };
    lastCompletedAt?: string;
    /** Nodes that timed out in the current or last run, and nodes still on an older epoch. */
    timeouts: string[];
    lagging: string[];
  };
  families: Family[];
  nodes: NodeView[];
  /** Every ordered pair of distinct nodes, sorted by from, then to. */
  pairs: PairView[];
  /** Newest first, at most {@link MAX_ROTATIONS}. */
  rotations: RotationView[];
  /** Pairs by state, over all families. */
  summary: Record<PairState, number>;
}

/** How many rotations the timeline shows (agents keep their last 16 acknowledgements). */
export const MAX_ROTATIONS = 5;

const PHASES = ["prepare", "switch", "retire"] as const;

/**
 * The family `from` reports `to` in, if it does, with the state it reports. A report names the
 * peers that are not up and counts the others (src/agent/tunnels.ts): a peer named in neither is
 * up, in the family `from` reaches it over, when the report covers as many peers as `from` has
 * live ones (`livePeers`; fewer: it predates some of them, which of them it cannot tell, so
 * none counts as reported). An up peer's family: the only family that counts up peers, else the
 * one `from` reaches it over. Reports of earlier agents name the up peers too (`up`).
 */
function reported(
  from: Node,
  to: Node,
  livePeers: number,
): { family: Family; state: "up" | "pending" | "failing" } | undefined {
  const families = from.status?.tunnels?.families;
  if (families === undefined) return undefined;
  let judged = 0;
  let named = true;
  for (const f of families) {
    if (f.up?.includes(to.name) === true) return { family: f.family, state: "up" };
    if (f.failing.includes(to.name)) return { family: f.family, state: "failing" };
    if (f.pending.includes(to.name)) return { family: f.family, state: "pending" };
    if (f.up === undefined) named = false;
    judged += (f.up?.length ?? f.upCount ?? 0) + f.pending.length + f.failing.length;
  }
  if (named || judged < livePeers) return undefined;
  const counted = families.filter((f) => (f.upCount ?? 0) > 0);
  return { family: counted.length === 1 ? counted[0]!.family : reachedOver(from, to), state: "up" };
}

/**
 * The family of the underlay `from`'s tunnel to `to` runs over: `from`'s own (IPv6 when it has
 * only an IPv6 address) when `to` has an address of it, else the other (src/agent/desired.ts).
 */
function reachedOver(from: Node, to: Node): Family {
  if (from.underlay.ipv4 === undefined) return to.underlay.ipv6 !== undefined ? "ipv6" : "ipv4";
  return to.underlay.ipv4 !== undefined ? "ipv4" : "ipv6";
}

function preferredFamily(n: Node): Family {
  return n.underlay.ipv4 !== undefined ? "ipv4" : "ipv6";
}

function pairView(
  from: Node,
  to: Node,
  live: (n: Node) => boolean,
  livePeers: number,
  enabled: boolean,
): PairView {
  const r = reported(from, to, livePeers);
  const base = { from: from.name, to: to.name, family: r?.family ?? preferredFamily(to) };
  if (!enabled) return { ...base, state: "plaintext-allowed", reason: "encryption is off" };
  if (!live(from)) return { ...base, state: "failing", reason: `${from.name}'s agent is not reporting` };
  if (!live(to)) return { ...base, state: "failing", reason: `${to.name}'s agent is not reporting` };
  if (r === undefined)
    return {
      ...base,
      state: "pending",
      reason:
        from.status?.tunnels === undefined
          ? `${from.name} has not reported its tunnels yet`
          : "not reported yet",
    };
  if (r.state === "up") return { ...base, state: "encrypted" };
  if (r.state === "failing")
    return { ...base, state: "failing", reason: `${from.name} sends to ${to.name} and gets no answer` };
  return { ...base, state: "pending", reason: "no handshake or SA pair yet" };
}

function rotations(c: ClusterEncryption | undefined, nodes: readonly Node[]): RotationView[] {
  const byEpoch = new Map<number, RotationView>();
  const get = (epoch: number): RotationView => {
    let r = byEpoch.get(epoch);
    if (r === undefined)
      byEpoch.set(
        epoch,
        (r = { epoch, running: false, prepare: { acks: 0 }, switch: { acks: 0 }, retire: { acks: 0 } }),
      );
    return r;
  };
  for (const n of nodes)
    for (const a of n.acknowledgements) {
      if (a.phase === "idle") continue;
      const p = get(a.epoch)[a.phase];
      p.acks++;
      if (p.firstAck === undefined || a.at < p.firstAck) p.firstAck = a.at;
      if (p.lastAck === undefined || a.at > p.lastAck) p.lastAck = a.at;
    }
  // The phases' start times belong to the run in progress, else to the last one (the current epoch).
  const runEpoch = c?.target?.epoch ?? (c?.lastCompletedAt !== undefined ? c.epoch : undefined);
  if (c !== undefined && runEpoch !== undefined) {
    const r = get(runEpoch);
    r.running = c.target !== undefined;
    for (const ph of PHASES) {
      const at = c.phaseStartedAt[ph];
      if (at !== undefined) r[ph].started = at;
    }
  }
  return [...byEpoch.values()].sort((a, b) => b.epoch - a.epoch).slice(0, MAX_ROTATIONS);
}

/** Numeric counters of a node's status record (see {@link NodeView.counters}). */
function counters(n: Node): Record<string, number> {
  const out: Record<string, number> = { daemonRestarts: n.status?.daemonRestarts?.count ?? 0 };
  for (const [k, v] of Object.entries(n.status ?? {}))
    if (typeof v === "number" && k !== "sendingEpoch" && k !== "mtu") out[k] = v;
  return out;
}

/**
 * The status view of the cluster at `now` (wall-clock ms); `heartbeats` are the last renewals of
 * the nodes' liveness records (Datastore.heartbeats).
 */
export function statusView(
  c: ClusterEncryption | undefined,
  nodeList: readonly Node[],
  heartbeats: ReadonlyMap<string, string>,
  now: number,
): StatusView {
  const nodes = [...nodeList].sort((a, b) => a.name.localeCompare(b.name));
  const liveness = liveFromHeartbeats(heartbeats, now);
  const live = (n: Node): boolean => isLive(n, liveness);
  const a = c === undefined ? { enabled: false, mode: "wireguard" } : applied(c);
  const pairs: PairView[] = [];
  const liveCount = nodes.filter(live).length;
  for (const from of nodes) {
    const livePeers = liveCount - (live(from) ? 1 : 0);
    for (const to of nodes)
      if (from.name !== to.name) pairs.push(pairView(from, to, live, livePeers, a.enabled));
  }
  const summary: Record<PairState, number> = { encrypted: 0, pending: 0, "plaintext-allowed": 0, failing: 0 };
  for (const p of pairs) summary[p.state]++;
  const families = [...new Set<Family>(pairs.map((p) => p.family))].sort();
  return {
    generatedAt: new Date(now).toISOString(),
    cluster: {
      enabled: a.enabled,
      mode: a.mode,
      encryption: c?.encryption ?? "all",
      strict: c?.strict ?? true,
      hostEncryption: c?.hostEncryption ?? false,
      epoch: c?.epoch ?? 0,
      phase: c?.phase ?? "idle",
      ...(c?.target === undefined ? {} : { target: { ...c.target } }),
      ...(c?.lastCompletedAt === undefined ? {} : { lastCompletedAt: c.lastCompletedAt }),
      timeouts: (c?.timeouts ?? []).map((t) => `${t.node} in ${t.phase}@${t.epoch}`),
      lagging: (c?.lagging ?? []).map((l) => `${l.node} on epoch ${l.epoch}`),
    },
    families: families.length === 0 ? ["ipv4"] : families,
    nodes: nodes.map((n) => ({
      name: n.name,
      live: live(n),
      backend: n.backend,
      ...(heartbeats.has(n.name) ? { heartbeat: heartbeats.get(n.name)! } : {}),
      epochs: Object.keys(n.publicKeys)
        .map(Number)
        .sort((x, y) => x - y),
      errors: [...(n.status?.errors ?? [])],
      ...(n.status?.tunnels === undefined ? {} : { tunnelsAt: n.status.tunnels.at }),
      ...(n.status?.hostEncryption === undefined
        ? {}
        : { hostEncryption: { ...n.status.hostEncryption, peers: [...n.status.hostEncryption.peers] } }),
      counters: counters(n),
    })),
    pairs,
    rotations: rotations(c, nodes),
    summary,
  };
}
