/**
 * The agent's decisions as pure functions (the way src/controller/phases.ts's `decide` is the
 * controller's): given what the agent has seen, what to write, what to reconcile and when to look
 * again. The Agent (agent.ts) gathers the inputs, performs the I/O these ask for and arms the
 * timers, on its Clock. In the order a pass meets them:
 *   1. a watch event: {@link wakeFor} says how soon a pass must follow (at once, after the
 *      coalescing delay {@link coalesceDelay}, within {@link KEY_BATCH_MS}, or not at all);
 *   2. the pass's keys: {@link planKeys} says whether this node's public keys are written before
 *      the reconcile, with the acknowledgement, or not at all;
 *   3. what to reconcile: {@link needsSessions} says whether the data plane's sessions are read
 *      (a WireGuard takeover) for the desired state (desired.ts);
 *   4. after the reconcile: {@link decideAfterReconcile} says which acknowledgement to write, which
 *      peers' keys are still awaited and whether to look again in {@link RECHECK_MS};
 *   5. a failed pass is tried again {@link RETRY_AFTER_FAILURE_MS} later.
 */
import { applied } from "../protocol/index.js";
import { findAcknowledgement, type ClusterEncryption, type Node, type Phase } from "../model/index.js";
import { catchUpAcknowledgement, epochsNeeded, readyToAcknowledge, unswitched } from "./desired.js";
import type { DesiredNodeState } from "../dataplane/types.js";

/** How soon a pass waiting for something the data plane does by itself (a handshake) looks again. */
export const RECHECK_MS = 250;

/**
 * In prepare, how long a peer's new key may wait for the others before a pass installs it. The
 * node acknowledges only once it holds every live peer's key, and the key that completes the set
 * starts a pass at once; the keys before it (hundreds, on 500 nodes, each a Node event) are
 * installed in passes at most this far apart instead of one pass per burst.
 */
export const KEY_BATCH_MS = 5000;

/**
 * How long a watch event waits for the ones behind it before a pass runs. Every node writes its
 * acknowledgement within moments of the others: one pass for the burst, not one per node (on 500
 * nodes, hundreds of passes over 500 peers each). A pass that took long (many peers, a busy
 * machine) makes the next wait up to twice as long as it took, at most {@link MAX_COALESCE_MS}:
 * the agent then spends at most about a third of its time in passes, however fast events come.
 */
export const COALESCE_MS = 20;
export const MAX_COALESCE_MS = 1000;

/** The periodic full pass (resync): this long after the last pass at least. */
export const RESYNC_MS = 10_000;
/** And at least this many times as long as the last pass took (see {@link resyncDelay}). */
export const RESYNC_SPAN = 10;
/** And at most this long after it, whatever a pass took. */
export const MAX_RESYNC_MS = 300_000;

/**
 * How long after a pass the periodic resync runs: `least` while a phase is under way (`inPhase`:
 * the controller waits at most its phase timeout for this node, and a pass that no event started
 * must not come later than that), else `least` or {@link RESYNC_SPAN} times as long as the last
 * pass took, at most {@link MAX_RESYNC_MS}. Between phases resyncs then take at most about a tenth
 * of the agent's time: a node whose passes are slow (many peers, a starved or emulated machine)
 * does not spend it repairing what nobody changed. A pass of 50 ms keeps the 10 s; one of 15 s
 * waits 150 s.
 */
export function resyncDelay(least: number, lastPassMs: number, inPhase: boolean): number {
  if (inPhase) return least;
  return Math.max(least, Math.min(MAX_RESYNC_MS, RESYNC_SPAN * lastPassMs));
}

/** How long after a failed pass the next one runs (a full resync). */
export const RETRY_AFTER_FAILURE_MS = 1000;

/** The coalescing delay of a watch event: `least`, or twice the last pass's duration, capped. */
export function coalesceDelay(least: number, lastPassMs: number): number {
  return Math.min(MAX_COALESCE_MS, Math.max(least, 2 * lastPassMs));
}

/** The parts of a Node every pass reads besides its keys, as a string, serialised once per version. */
const shapeKeys = new WeakMap<Node, string>();
function shapeKey(n: Node): string {
  let k = shapeKeys.get(n);
  if (k === undefined) {
    k = JSON.stringify([n.underlay, n.podCIDRs, n.status?.selection, n.saInstance]);
    shapeKeys.set(n, k);
  }
  return k;
}

/**
 * Whether a node starting or ceasing to be live needs a pass of this node (`self`): a pass reads
 * the peers' liveness only for which peers a phase waits for (keys, acknowledgements), for its
 * own catch-up while the controller lists it as lagging, and with selective encryption (whether
 * every live node installed the selector set). Outside those a pass would install what it
 * installed (desired state does not depend on liveness): on 1000 nodes whose leases ran late, a
 * pass at every agent for every lease that went or came fed the delays that made more of them go.
 * The liveness is kept current regardless: the pass a phase's start runs reads it as it is then.
 */
export function livenessWakes(c: ClusterEncryption | undefined, self: string): boolean {
  if (c === undefined) return false;
  return (
    c.phase !== "idle" ||
    c.target !== undefined ||
    c.encryption === "selective" ||
    c.lagging.some((l) => l.node === self)
  );
}

/** How soon a Node change needs a pass: at once, after the coalescing delay, within KEY_BATCH_MS, never. */
export type Wake = "urgent" | "now" | "batch" | "none";

/** What {@link wakeFor} reads besides the change. */
export interface WakeView {
  /** This node's name. */
  self: string;
  cluster: ClusterEncryption | undefined;
  /** In prepare: the live peers whose key for the target epoch the last pass did not have. */
  awaitingKeys: ReadonlySet<string>;
}

/**
 * How soon a change of a Node from `a` to `b` needs a pass; `keyArrived` names the awaited peer
 * whose key this change brings (the caller stops awaiting it). Heartbeats, MTU and errors never
 * need one (liveness is looked at again by the periodic resync), nor this node's own writes coming
 * back, nor keys of epochs no generation uses (the old one, pruned after retire). Other nodes'
 * acknowledgements matter only to the switch phase, which waits for the peers that acknowledged
 * prepare: written in prepare or retire (on 500 nodes, each a Node event at every agent) they
 * need no pass, the map holds them for the pass the switch itself starts. A new key in prepare
 * is batched ({@link KEY_BATCH_MS}) unless it is the last one awaited. A peer's new SA instance
 * runs a pass at once ("urgent"): its pairs with this node are down until then.
 */
export function wakeFor(
  a: Node | undefined,
  b: Node | undefined,
  view: WakeView,
): { wake: Wake; keyArrived?: string } {
  // A peer's new SA instance (its ESP daemon was replaced) means its traffic to and from this
  // node is dropped until this node installs the new SAs: no coalescing delay for it.
  if (
    a !== undefined &&
    b !== undefined &&
    b.name !== view.self &&
    a.saInstance !== b.saInstance &&
    b.saInstance !== undefined
  )
    return { wake: "urgent" };
  if (a === undefined || b === undefined || shapeKey(a) !== shapeKey(b)) return { wake: "now" };
  const c = view.cluster;
  if (b.name === view.self || c === undefined) return { wake: "none" };
  const target = c.target;
  for (const e of epochsNeeded(c)) {
    const k = String(e);
    if (a.publicKeys[k] === b.publicKeys[k]) continue;
    if (c.phase === "prepare" && e === target?.epoch && a.publicKeys[k] === undefined) {
      if (view.awaitingKeys.has(b.name))
        return { wake: view.awaitingKeys.size === 1 ? "now" : "batch", keyArrived: b.name };
      // Not awaited: before this node's first pass of the phase (which is on its way, and then
      // finds the key), or from a peer that was not live at the last one (its liveness coming
      // back starts a pass). At "now", the keys that arrived before an agent's first pass of the
      // phase ran a pass every coalescing delay (at 500 agents, 300 such wakes per agent and
      // rotation; now 1).
      return { wake: "batch" };
    }
    return { wake: "now" };
  }
  if (c.phase !== "switch" || target === undefined) return { wake: "none" };
  const prepared = (n: Node) => findAcknowledgement(n, target.epoch, "prepare") !== undefined;
  return { wake: prepared(a) === prepared(b) ? "none" : "now" };
}

/**
 * The peers a pass found without their key for `epoch`, less those whose key arrived while the
 * pass ran (`nodes`: the watch's view now). Their events came while the agent still awaited the
 * previous pass's set, so they did not count as arrivals: kept, they would never be crossed off,
 * the last key would not be recognised as the last, and the acknowledgement would wait for the
 * {@link KEY_BATCH_MS} batch (on hundreds of nodes, whose passes take long, every rotation).
 * `complete`: keys arrived meanwhile and none is awaited now, so a pass (which acknowledges) is due.
 */
export function stillAwaited(
  awaiting: ReadonlySet<string>,
  epoch: number,
  nodes: ReadonlyMap<string, Node>,
): { awaiting: Set<string>; complete: boolean } {
  const key = String(epoch);
  const left = new Set([...awaiting].filter((n) => nodes.get(n)?.publicKeys[key] === undefined));
  return { awaiting: left, complete: left.size === 0 && awaiting.size > 0 };
}

/** When a pass writes this node's public keys (see {@link planKeys}). */
export interface KeyPlan {
  /**
   * "now": before the reconcile (a key is new or differs); "with-acknowledgement": only keys to
   * prune, written with this pass's acknowledgement or at its end; "none": as published.
   */
  write: "now" | "with-acknowledgement" | "none";
  /** Epochs whose key differs from the one this node published (its key file was lost or replaced). */
  replaced: number[];
}

/**
 * When to publish `publicKeys` (the keys of the `needed` epochs, made if missing) given this node
 * as the watch shows it. A new key is announced at once; a retired one goes with the pass's
 * acknowledgement, or at its end: one write instead of two (on 500 nodes, each is an event at
 * every agent).
 */
export function planKeys(
  self: Node | undefined,
  needed: readonly number[],
  publicKeys: Record<string, string>,
): KeyPlan {
  const replaced = needed.filter((e) => {
    const published = self?.publicKeys[String(e)];
    return published !== undefined && published !== publicKeys[String(e)];
  });
  if (self === undefined || needed.some((e) => self.publicKeys[String(e)] !== publicKeys[String(e)]))
    return { write: "now", replaced };
  const prune = JSON.stringify(self.publicKeys) !== JSON.stringify(publicKeys);
  return { write: prune ? "with-acknowledgement" : "none", replaced };
}

/**
 * Whether the desired state needs the data plane's sessions: only while a WireGuard generation
 * takes peers over from an older one, in a run's switch or as pairs with a lagging node move to
 * the current epoch.
 */
export function needsSessions(c: ClusterEncryption): boolean {
  return (
    (c.phase === "switch" && c.target?.enabled === true && c.target.mode === "wireguard") ||
    (c.phase === "idle" && applied(c).mode === "wireguard" && c.lagging.some((l) => l.switchAt !== undefined))
  );
}

/** What {@link decideAfterReconcile} reads. */
export interface AfterReconcile {
  cluster: ClusterEncryption;
  /** This node's name. */
  self: string;
  /** This node as the watch shows it (its acknowledgements so far). */
  me: Node | undefined;
  /** The live peers, their claims vetted. */
  live: readonly Node[];
  /** The state just reconciled. */
  desired: DesiredNodeState;
  /** Whether the pass read sessions ({@link needsSessions}). */
  takeover: boolean;
}

/** What to do once the data plane holds the desired state. */
export interface AfterReconcileDecision {
  /**
   * The acknowledgement to write (none: nothing to acknowledge yet, or written already). With
   * `notBefore` (a lagging node's switch: its switch time) it is written with that time at the
   * earliest, and replaces one of the same epoch and phase written before it.
   */
  acknowledge?: { epoch: number; phase: Phase; notBefore?: string };
  /** In a run: the live peers whose key for the target epoch is still missing (undefined: unchanged). */
  awaitingKeys?: Set<string>;
  /** Look again this soon: a session or a lagging node's switch comes up by itself (handshakes). */
  recheckInMs?: number;
}

/**
 * The acknowledgement a pass writes and when it looks again. In a run, prepare waits for every
 * live peer's key, switch for the sessions of the peers that prepared (readyToAcknowledge); a node
 * that missed a rotation (its agent was down) catches up with the current epoch when idle.
 */
export function decideAfterReconcile(i: AfterReconcile): AfterReconcileDecision {
  const { cluster: c, me, live, desired } = i;
  const out: AfterReconcileDecision = {};
  if (c.phase !== "idle" && c.target !== undefined) {
    const target = c.target;
    const key = String(target.epoch);
    out.awaitingKeys = new Set(
      c.phase === "prepare" && target.enabled
        ? live.filter((n) => n.publicKeys[key] === undefined).map((n) => n.name)
        : [],
    );
    const acked = me !== undefined && findAcknowledgement(me, target.epoch, c.phase) !== undefined;
    const prepared = live.filter((n) => findAcknowledgement(n, target.epoch, "prepare") !== undefined);
    if (
      !acked &&
      readyToAcknowledge(
        desired,
        c,
        live.map((n) => n.name),
        prepared,
      )
    )
      out.acknowledge = { epoch: target.epoch, phase: c.phase };
    // Sessions come up by themselves only with peers that prepared (their end of the generation
    // exists): for a live peer that never did (the controller timed it out) every node would look
    // again every RECHECK_MS for the rest of the phase, on a cluster already slow enough to time
    // nodes out. Its acknowledgement, should it come, is a Node event that wakes a pass (wakeFor).
    const gen = desired.generations.find((g) => g.epoch === target.epoch);
    if (i.takeover && gen !== undefined && unswitched(desired, gen, prepared).length > 0)
      out.recheckInMs = RECHECK_MS;
  }
  const lag = c.lagging.find((l) => l.node === i.self);
  if (lag !== undefined && c.phase === "idle") {
    const phase = catchUpAcknowledgement(desired, c, i.self, live);
    // The controller counts a lagging node's switch only from its switch time on: the pairs with it
    // switch then. A switch this node acknowledged before (in the run, too late: the controller had
    // moved on without it and left it lagging) is acknowledged again, or the node stayed lagging,
    // and every peer kept the old generation for it, until its lag expired (maxNodeLag, an hour by
    // default; 174 of 1000 simulated nodes on 2026-12-07). The time is the switch time at the
    // earliest: this node saw it before switching, whatever its clock says.
    const notBefore = phase === "switch" ? lag.switchAt : undefined;
    if (
      phase !== undefined &&
      (me === undefined || findAcknowledgement(me, c.epoch, phase, notBefore) === undefined)
    )
      out.acknowledge = { epoch: c.epoch, phase, ...(notBefore === undefined ? {} : { notBefore }) };
    else if (phase === undefined && lag.switchAt !== undefined) out.recheckInMs = RECHECK_MS;
  }
  return out;
}
