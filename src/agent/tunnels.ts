import { isIP } from "node:net";
import type { ObservedPeer } from "../dataplane/types.js";
import type { Node } from "../model/index.js";
import { textMemo } from "../text-memo.js";

/** The state of this node's tunnel to one peer. */
export type TunnelState = "up" | "pending" | "failing";

/** An underlay address family. */
export type Family = "ipv4" | "ipv6";

/**
 * The node's tunnels by family, as published in `Node.status.tunnels`: how many peers' tunnels
 * are up, and the names of the peers whose tunnel is pending or failing. The up peers are counted,
 * not named: named, every record grew with the cluster (a list of the nodes O(N²) bytes) and every
 * join changed every record by a name (src/model/node.ts nodeStatusSchema.tunnels).
 */
export interface TunnelReport {
  at: string;
  families: { family: Family; upCount: number; pending: string[]; failing: string[] }[];
}

/**
 * How long a peer may go on receiving what this node sends without anything coming back before
 * its tunnel counts as failing. WireGuard answers any data with a keepalive within 10 s
 * (KEEPALIVE_TIMEOUT, WireGuard paper section 6.5) and starts a new handshake after 15 s of
 * unanswered data (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT): past that, the peer is not answering.
 */
export const UNANSWERED_MS = 15_000;

/** What the tracker remembers of one peer between observations. */
interface PeerTrack {
  tx: number;
  rx: number;
  /** Since when tx grew while rx did not (undefined: answered, or nothing sent). */
  unansweredSince?: number;
}

/**
 * Judges the tunnels to the live peers from successive data-plane observations (the agent calls
 * {@link TunnelTracker.observe} every heartbeat). A peer is `up` once its session is established
 * (a WireGuard handshake, both SAs of an IPsec pair) and what is sent to it is answered;
 * `failing` when this node has sent to it for {@link UNANSWERED_MS} and received nothing (counted
 * on every generation of the peer together, so a make-before-break switch is no gap); else
 * `pending`. An idle tunnel stays up: only traffic shows a broken path (no keepalives are sent).
 */
export class TunnelTracker {
  private readonly tracks = new Map<string, PeerTrack>();

  /**
   * One observation: `observed` from the data plane, `peers` the live peers (other nodes), `now`
   * wall-clock ms. Returns the report to publish.
   */
  observe(observed: readonly ObservedPeer[], peers: readonly Node[], now: number): TunnelReport {
    const byNode = new Map<string, ObservedPeer[]>();
    for (const o of observed) {
      const list = byNode.get(o.node);
      if (list === undefined) byNode.set(o.node, [o]);
      else list.push(o);
    }
    const families = new Map<Family, { upCount: number; pending: string[]; failing: string[] }>();
    const seen = new Set<string>();
    for (const peer of peers) {
      seen.add(peer.name);
      const rows = byNode.get(peer.name) ?? [];
      const state = this.judge(peer.name, rows, now);
      const family = familyOf(rows, peer);
      let f = families.get(family);
      if (f === undefined) families.set(family, (f = { upCount: 0, pending: [], failing: [] }));
      if (state === "up") f.upCount++;
      else f[state].push(peer.name);
    }
    for (const name of this.tracks.keys()) if (!seen.has(name)) this.tracks.delete(name);
    return {
      at: new Date(now).toISOString(),
      families: [...families.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        // Only the few peers not up are named, sorted: not the peers, every heartbeat of every node.
        .map(([family, f]) => ({
          family,
          upCount: f.upCount,
          pending: f.pending.sort(),
          failing: f.failing.sort(),
        })),
    };
  }

  private judge(node: string, rows: readonly ObservedPeer[], now: number): TunnelState {
    const tx = rows.reduce((s, r) => s + r.txBytes, 0);
    const rx = rows.reduce((s, r) => s + r.rxBytes, 0);
    const prev = this.tracks.get(node);
    const track: PeerTrack = { tx, rx };
    // A new daemon starts its counters again: compare only with counters that did not go back.
    if (prev !== undefined && tx >= prev.tx && rx >= prev.rx) {
      if (rx > prev.rx) delete track.unansweredSince;
      else if (tx > prev.tx) track.unansweredSince = prev.unansweredSince ?? now;
      else if (prev.unansweredSince !== undefined) track.unansweredSince = prev.unansweredSince;
    }
    this.tracks.set(node, track);
    if (track.unansweredSince !== undefined && now - track.unansweredSince >= UNANSWERED_MS) return "failing";
    return rows.some(established) ? "up" : "pending";
  }
}

/** A WireGuard peer with a handshake, or an IPsec key ID with both SAs installed. */
function established(o: ObservedPeer): boolean {
  if (o.spiIn !== undefined || o.spiOut !== undefined) return o.spiIn !== undefined && o.spiOut !== undefined;
  return o.latestHandshake !== undefined && o.latestHandshake > 0;
}

/** The family of the underlay the tunnel runs over: the endpoint's, else what the peer publishes. */
function familyOf(rows: readonly ObservedPeer[], peer: Node): Family {
  for (const r of rows) {
    const family = r.endpoint === undefined ? undefined : endpointFamily(r.endpoint);
    if (family !== undefined) return family;
  }
  return peer.underlay.ipv4 !== undefined ? "ipv4" : "ipv6";
}

/**
 * The family of an endpoint `host:port` / `[host]:port`, undefined when it is no address. Judged
 * once per endpoint: every heartbeat asks for every peer's.
 */
const endpointFamily = textMemo((endpoint): Family | undefined => {
  const v = isIP(endpoint.replace(/^\[/, "").replace(/\]?:\d+$/, ""));
  return v === 6 ? "ipv6" : v === 4 ? "ipv4" : undefined;
});

/** Whether every peer in `report` is up (none pending or failing). */
export function allUp(report: TunnelReport): boolean {
  return report.families.every((f) => f.pending.length === 0 && f.failing.length === 0);
}
