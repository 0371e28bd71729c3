import {
  findAcknowledgement,
  parseDuration,
  type ClusterEncryption,
  type LaggingNode,
  type Node,
  type Phase,
} from "../model/index.js";
import { applied, DEFAULT_TIMING, isLive, type Liveness, type PhaseTiming } from "../protocol/index.js";

/**
 * When the controller last (re)gained sight of the datastore: it became leader, or its steps
 * succeed again after failing (the datastore was unreachable). What it did not see happen tells
 * nothing about the nodes: while the datastore was down no agent could write its heartbeat or its
 * acknowledgement either, so on its return every node looks dead and every phase overdue. For
 * {@link PhaseTiming.phaseTimeoutMs} from `since` (as long as a node gets to acknowledge a phase:
 * time for every running agent's client to reconnect and report again, 1-2 s measured after a
 * 30 s etcd outage, then a phase's work) a node still counts as live when it was live at `lostAt`; and a phase's
 * timeout counts from `since` at the earliest. Without this, a datastore outage during a run made the controller skip
 * the nodes (not live, or timed out) and leave them lagging behind the run, which then "completed
 * except for the lagging nodes".
 */
export interface Sight {
  /** Wall-clock ms since which the controller's steps succeed. */
  since: number;
  /**
   * The nodes that were live at `lostAt`, as the controller last saw them. Absent for a leader
   * that never saw the nodes (a standby that takes over): then every node with a record counts as
   * live during the window. A liveness record does not outlive an outage reliably: etcd keeps
   * leases across its own restarts but counts their TTL again from there, and an agent whose
   * client reconnects later than that (etcd's clients took 6-18 s after a 30 s outage before they
   * fetched their auth token over their own channel, against a 15 s TTL) comes back with a new
   * record only after its old one expired.
   */
  liveAtLoss?: Liveness;
  /**
   * Wall-clock ms when it last saw the datastore before that: its last good step before the
   * failures; for a new leader, which cannot know, `since` minus {@link MAX_BLIND_MS}.
   */
  lostAt: number;
}

/**
 * How far back a new leader assumes it may have been blind (a datastore outage it did not see as
 * leader): nodes live within this before it leads are waited for during its first window.
 */
export const MAX_BLIND_MS = 5 * 60_000;

/** Why a run started. */
export type RunReason =
  | "enable"
  | "disable"
  | "mode-change"
  | "host-change"
  | "rotation-requested"
  | "rotation-early"
  | "rotation-scheduled";

/** The controller's decision for one look at the cluster: the new ClusterEncryption, or nothing to do. */
export interface Decision {
  next?: ClusterEncryption;
  /** Why, for the log. */
  reason?: string;
  /** Nodes newly reported as timed out. */
  timedOut?: string[];
  /** Why a wanted run waits (nodes lag), for the log and status. */
  deferred?: string;
  /** Milliseconds after which to look again even if nothing changes (timeouts, grace, schedule). */
  recheckInMs?: number;
}

function startReason(
  c: ClusterEncryption,
  nodes: readonly Node[],
  live: Liveness,
  now: number,
): RunReason | undefined {
  const a = applied(c);
  if (a.enabled !== c.enabled) return c.enabled ? "enable" : "disable";
  if (c.enabled && a.mode !== c.mode) return "mode-change";
  if (!c.enabled) return undefined;
  // Host encryption is switched by a run too, so that every node accepts before any sends
  // (docs/design.md#host-encryption).
  if (a.host !== c.hostEncryption) return "host-change";
  const last = c.lastCompletedAt === undefined ? undefined : Date.parse(c.lastCompletedAt);
  if (c.rotateRequestedAt !== undefined && (last === undefined || Date.parse(c.rotateRequestedAt) > last)) {
    return "rotation-requested";
  }
  // A node whose SAs of the current epoch run out of sequence numbers asked for one.
  if (nodes.some((n) => n.status?.rotationWanted?.epoch === c.epoch && isLive(n, live)))
    return "rotation-early";
  const interval = parseDuration(c.rotationInterval)!;
  if (last !== undefined && now - last >= interval) return "rotation-scheduled";
  return undefined;
}

const NEXT_PHASE: Record<Exclude<Phase, "idle">, Phase> = {
  prepare: "switch",
  switch: "retire",
  retire: "idle",
};

/**
 * One step of the make-before-break state machine, pure. `idle` starts a run when the desired
 * state (enabled/mode/host encryption) differs from the applied one, a rotation was requested, or the rotation
 * interval passed; each phase advances once every live node acknowledged it (or timed out, which
 * is recorded so the cluster never stalls); `switch` → `retire` waits the grace period.
 */
export function decide(
  c: ClusterEncryption,
  nodes: Node[],
  liveNodes: Liveness,
  now: number,
  timing: PhaseTiming = DEFAULT_TIMING,
  sight?: Sight,
): Decision {
  const iso = new Date(now).toISOString();
  if (c.phase === "idle") {
    if (c.lastCompletedAt === undefined && c.applied === undefined) {
      // First sight of the cluster: what is configured is what runs (agents install it directly).
      return {
        next: {
          ...c,
          applied: { enabled: c.enabled, mode: c.mode, host: c.hostEncryption },
          lastCompletedAt: iso,
          epoch: Math.max(c.epoch, 1),
        },
        reason: "initialised",
      };
    }
    const lag = settleLagging(c, nodes, now, timing);
    if (lag.next !== undefined) return lag;
    const lagRecheck = lag.recheckInMs ?? Infinity;
    const reason = startReason(c, nodes, liveNodes, now);
    if (reason !== undefined && c.lagging.length > 0) {
      // The next epoch would take the generation slot the lagging nodes still use: wait for them to
      // catch up, or for their bound to expire (settleLagging ends the lag then).
      const first = Math.min(...c.lagging.map((l) => Date.parse(l.until)));
      return {
        deferred: `${reason} waits for ${c.lagging.map((l) => l.node).join(", ")} to catch up (until ${new Date(first).toISOString()} at the latest)`,
        recheckInMs: Math.max(1000, Math.min(lagRecheck, first - now)),
      };
    }
    if (reason === undefined) {
      const last = c.lastCompletedAt === undefined ? now : Date.parse(c.lastCompletedAt);
      return {
        recheckInMs: Math.min(lagRecheck, Math.max(1000, last + parseDuration(c.rotationInterval)! - now)),
      };
    }
    return {
      next: {
        ...c,
        phase: "prepare",
        target: {
          epoch: c.epoch + 1,
          enabled: c.enabled,
          mode: c.mode,
          ...(c.hostEncryption === applied(c).host ? {} : { host: c.hostEncryption }),
        },
        phaseStartedAt: { prepare: iso },
        timeouts: [],
      },
      reason,
    };
  }
  const target = c.target!;
  const phaseStarted = Date.parse(c.phaseStartedAt[c.phase] ?? iso);
  // Right after the controller was blind, a phase is not overdue and a node not dead for that.
  const started = sight === undefined ? phaseStarted : Math.max(phaseStarted, sight.since);
  const regaining = sight !== undefined && now - sight.since < timing.phaseTimeoutMs;
  const live = nodes.filter(
    (n) =>
      isLive(n, liveNodes) || (regaining && (sight.liveAtLoss === undefined || isLive(n, sight.liveAtLoss))),
  );
  const waiting = live.filter((n) => findAcknowledgement(n, target.epoch, c.phase) === undefined);
  const alreadyTimedOut = new Set(
    c.timeouts.filter((t) => t.epoch === target.epoch && t.phase === c.phase).map((t) => t.node),
  );
  const blocking = waiting.filter((n) => !alreadyTimedOut.has(n.name));
  if (blocking.length > 0) {
    if (now - started < timing.phaseTimeoutMs)
      return {
        // Also when the grace ends: a node that does not report by then is not waited for.
        recheckInMs: Math.min(
          started + timing.phaseTimeoutMs - now,
          regaining ? sight.since + timing.phaseTimeoutMs - now : Infinity,
        ),
      };
    const names = blocking.map((n) => n.name);
    return {
      next: {
        ...c,
        timeouts: [
          ...c.timeouts,
          ...names.map((node) => ({ node, epoch: target.epoch, phase: c.phase, at: iso })),
        ].slice(-1024),
      },
      reason: `timed out waiting for ${names.join(", ")} in ${c.phase}`,
      timedOut: names,
      recheckInMs: 0,
    };
  }
  if (c.phase === "switch") {
    const lastAck = Math.max(
      started,
      ...live.map((n) =>
        Date.parse(findAcknowledgement(n, target.epoch, "switch")?.at ?? c.phaseStartedAt.switch ?? iso),
      ),
    );
    if (now - lastAck < timing.retireGraceMs) return { recheckInMs: lastAck + timing.retireGraceMs - now };
  }
  const phase = NEXT_PHASE[c.phase];
  if (phase === "retire") {
    return {
      next: {
        ...c,
        phase,
        phaseStartedAt: { ...c.phaseStartedAt, retire: iso },
        lagging: laggingAtRetire(c, nodes, now),
      },
      reason: `all nodes acknowledged ${c.phase}`,
    };
  }
  if (phase === "idle") {
    return {
      next: {
        ...c,
        phase: "idle",
        epoch: target.epoch,
        applied: { enabled: target.enabled, mode: target.mode, host: target.host ?? applied(c).host },
        target: undefined,
        lastCompletedAt: iso,
      },
      reason: `epoch ${target.epoch} complete`,
    };
  }
  return {
    next: { ...c, phase, phaseStartedAt: { ...c.phaseStartedAt, [phase]: iso } },
    reason: `all nodes acknowledged ${c.phase}`,
  };
}

/**
 * The nodes a rotation leaves behind as it retires the old epoch: those that did not acknowledge
 * `switch` (their agent was down or stuck), which still use the old epoch and hold a key for it.
 * Only a rotation (enabled, same mode) keeps a generation for them: an enable, disable or mode
 * change has no old generation that could carry on.
 */
function laggingAtRetire(c: ClusterEncryption, nodes: readonly Node[], now: number): LaggingNode[] {
  const t = c.target!;
  const a = applied(c);
  if (!a.enabled || !t.enabled || a.mode !== t.mode) return [];
  const until = new Date(now + parseDuration(c.maxNodeLag)!).toISOString();
  const since = c.phaseStartedAt.prepare ?? new Date(now).toISOString();
  return nodes
    .filter(
      (n) =>
        findAcknowledgement(n, t.epoch, "switch") === undefined &&
        n.publicKeys[String(c.epoch)] !== undefined,
    )
    .map((n) => ({ node: n.name, epoch: c.epoch, since, until }));
}

/**
 * Idle: moves the lagging nodes on. A lag ends when its bound expires or its node is gone; a node
 * that acknowledged `prepare` of the current epoch switches its pairs a grace period later (every
 * peer has installed its new key by then), and one that acknowledged `switch` of it is caught up a
 * grace period after that (packets in flight). Without `next` when nothing changes now.
 */
function settleLagging(
  c: ClusterEncryption,
  nodes: readonly Node[],
  now: number,
  timing: PhaseTiming,
): Decision {
  if (c.lagging.length === 0) return {};
  const iso = new Date(now).toISOString();
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const next: LaggingNode[] = [];
  const notes: string[] = [];
  let recheck = Infinity;
  for (const l of c.lagging) {
    const n = byName.get(l.node);
    const until = Date.parse(l.until);
    if (n === undefined || until <= now || l.epoch >= c.epoch) {
      notes.push(n === undefined ? `${l.node} is gone` : `${l.node}'s lag at epoch ${l.epoch} expired`);
      continue;
    }
    recheck = Math.min(recheck, until - now);
    const ack = (phase: "prepare" | "switch"): number | undefined => {
      const at = findAcknowledgement(n, c.epoch, phase)?.at;
      return at === undefined ? undefined : Date.parse(at);
    };
    const switched = ack("switch");
    if (l.switchAt !== undefined && switched !== undefined && switched >= Date.parse(l.switchAt)) {
      const due = switched + timing.retireGraceMs;
      if (now >= due) {
        notes.push(`${l.node} caught up with epoch ${c.epoch}`);
        continue;
      }
      recheck = Math.min(recheck, due - now);
    }
    const prepared = ack("prepare");
    if (l.switchAt === undefined && prepared !== undefined) {
      const due = prepared + timing.retireGraceMs;
      if (now >= due) {
        next.push({ ...l, switchAt: iso });
        notes.push(`${l.node} prepared epoch ${c.epoch}: its pairs switch`);
        continue;
      }
      recheck = Math.min(recheck, due - now);
    }
    next.push(l);
  }
  if (notes.length > 0) return { next: { ...c, lagging: next }, reason: notes.join("; ") };
  return { recheckInMs: Math.max(0, recheck) };
}
