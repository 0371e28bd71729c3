import { applied } from "../controller/phases.js";
import type { ClusterEncryption, EncryptionMode, Node } from "../model/index.js";
import type {
  DesiredGeneration,
  DesiredNodeState,
  DesiredRoute,
  ObservedPeer,
  SelectorMatch,
} from "../dataplane/types.js";
import type { Selector } from "../policy/types.js";

/** Node-local settings of the agent. */
export interface AgentSettings {
  node: string;
  /** Tunnel interface prefix: generation slot s is `${ifPrefix}${s}`. Default `podcrypt`. */
  ifPrefix: string;
  /** WireGuard listen port of slot 0; slot 1 uses the next. Default 51820. */
  wireguardPort: number;
  /** The underlay interface. Default `eth0`. */
  underlayIf: string;
  mtu: number;
}

interface Gen {
  epoch: number;
  mode: EncryptionMode;
}

/** The generations (epoch + mode) a node must hold in the cluster's current phase. */
export function generationsFor(c: ClusterEncryption): { installed: Gen[]; sending: Gen | undefined } {
  const a = applied(c);
  const current: Gen | undefined = a.enabled ? { epoch: c.epoch, mode: a.mode } : undefined;
  const t = c.target;
  const next: Gen | undefined = t !== undefined && t.enabled ? { epoch: t.epoch, mode: t.mode } : undefined;
  switch (c.phase) {
    case "idle":
      return { installed: current ? [current] : [], sending: current };
    case "prepare":
      return { installed: [current, next].filter((g): g is Gen => g !== undefined), sending: current };
    case "switch":
      return { installed: [current, next].filter((g): g is Gen => g !== undefined), sending: next };
    case "retire":
      return { installed: next ? [next] : [], sending: next };
  }
}

/** Epochs whose private keys the node must hold now; keys of every other epoch can be deleted. */
export function epochsNeeded(c: ClusterEncryption): number[] {
  return generationsFor(c).installed.map((g) => g.epoch);
}

/** Strict-mode drops for the phase (DESIGN.md sections 3 and 4). */
export function strictFor(c: ClusterEncryption): { dropOutbound: boolean; dropInbound: boolean } {
  if (!c.strict) return { dropOutbound: false, dropInbound: false };
  const a = applied(c).enabled;
  const t = c.target?.enabled ?? a;
  switch (c.phase) {
    case "idle":
      return { dropOutbound: a, dropInbound: a };
    case "prepare":
      // Still sending the applied way; plaintext is accepted from now on when disabling.
      return { dropOutbound: a, dropInbound: a && t };
    case "switch":
      // Sending the target way; others may still send the old way until retire.
      return { dropOutbound: t, dropInbound: a && t };
    case "retire":
      return { dropOutbound: t, dropInbound: t };
  }
}

/**
 * Whether a WireGuard session of generation `epoch` with the peer whose key is `publicKey` is up
 * (a handshake completed), as the data plane reports it.
 */
export type SessionCheck = (epoch: number, publicKey: string) => boolean;

/**
 * The selectors (of every node) this node encrypts and expects encrypted, in selective mode: see
 * src/agent/selection.ts for how a policy change moves through the two.
 */
export interface NodeSelection {
  encrypt: readonly Selector[];
  expectEncrypted: readonly Selector[];
}

/** Nothing selected. */
export const NO_SELECTION: NodeSelection = { encrypt: [], expectEncrypted: [] };

/** A {@link SessionCheck} over what the data plane observed. */
export function sessionsFrom(observed: readonly ObservedPeer[]): SessionCheck {
  const up = new Set(
    observed.filter((o) => o.latestHandshake !== undefined).map((o) => `${o.epoch}/${o.publicKey}`),
  );
  return (epoch, publicKey) => up.has(`${epoch}/${publicKey}`);
}

/**
 * The desired data-plane state of `settings.node`, pure: generations with the peers that
 * published keys for their epoch, routes to every other node's pods, and strict-mode drops.
 *
 * A peer's pods are routed through the sending generation, except that a WireGuard generation
 * takes over a peer from an older generation that still carries it only once its session with
 * that peer is up (`sessions`): a handshake that collided or reached a peer not yet listening is
 * retried only after REKEY_TIMEOUT (5 s), and the packets queued meanwhile would arrive as one
 * burst, or never if the generation were retired first. With no older generation (enable) the
 * sending one takes the traffic at once, queueing it until the session is up: plaintext is no
 * longer allowed. Encryption off routes in plaintext; a peer no generation knows is blackholed.
 *
 * Selective encryption (`c.encryption` "selective"): the main table routes every peer's pods in
 * plaintext and the `selected` table through the tunnel as above; only traffic of `selection`
 * is marked to look the latter up (and is what strict mode guards).
 */
export function desiredState(
  settings: AgentSettings,
  c: ClusterEncryption,
  nodes: Node[],
  sessions: SessionCheck,
  selection: NodeSelection = NO_SELECTION,
): DesiredNodeState {
  const self = nodes.find((n) => n.name === settings.node);
  // Code-unit order (not localeCompare): the same on every node, and cheap on hundreds of nodes.
  const others = nodes
    .filter((n) => n.name !== settings.node)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const { installed, sending } = generationsFor(c);
  const generations: DesiredGeneration[] = installed.map((g) => {
    const slot = (g.epoch % 2) as 0 | 1;
    const listenPort = settings.wireguardPort + slot;
    return {
      epoch: g.epoch,
      mode: g.mode,
      slot,
      ifname: `${settings.ifPrefix}${slot}`,
      listenPort,
      peers: others.flatMap((n) => {
        const key = n.publicKeys[String(g.epoch)];
        const address = n.underlay.ipv4 ?? n.underlay.ipv6;
        if (key === undefined || address === undefined) return [];
        return [
          {
            node: n.name,
            publicKey: key,
            endpoint: { address, port: listenPort },
            allowedIps: [...n.podCIDRs],
          },
        ];
      }),
    };
  });
  // Every pass looks up every peer in every generation: by map, not by scanning (500 nodes).
  const peersBy = new Map(generations.map((g) => [g, new Map(g.peers.map((p) => [p.node, p]))]));
  const carrier = (n: Node): DesiredGeneration | undefined => {
    const peerOf = (g: DesiredGeneration) => peersBy.get(g)!.get(n.name);
    if (sending === undefined) return generations.find((g) => peerOf(g) !== undefined);
    const next = generations.find((g) => g.epoch === sending.epoch && peerOf(g) !== undefined);
    // A peer the sending generation does not know yet is reached through any that does.
    if (next === undefined) return generations.find((g) => peerOf(g) !== undefined);
    // Only an *older* generation keeps a peer until the sending one's session is up (switch); a
    // newer one (prepare) never takes traffic before its run switches.
    const older = generations.find((g) => g.epoch < sending.epoch && peerOf(g) !== undefined);
    if (older === undefined || next.mode !== "wireguard") return next;
    return sessions(next.epoch, peerOf(next)!.publicKey) ? next : older;
  };
  const selective = c.encryption === "selective";
  const routes: DesiredRoute[] = [];
  for (const n of others) {
    const via = n.underlay.ipv4 ?? n.underlay.ipv6;
    const gen = carrier(n);
    for (const dst of n.podCIDRs) {
      const plain = via === undefined ? [] : [{ dst, kind: "plain" as const, via, dev: settings.underlayIf }];
      const tunnel: DesiredRoute[] =
        gen !== undefined
          ? [{ dst, kind: "tunnel", dev: gen.ifname }]
          : sending !== undefined
            ? [{ dst, kind: "blackhole" }]
            : [];
      if (!selective) routes.push(...(sending === undefined ? plain : tunnel));
      else routes.push(...plain, ...tunnel.map((r) => ({ ...r, table: "selected" as const })));
    }
  }
  const strict = {
    ...strictFor(c),
    underlayIf: settings.underlayIf,
    localPodCidrs: [...(self?.podCIDRs ?? [])],
    remotePodCidrs: others.flatMap((n) => n.podCIDRs),
  };
  if (selective) {
    const matches = (list: readonly Selector[]): SelectorMatch[] =>
      list.map((x) => ({
        protocol: x.protocol,
        port: x.port,
        podIPs: [...x.podIPs],
        local: x.node === settings.node,
      }));
    return {
      generations,
      routes,
      strict: {
        ...strict,
        selection: {
          // Marks only while this node sends encrypted; before that the selected table is not used.
          encrypt: sending === undefined ? [] : matches(selection.encrypt),
          expectEncrypted: matches(selection.expectEncrypted),
        },
      },
      mtu: settings.mtu,
    };
  }
  return { generations, routes, strict, mtu: settings.mtu };
}

/**
 * Whether this node has done its part of the current phase. `prepare` (encryption as the target):
 * the new generation holds every live peer (`livePeers`; a peer's key may come later, and the
 * controller times out peers that never publish one). `switch`: every peer in `prepared` (live,
 * and acknowledged prepare, so its end of the new generation exists) is routed through the new
 * generation, which in WireGuard mode means its session is up (see {@link desiredState}). A peer
 * that never prepared is not waited for: the controller reports it, not this node.
 */
export function readyToAcknowledge(
  desired: DesiredNodeState,
  c: ClusterEncryption,
  livePeers: readonly string[],
  prepared: readonly Node[],
): boolean {
  if (c.phase === "idle" || c.phase === "retire" || c.target === undefined || !c.target.enabled) return true;
  const target = c.target;
  const gen = desired.generations.find((g) => g.epoch === target.epoch);
  if (gen === undefined) return false;
  if (c.phase === "prepare") {
    const held = new Set(gen.peers.map((q) => q.node));
    return livePeers.every((p) => held.has(p));
  }
  return unswitched(desired, gen, prepared).length === 0;
}

/** The nodes among `peers` whose pods are not routed through generation `gen` yet. */
export function unswitched(
  desired: DesiredNodeState,
  gen: DesiredGeneration,
  peers: readonly Node[],
): string[] {
  const dev = new Map(desired.routes.flatMap((r) => (r.kind === "tunnel" ? [[r.dst, r.dev] as const] : [])));
  return peers.filter((n) => n.podCIDRs.some((dst) => dev.get(dst) !== gen.ifname)).map((n) => n.name);
}
