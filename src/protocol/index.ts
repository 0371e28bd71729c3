/**
 * What both sides of the rotation protocol share, so that the agent and the controller read the
 * cluster alike without importing each other: the protocol's timing, when a node counts as live,
 * which state the cluster runs now (`applied`), and the hash by which nodes agree on a selector
 * set (selective encryption). docs/design.md, "Key rotation" and "Selective encryption".
 */
import { createHash } from "node:crypto";
import type { ClusterEncryption, EncryptionMode, Node } from "../model/index.js";
import type { Selector } from "../policy/types.js";

/** Timing of the phased protocol (docs/design.md#keys-and-rotation). */
export interface PhaseTiming {
  /** A live node that has not acknowledged a phase after this long is reported and skipped. Default 30 s. */
  phaseTimeoutMs: number;
  /** Wait after every node switched before old keys go, for packets in flight. Default 2 s. */
  retireGraceMs: number;
  /**
   * A node counts as live until this long after it last renewed its liveness record (the TTL of
   * its lease, Datastore.holdLiveness), not waited for after. Default 15 s.
   */
  livenessMs: number;
}

export const DEFAULT_TIMING: PhaseTiming = {
  phaseTimeoutMs: 30_000,
  retireGraceMs: 2_000,
  livenessMs: 15_000,
};

/**
 * Which nodes are live: the datastore's liveness records as followed (Datastore.followLiveness),
 * or any set of names.
 */
export interface Liveness {
  has(node: string): boolean;
}

/**
 * Whether `node` is live, to be waited for: its agent renews its liveness record (a lease) every
 * heartbeat, and the record runs out {@link PhaseTiming.livenessMs} after the last renewal.
 */
export function isLive(node: Pick<Node, "name">, live: Liveness): boolean {
  return live.has(node.name);
}

/**
 * Liveness from the renewal times of the nodes' liveness records (Datastore.heartbeats: node →
 * ISO time): a node is live until {@link PhaseTiming.livenessMs} after its last renewal. For
 * readers that take a snapshot (status) rather than follow the records.
 */
export function liveFromHeartbeats(
  heartbeats: ReadonlyMap<string, string>,
  now: number,
  timing: PhaseTiming = DEFAULT_TIMING,
): Liveness {
  return {
    has: (node) => {
      const at = heartbeats.get(node);
      return at !== undefined && now - Date.parse(at) <= timing.livenessMs;
    },
  };
}

/**
 * What the cluster runs now: the applied state, which only the end of a run changes. Before the
 * controller first saw the cluster, and for host encryption in an `applied` written before it was
 * recorded there, the configured state.
 */
export function applied(c: ClusterEncryption): { enabled: boolean; mode: EncryptionMode; host: boolean } {
  const a = c.applied ?? { enabled: c.enabled, mode: c.mode };
  return { enabled: a.enabled, mode: a.mode, host: a.host ?? c.hostEncryption };
}

/** One (node, protocol, port, pod IP) of a selector set. */
export type SelectionAtom = string;

/** The atoms of a selector set: what it selects, without why. */
export function selectionAtoms(list: readonly Selector[]): Set<SelectionAtom> {
  const out = new Set<SelectionAtom>();
  for (const s of list) for (const ip of s.podIPs) out.add(`${s.node}|${s.protocol}|${s.port}|${ip}`);
  return out;
}

/** A short, stable hash of what a selector set selects (not why): what nodes publish to agree. */
export function selectionHash(list: readonly Selector[]): string {
  const canonical = [...selectionAtoms(list)].sort().join("\n");
  return createHash("sha256").update(canonical).digest("hex").slice(0, 16);
}
