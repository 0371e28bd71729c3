import { applied } from "../protocol/index.js";
import type { ClusterEncryption, EncryptionMode, LaggingNode, Node } from "../model/index.js";
import type {
  DesiredGeneration,
  DesiredHost,
  DesiredNodeState,
  DesiredPeer,
  DesiredRoute,
  HostExclusion,
  HostFamily,
  ObservedPeer,
  SelectorMatch,
} from "../dataplane/types.js";
import { sameList } from "../lists.js";
import { cidrsOverlap } from "./claims.js";
import type { Selector } from "../policy/types.js";
import { ESP_IN_UDP_PORT } from "../esp/udp.js";
import { CONTROL_PORT } from "./control-port.js";

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
  /**
   * This node's probe endpoint (`verify --via-agents`, src/agent/verify/endpoint.ts), whose own
   * traffic selective encryption marks as the node's pods'. Default none.
   */
  probeEndpoint?: string;
  /**
   * With host encryption: traffic that stays outside the tunnels besides their own UDP ports (which
   * {@link desiredState} adds): the agent's datastore connection and the operator's exclusions
   * (src/cli/host-exclusions.ts). Default none.
   */
  hostExclude?: readonly HostExclusion[];
}

interface Gen {
  epoch: number;
  mode: EncryptionMode;
}

/**
 * The generations (epoch + mode) a node must hold in the cluster's current phase. `lagged` (also in
 * `installed`) are the older generations kept for lagging nodes (see `laggingNodeSchema`): in
 * retire and idle, one per epoch a lagging node still uses, never in the sending generation's slot.
 */
export function generationsFor(c: ClusterEncryption): Generations {
  // The cluster's record is immutable once read (every version is a new object), and every Node
  // event at every agent asks (decide.ts wakeFor via epochsNeeded): worked out once per version.
  let g = generationsOf.get(c);
  if (g === undefined) generationsOf.set(c, (g = workOutGenerations(c)));
  return g;
}

/** What {@link generationsFor} returns; shared between its callers, so read-only. */
interface Generations {
  readonly installed: readonly Gen[];
  readonly sending: Gen | undefined;
  readonly lagged: readonly Gen[];
  /** The installed generations' epochs ({@link epochsNeeded}). */
  readonly epochs: readonly number[];
}
const generationsOf = new WeakMap<ClusterEncryption, Generations>();

function workOutGenerations(c: ClusterEncryption): Generations {
  const { installed, sending } = phaseGenerations(c);
  const lagged: Gen[] = [];
  if (sending !== undefined && (c.phase === "idle" || c.phase === "retire"))
    for (const l of c.lagging) {
      if (l.epoch >= sending.epoch || l.epoch % 2 === sending.epoch % 2) continue;
      if (!lagged.some((g) => g.epoch === l.epoch)) lagged.push({ epoch: l.epoch, mode: sending.mode });
    }
  const all = [...lagged, ...installed];
  return { installed: all, sending, lagged, epochs: all.map((g) => g.epoch) };
}

/** The lag entries that have a generation kept for them, by node. */
function laggingNodes(c: ClusterEncryption, lagged: readonly Gen[]): Map<string, LaggingNode> {
  return new Map(c.lagging.filter((l) => lagged.some((g) => g.epoch === l.epoch)).map((l) => [l.node, l]));
}

function phaseGenerations(c: ClusterEncryption): { installed: Gen[]; sending: Gen | undefined } {
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
export function epochsNeeded(c: ClusterEncryption): readonly number[] {
  return generationsFor(c).epochs;
}

/** Strict-mode drops for the phase (docs/design.md#keys-and-rotation and #strict-mode). */
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
 * Host encryption in the phase (docs/design.md#host-encryption), make before break like
 * {@link strictFor}: `accept`, the peers' host addresses in every generation's peer entries (the
 * receive side); `route`, this node's own host traffic into the tunnels. Switched on, a run accepts
 * from prepare and routes from switch, once every node accepts; switched off, it stops routing at
 * switch and stops accepting at retire, once no node routes. Pure in the cluster's state, so an
 * agent restarted in any phase installs what that phase wants.
 */
export function hostFor(c: ClusterEncryption): { accept: boolean; route: boolean } {
  const a = applied(c).host;
  const t = c.target?.host ?? a;
  switch (c.phase) {
    case "idle":
      return { accept: a, route: a };
    case "prepare":
      return { accept: a || t, route: a };
    case "switch":
      return { accept: a || t, route: t };
    case "retire":
      return { accept: t, route: t };
  }
}

/**
 * Strict host mode's drops for the phase (docs/design.md#host-encryption): strict mode's
 * ({@link strictFor}) while host traffic is routed into the tunnels, make before break like
 * {@link hostFor}. Out: while this node routes its host traffic into the tunnels. In: while every
 * node does (switched on, from retire; switched off, no more from prepare).
 */
export function strictHostFor(c: ClusterEncryption): { dropOutbound: boolean; dropInbound: boolean } {
  if (!c.strictHost) return { dropOutbound: false, dropInbound: false };
  const s = strictFor(c);
  const a = applied(c).host;
  const t = c.target?.host ?? a;
  const h =
    c.phase === "idle"
      ? { out: a, in: a }
      : c.phase === "prepare"
        ? { out: a, in: a && t }
        : c.phase === "switch"
          ? { out: t, in: a && t }
          : { out: t, in: t };
  return { dropOutbound: s.dropOutbound && h.out, dropInbound: s.dropInbound && h.in };
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
  const up = new Map<number, Set<string>>();
  for (const o of observed) {
    if (o.latestHandshake === undefined || o.publicKey === undefined) continue;
    let keys = up.get(o.epoch);
    if (keys === undefined) up.set(o.epoch, (keys = new Set()));
    keys.add(o.publicKey);
  }
  return (epoch, publicKey) => up.get(epoch)?.has(publicKey) === true;
}

/**
 * The address node `n` is reached at over the underlay (its tunnels' endpoint): of the family this
 * node's own tunnels use (`ipv6`: this node has only an IPv6 underlay address), else the other.
 */
const addressOf = (n: Node, ipv6 = false): string | undefined =>
  ipv6 ? (n.underlay.ipv6 ?? n.underlay.ipv4) : (n.underlay.ipv4 ?? n.underlay.ipv6);

/**
 * The next hop of plaintext toward node `n`'s pods in `dst`: its underlay address of dst's family,
 * else (IPv4 pods over an IPv6-only underlay) its IPv6 address, which Linux takes as the gateway
 * of an IPv4 route (RFC 5549 style, `via inet6`). An IPv6 pod CIDR of a node with only an IPv4
 * underlay address has no plaintext next hop: it is reached through the tunnel only.
 */
function plainGateway(n: Node, dst: string): string | undefined {
  return dst.includes(":") ? n.underlay.ipv6 : (n.underlay.ipv4 ?? n.underlay.ipv6);
}

/**
 * The families host encryption covers at a node whose own underlay addresses are `self`'s
 * (docs/design.md#host-encryption): each family it has an address of, IPv4 first; none when host
 * encryption is off.
 */
function hostFamilies(self: Node | undefined, on: boolean): HostFamily[] {
  if (!on || self === undefined) return [];
  return (["ipv4", "ipv6"] as const).filter((f) => self.underlay[f] !== undefined);
}

/**
 * Node `n`'s host addresses of `families` as a tunnel's allowed IPs and host routes: its IPv4
 * underlay address as a `/32`, its IPv6 one as a `/128`.
 */
function hostAddresses(n: Node, families: readonly HostFamily[]): Array<{ family: HostFamily; dst: string }> {
  return families.flatMap((family) => {
    const ip = n.underlay[family];
    return ip === undefined ? [] : [{ family, dst: `${ip}/${family === "ipv4" ? 32 : 128}` }];
  });
}

/**
 * What passes derived from one node: valid while the latest version (`node`) has the address and
 * pod CIDRs of the version it was made from.
 */
interface Derived {
  node: Node;
  /**
   * By `epoch * 65536 + port` (`k`): the key and SA instance the entry was made for, and the entry;
   * the last {@link KEPT_PER_NODE} asked for.
   */
  peers: Array<{
    k: number;
    publicKey: string | undefined;
    saInstance: string | undefined;
    /** The host families the entry was made for, joined by commas. */
    host: string;
    entry: DesiredPeer | undefined;
  }>;
  /** By route shape ({@link RouteShape.key}), the last {@link KEPT_PER_NODE} asked for. */
  routes: Array<{ key: string; routes: readonly DesiredRoute[] }>;
  /** The node's entry in strict mode's peer list. */
  strict?: { node: string; podCidrs: string[] };
}

/**
 * Entries and route lists kept per node: a pass asks for one per installed generation (two in a
 * rotation, more with lagging nodes) and one route shape, so these hold what the next pass asks
 * for, while the generations of past rotations are let go (kept by epoch, an agent rotating daily
 * for a year held 365 entries per peer). Small lists, searched in order: with hundreds of agents
 * on one thread (the scale bench) a map per node was most of the memo's cost, in cache misses.
 */
const KEPT_PER_NODE = 8;

/** Adds `item` to a memo list, letting go of the oldest beyond {@link KEPT_PER_NODE}. */
function keep<T>(list: T[], item: T): T {
  if (list.length >= KEPT_PER_NODE) list.shift();
  list.push(item);
  return item;
}

/**
 * How the routes to a peer's pods are made in a pass (see {@link DesiredMemo.routesTo}), with the
 * key its routes are kept under: a pass makes one per tunnel interface, not one per peer.
 */
export interface RouteShape {
  via: string | null;
  encrypting: boolean;
  selective: boolean;
  underlayIf: string;
  src: Partial<Record<HostFamily, string>>;
  key: string;
}

/** The {@link RouteShape} of these settings. */
function routeShape(
  via: string | null,
  encrypting: boolean,
  selective: boolean,
  underlayIf: string,
  src: Partial<Record<HostFamily, string>>,
): RouteShape {
  const key = `${via ?? ""}|${encrypting ? 1 : 0}|${selective ? 1 : 0}|${underlayIf}|${src.ipv4 ?? ""}|${src.ipv6 ?? ""}`;
  return { via, encrypting, selective, underlayIf, src, key };
}

/**
 * What an agent's passes derive from each node, kept for the next pass: on 500 nodes a pass then
 * builds entries only for what changed (a key, an address), not for the heartbeat that made a new
 * version of every Node, and a data plane can tell an unchanged peer or route by identity. The
 * entries are shared between passes: nothing may modify them.
 */
export class DesiredMemo {
  private readonly byName = new Map<string, Derived>();
  /** The host families {@link peer} was last called with, joined (a pass passes one array). */
  private hostFamilies: readonly HostFamily[] = [];
  private hostKey = "";

  /** The last node {@link derived} was asked for: a pass asks for each node a few times in a row. */
  private last: Derived | undefined;

  private derived(n: Node): Derived {
    if (this.last?.node === n) return this.last;
    let d = this.byName.get(n.name);
    if (d !== undefined && d.node === n) return (this.last = d);
    if (
      d === undefined ||
      d.node.underlay.ipv4 !== n.underlay.ipv4 ||
      d.node.underlay.ipv6 !== n.underlay.ipv6 ||
      !sameList(d.node.podCIDRs, n.podCIDRs)
    ) {
      d = { node: n, peers: [], routes: [] };
      this.byName.set(n.name, d);
    } else d.node = n;
    return (this.last = d);
  }

  /**
   * Node `n`'s peer entry in the generation of `epoch` listening on `port`, if it published a key;
   * reached at its IPv6 address first when `ipv6` (see {@link addressOf}). With `host` (the
   * families host encryption covers) its allowed IPs hold its host addresses of those families too.
   */
  peer(
    n: Node,
    epoch: number,
    port: number,
    ipv6 = false,
    host: readonly HostFamily[] = [],
  ): DesiredPeer | undefined {
    const d = this.derived(n);
    const k = epoch * 65_536 + port;
    const publicKey = n.publicKeys[String(epoch)];
    const saInstance = n.saInstance;
    const address = addressOf(n, ipv6);
    if (host !== this.hostFamilies) {
      this.hostFamilies = host;
      this.hostKey = host.join(",");
    }
    const hostKey = this.hostKey;
    let p = d.peers.find((x) => x.k === k);
    if (
      p === undefined ||
      p.publicKey !== publicKey ||
      p.saInstance !== saInstance ||
      p.host !== hostKey ||
      (p.entry !== undefined && p.entry.endpoint.address !== address)
    ) {
      const hostIps = hostAddresses(n, host).map((h) => h.dst);
      const entry: DesiredPeer | undefined =
        publicKey === undefined || address === undefined
          ? undefined
          : {
              node: n.name,
              publicKey,
              ...(saInstance === undefined ? {} : { saInstance }),
              endpoint: { address, port },
              allowedIps: [...n.podCIDRs, ...hostIps],
            };
      const made = { publicKey, saInstance, host: hostKey, entry };
      if (p === undefined) p = keep(d.peers, { k, ...made });
      else Object.assign(p, made);
    }
    return p.entry;
  }

  /**
   * The routes to node `n`'s pods. The tunnel way is through interface `shape.via`, or a blackhole
   * when `via` is null (nothing to encrypt with yet, so never plaintext); without `encrypting`
   * traffic goes in plaintext over `underlayIf`. Selective encryption routes in plaintext in the
   * main table and the tunnel way in the `selected` table. With `src` (host encryption: this node's
   * host addresses by family) the tunnel routes to pod CIDRs of each family name the address of
   * that family as the source of the node's own packets, an address the peer's tunnel accepts and
   * routes back through the tunnel.
   */
  routesTo(n: Node, shape: RouteShape): readonly DesiredRoute[] {
    const d = this.derived(n);
    let out = d.routes.find((x) => x.key === shape.key)?.routes;
    if (out === undefined) {
      const { via, encrypting, selective, underlayIf, src } = shape;
      out = n.podCIDRs.flatMap((dst): DesiredRoute[] => {
        const gw = plainGateway(n, dst);
        const plain: DesiredRoute[] =
          gw === undefined ? [] : [{ dst, kind: "plain", via: gw, dev: underlayIf }];
        const from = src[dst.includes(":") ? "ipv6" : "ipv4"];
        const tunnel: DesiredRoute[] =
          via !== null
            ? [{ dst, kind: "tunnel", dev: via, ...(from === undefined ? {} : { src: from }) }]
            : encrypting
              ? [{ dst, kind: "blackhole" }]
              : [];
        if (!selective) return encrypting ? tunnel : plain;
        return [...plain, ...tunnel.map((r) => ({ ...r, table: "selected" as const }))];
      });
      keep(d.routes, { key: shape.key, routes: out });
    }
    return out;
  }

  /** Node `n`'s entry in strict mode's peer list: its name and pod CIDRs. */
  strictPeer(n: Node): { node: string; podCidrs: string[] } {
    const d = this.derived(n);
    return (d.strict ??= { node: n.name, podCidrs: [...n.podCIDRs] });
  }

  /** Forgets the nodes not in `nodes` once it holds more than them. */
  prune(nodes: readonly Node[]): void {
    if (this.byName.size <= nodes.length) return;
    const names = new Set(nodes.map((n) => n.name));
    for (const name of this.byName.keys()) if (!names.has(name)) this.byName.delete(name);
    this.last = undefined;
  }
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
 *
 * `refusedPodCidrs` are peers' pod CIDRs the agent refused (src/agent/claims.ts): no route leads
 * there, and strict mode drops plaintext toward and from them like any remote pod traffic
 * (counted), so traffic to a contested range is neither sent to a node that may be lying nor
 * leaked in plaintext. A refused range overlapping this node's own pods is left out (this node's
 * own claims stand), which also keeps a lie as broad as 0.0.0.0/0 from dropping other traffic.
 */
export function desiredState(
  settings: AgentSettings,
  c: ClusterEncryption,
  nodes: Node[],
  sessions: SessionCheck,
  selection: NodeSelection = NO_SELECTION,
  memo: DesiredMemo = new DesiredMemo(),
  refusedPodCidrs: readonly string[] = [],
): DesiredNodeState {
  memo.prune(nodes);
  const self = nodes.find((n) => n.name === settings.node);
  // Code-unit order (not localeCompare): the same on every node, and cheap on hundreds of nodes.
  const others = nodes
    .filter((n) => n.name !== settings.node)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const { installed, sending, lagged } = generationsFor(c);
  const lagging = laggingNodes(c, lagged);
  const selfLag = lagging.get(settings.node);
  // A generation kept for lagging nodes holds only them, except at a lagging node itself.
  const keptOnly = (epoch: number): boolean =>
    selfLag?.epoch !== epoch && lagged.some((l) => l.epoch === epoch);
  // IPsec keys bind both nodes' SA instances: a peer that published none yet gets no SA.
  // A node with only an IPv6 underlay address reaches its peers at theirs.
  const ipv6 = self !== undefined && self.underlay.ipv4 === undefined;
  // Host encryption (docs/design.md#host-encryption) covers each family this node has a host
  // address of, toward peers with an address of that family: accepted from them and routed to
  // them as the phase of a switch says (hostFor).
  const hostPhase = hostFor(c);
  const hostAccept = hostFamilies(self, hostPhase.accept);
  const hostRoute = hostFamilies(self, hostPhase.route);
  const peerIn = (g: { epoch: number; mode: EncryptionMode }, n: Node, port: number) => {
    const p = memo.peer(n, g.epoch, port, ipv6, hostAccept);
    return g.mode === "ipsec" && p?.saInstance === undefined ? undefined : p;
  };
  const portOf = (epoch: number): number => settings.wireguardPort + (epoch % 2);
  // Every peer's entry in every installed generation (by the peer's index in `others`), looked up
  // once a pass: the peer lists and the choice of each peer's carrier below both read them.
  const entries = installed.map((): Array<DesiredPeer | undefined> => new Array(others.length));
  for (const [i, n] of others.entries())
    for (const [gi, g] of installed.entries()) entries[gi]![i] = peerIn(g, n, portOf(g.epoch));
  // Whether installed generation `gi` holds `others[i]`: it has the peer's entry, and a generation
  // kept for lagging nodes holds only them.
  const held = installed.map((g, gi) => {
    const kept = keptOnly(g.epoch);
    return others.map(
      (n, i) => entries[gi]![i] !== undefined && (!kept || lagging.get(n.name)?.epoch === g.epoch),
    );
  });
  const generations: DesiredGeneration[] = installed.map((g, gi) => {
    const slot = (g.epoch % 2) as 0 | 1;
    const peers: DesiredPeer[] = [];
    for (let i = 0; i < others.length; i++) if (held[gi]![i]) peers.push(entries[gi]![i]!);
    return {
      epoch: g.epoch,
      mode: g.mode,
      slot,
      ifname: `${settings.ifPrefix}${slot}`,
      listenPort: portOf(g.epoch),
      peers,
    };
  });
  // The installed generation (its index) that carries the pods' traffic to `others[i]`, or -1.
  const carrier = (i: number): number => {
    // The first generation (in installation order) that holds the peer, then the first of the
    // sending epoch, of an older one, and of the epoch a lagging pair stays on.
    const lag = sending === undefined ? undefined : (selfLag ?? lagging.get(others[i]!.name));
    let first = -1;
    let next = -1;
    let older = -1;
    let kept = -1;
    for (let gi = 0; gi < installed.length; gi++) {
      if (!held[gi]![i]) continue;
      const epoch = installed[gi]!.epoch;
      if (first < 0) first = gi;
      if (next < 0 && epoch === sending?.epoch) next = gi;
      if (older < 0 && sending !== undefined && epoch < sending.epoch) older = gi;
      if (kept < 0 && epoch === lag?.epoch) kept = gi;
    }
    if (sending === undefined) return first;
    // A pair with a lagging node stays on the kept generation until the controller switches it.
    if (lag !== undefined && lag.switchAt === undefined && kept >= 0) return kept;
    // A peer the sending generation does not know yet is reached through any that does.
    if (next < 0) return first;
    // Only an *older* generation keeps a peer until the sending one's session is up (switch); a
    // newer one (prepare) never takes traffic before its run switches.
    if (older < 0 || installed[next]!.mode !== "wireguard") return next;
    return sessions(installed[next]!.epoch, entries[next]![i]!.publicKey) ? next : older;
  };
  const selective = c.encryption === "selective";
  const routes: DesiredRoute[] = [];
  // The source address of the node's own packets is one the peers accept only while they do: it
  // follows the routing of host traffic, which starts after every node accepts and ends before.
  const src: Partial<Record<HostFamily, string>> = {};
  for (const f of hostRoute) src[f] = self!.underlay[f];
  // The routes' shape through each generation's interface (by index), and with none (last).
  const shapes = [...generations.map((g) => g.ifname), null].map((via) =>
    routeShape(via, sending !== undefined, selective, settings.underlayIf, src),
  );
  // Strict mode's peers and the pod CIDRs it guards, as the routes go.
  const strictPeers: Array<{ node: string; podCidrs: string[] }> = [];
  const believedCidrs: string[] = [];
  for (const [i, n] of others.entries()) {
    const shape = shapes.at(carrier(i))!;
    for (const r of memo.routesTo(n, shape)) routes.push(r);
    strictPeers.push(memo.strictPeer(n));
    for (const cidr of n.podCIDRs) believedCidrs.push(cidr);
    // Host traffic goes through the tunnel that carries the peer's pods; with none up it goes as
    // before, in plaintext, which only strict host mode drops (strictHostFor; its exclusions keep
    // the datastore and the operators reachable).
    const via = shape.via;
    if (via !== null && sending !== undefined)
      for (const { family, dst } of hostAddresses(n, hostRoute))
        routes.push({ dst, kind: "tunnel", dev: via, src: src[family]!, table: "host" });
  }
  const hostState = hostRoute.length > 0 ? { host: hostRouting(settings, generations, hostRoute) } : {};
  const hostDrops = strictHostFor(c);
  const strict = {
    ...strictFor(c),
    underlayIf: settings.underlayIf,
    localPodCidrs: [...(self?.podCIDRs ?? [])],
    remotePodCidrs: remoteDrops(believedCidrs, refusedPodCidrs, self?.podCIDRs ?? []),
    peers: strictPeers,
    // Strict host mode: every known peer's host address is guarded, whether or not its tunnel is
    // up (that is the point: no plaintext meanwhile); a node not known yet is not. What host
    // encryption leaves outside the tunnels (the datastore above all) passes.
    ...(hostState.host !== undefined && (hostDrops.dropOutbound || hostDrops.dropInbound)
      ? {
          host: {
            ...hostDrops,
            peers: others.flatMap((n) => {
              const addresses = hostAddresses(n, hostRoute).map((a) => a.dst);
              return addresses.length === 0 ? [] : [{ node: n.name, addresses }];
            }),
            exclude: hostState.host.exclude,
          },
        }
      : {}),
  };
  if (selective) {
    // verify --via-agents probes selected ports from this address: marked as this node's pods are.
    const endpoint = settings.probeEndpoint;
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
      ...hostState,
      strict: {
        ...strict,
        selection: {
          // Marks only while this node sends encrypted; before that the selected table is not used.
          encrypt: sending === undefined ? [] : matches(selection.encrypt),
          expectEncrypted: matches(selection.expectEncrypted),
          ...(sending === undefined || endpoint === undefined ? {} : { localSources: [endpoint] }),
        },
      },
      mtu: settings.mtu,
      ...instanceOf(self),
    };
  }
  return { generations, routes, ...hostState, strict, mtu: settings.mtu, ...instanceOf(self) };
}

/**
 * What host encryption must leave outside the tunnels (docs/design.md#host-encryption): the
 * tunnels' own UDP datagrams, which run between the very host addresses the host table routes
 * into the tunnels (both ways: the WireGuard ports of every generation, this node's and its peers',
 * and ESP in UDP), UDP to the discard port (the negative control of `verify --via-agents`, which
 * must cross outside every tunnel: src/agent/verify/runner.ts), then the agent's datastore
 * connection and the operator's exclusions.
 */
function hostRouting(
  settings: AgentSettings,
  generations: readonly DesiredGeneration[],
  families: HostFamily[],
): DesiredHost {
  const ports = new Set<number>([settings.wireguardPort, settings.wireguardPort + 1, ESP_IN_UDP_PORT]);
  for (const g of generations) {
    ports.add(g.listenPort);
    for (const p of g.peers) ports.add(p.endpoint.port);
  }
  const exclude = [...ports].sort((a, b) => a - b).flatMap((port) => bothWays("udp", port));
  const control: HostExclusion = { protocol: "udp", dport: CONTROL_PORT };
  return { families, exclude: [...exclude, control, ...(settings.hostExclude ?? [])] };
}

/** Host encryption leaves `port` outside both ways: as the destination (requests) and the source (answers). */
export function bothWays(protocol: NonNullable<HostExclusion["protocol"]>, port: number): HostExclusion[] {
  return [
    { protocol, dport: port },
    { protocol, sport: port },
  ];
}

/**
 * The remote pod CIDRs strict mode guards: the believed ones, then the refused ones that are not
 * among them and overlap none of `own` (see {@link desiredState}), each once.
 */
function remoteDrops(believed: string[], refused: readonly string[], own: readonly string[]): string[] {
  if (refused.length === 0) return believed;
  const out = [...believed];
  for (const r of refused) if (!out.includes(r) && !own.some((o) => cidrsOverlap(o, r))) out.push(r);
  return out;
}

/** The SA instance `self` published, as a {@link DesiredNodeState} field. */
function instanceOf(self: Node | undefined): { saInstance?: string } {
  return self?.saInstance === undefined ? {} : { saInstance: self.saInstance };
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

/**
 * What a lagging node acknowledges of the current epoch as it catches up (idle): `prepare` once
 * its generation of the current epoch holds every live peer, then, after the controller switched
 * its pairs (`switchAt`), `switch` once every live peer is routed through that generation (in
 * WireGuard mode: its session is up). Undefined when the node does not lag or is not ready yet.
 */
export function catchUpAcknowledgement(
  desired: DesiredNodeState,
  c: ClusterEncryption,
  self: string,
  live: readonly Node[],
): "prepare" | "switch" | undefined {
  if (c.phase !== "idle") return undefined;
  const lag = c.lagging.find((l) => l.node === self);
  const gen = desired.generations.find((g) => g.epoch === c.epoch);
  if (lag === undefined || gen === undefined) return undefined;
  if (lag.switchAt === undefined) {
    const held = new Set(gen.peers.map((q) => q.node));
    return live.every((n) => held.has(n.name)) ? "prepare" : undefined;
  }
  return unswitched(desired, gen, live).length === 0 ? "switch" : undefined;
}
