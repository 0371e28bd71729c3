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
  /** A node whose heartbeat is older than this is not live (not waited for). Default 15 s. */
  livenessMs: number;
}

export const DEFAULT_TIMING: PhaseTiming = {
  phaseTimeoutMs: 30_000,
  retireGraceMs: 2_000,
  livenessMs: 15_000,
};

/** Heartbeat times by Node version: every pass of every agent asks about every node. */
const heartbeats = new WeakMap<Node, number>();

/** Whether `node` reported alive recently enough to be waited for. */
export function isLive(node: Node, now: number, timing: PhaseTiming): boolean {
  if (node.heartbeat === undefined) return false;
  let at = heartbeats.get(node);
  if (at === undefined) heartbeats.set(node, (at = Date.parse(node.heartbeat)));
  return now - at <= timing.livenessMs;
}

/** What the cluster runs now: the applied state, which only the end of a run changes. */
export function applied(c: ClusterEncryption): { enabled: boolean; mode: EncryptionMode } {
  return c.applied ?? { enabled: c.enabled, mode: c.mode };
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
