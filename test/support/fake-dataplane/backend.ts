/**
 * A stateful in-memory data plane (kind `none`: no data plane of its own) for unit tests of the
 * agent and controller and for the scale bench: it keeps what a real reconciler would have
 * installed (generations with their peers, routes, strict-mode drops, MTU), applies `reconcile` as
 * ordered steps like the real backends do, and can be told to fail (`failNext`) at any step,
 * leaving the steps before it applied, as a kernel or daemon error half-way through a pass would.
 * After a failure the next pass is a full resync (counted in `stats.fullResyncs`), as
 * docs/design.md#data-planes requires.
 *
 * It never sees a private key after the call: each generation records the public key derived from
 * the private key it was given, so tests can check that a node uses the key it published.
 */
import { systemClock, type Clock } from "../../../src/clock.js";
import { PodcryptError } from "../../../src/errors/index.js";
import { newSaInstance } from "../../../src/keys/derive.js";
import { publicFromPrivate } from "../../../src/keys/x25519.js";
import { sameList } from "../../../src/lists.js";
import type { EncryptionMode } from "../../../src/model/index.js";
import type {
  DataplaneBackend,
  DesiredNodeState,
  DesiredPeer,
  DesiredRoute,
  DesiredStrict,
  ObservedPeer,
} from "../../../src/dataplane/types.js";

/** A step of a reconcile pass, in the order they are applied; a fault can target one. */
export type FakeStep = "generations" | "peers" | "routes" | "strict" | "prune";

/** One installed key generation. */
export interface FakeGeneration {
  readonly epoch: number;
  readonly mode: EncryptionMode;
  readonly slot: 0 | 1;
  readonly ifname: string;
  readonly listenPort: number;
  /** Base64 public key of the private key the generation was installed with. */
  readonly publicKey: string;
  /** Peers by node name. */
  readonly peers: ReadonlyMap<string, DesiredPeer>;
}

/** Counters of what the fake did. */
export interface FakeStats {
  reconciles: number;
  failures: number;
  /** Passes that started from scratch because the previous one failed (in-sync flag cleared). */
  fullResyncs: number;
  /** Passes that changed nothing. */
  noops: number;
  generationsAdded: number;
  generationsRemoved: number;
  peersSet: number;
  peersRemoved: number;
  routesSet: number;
  routesRemoved: number;
  strictChanges: number;
}

interface Fault {
  step: FakeStep | "any";
  error: Error;
}

interface MutableGeneration {
  epoch: number;
  mode: EncryptionMode;
  slot: 0 | 1;
  ifname: string;
  listenPort: number;
  publicKey: string;
  peers: Map<string, DesiredPeer>;
}

const samePeer = (a: DesiredPeer, b: DesiredPeer): boolean =>
  a.publicKey === b.publicKey &&
  a.endpoint.address === b.endpoint.address &&
  a.endpoint.port === b.endpoint.port &&
  sameList(a.allowedIps, b.allowedIps);

function sameRoute(a: DesiredRoute, b: DesiredRoute): boolean {
  if (a.kind !== b.kind || a.dst !== b.dst) return false;
  if (a.kind === "tunnel") return a.dev === (b as typeof a).dev;
  if (a.kind === "plain") return a.via === (b as typeof a).via && a.dev === (b as typeof a).dev;
  return true;
}

/** Field by field: the pod CIDR lists have an entry per node (500), compared on every pass. */
const sameStrict = (a: DesiredStrict | undefined, b: DesiredStrict): boolean =>
  a !== undefined &&
  a.dropOutbound === b.dropOutbound &&
  a.dropInbound === b.dropInbound &&
  a.underlayIf === b.underlayIf &&
  sameList(a.localPodCidrs, b.localPodCidrs) &&
  sameList(a.remotePodCidrs, b.remotePodCidrs) &&
  JSON.stringify(a.selection) === JSON.stringify(b.selection);

/** An error with an errno-style code, as the real reconcilers surface kernel and daemon failures. */
export function fakeErrno(code: string, message = `fake data plane: ${code}`): PodcryptError {
  return new PodcryptError(code, message, { context: { backend: "fake" } });
}

/**
 * The network between fake data planes: a WireGuard session between two nodes' generations of one
 * epoch exists once each holds the other as a peer under the public key the other really uses,
 * as a real handshake needs. Data planes join it through {@link FakeDataplaneOptions.fabric}.
 */
export class FakeFabric {
  private readonly planes = new Map<string, FakeDataplane>();
  private readonly blocked = new Set<string>();

  /** Loses every handshake between `a` and `b` until {@link unblock} (a lossy or partitioned path). */
  block(a: string, b: string): void {
    this.blocked.add([a, b].sort().join("|"));
  }

  unblock(a: string, b: string): void {
    this.blocked.delete([a, b].sort().join("|"));
  }

  /** Registers `plane` as node `node` (a reopened data plane replaces its predecessor). */
  join(node: string, plane: FakeDataplane): void {
    this.planes.set(node, plane);
  }

  /** Whether `node`'s generation `epoch` could complete a handshake with `self`'s (key `selfKey`). */
  reachable(node: string, epoch: number, expectKey: string, self: string, selfKey: string): boolean {
    if (this.blocked.has([node, self].sort().join("|"))) return false;
    const g = this.planes.get(node)?.generation(epoch);
    return g !== undefined && g.publicKey === expectKey && g.peers.get(self)?.publicKey === selfKey;
  }
}

export interface FakeDataplaneOptions {
  /**
   * Where handshakes go. Without one, every configured WireGuard peer answers at once (a
   * handshake completes when the peer is configured); with one, only peers whose own data plane
   * holds this node with the right key do.
   */
  fabric?: { node: string; network: FakeFabric };
  /** Wall clock of handshake times. Default: the system clock. */
  clock?: Clock;
}

/** The stateful fake data plane. */
export class FakeDataplane implements DataplaneBackend {
  /** Not a data plane a node could run: it publishes `backend: none`. */
  readonly kind = "none" as const;
  private readonly gens = new Map<number, MutableGeneration>();
  private readonly routeTable = new Map<string, DesiredRoute>();
  private strictState: DesiredStrict | undefined;
  /** IPsec: the SA instance (src/keys/derive.ts), made at the first ipsec generation and kept. */
  private instance: string | undefined;
  private mtuValue: number | undefined;
  private inSync = false;
  private closed = false;
  private readonly faults: Fault[] = [];
  private persistent: Fault | undefined;
  private hold:
    { when: (d: DesiredNodeState) => boolean; gate: Promise<void>; reached: () => void } | undefined;
  private readonly listeners = new Set<() => void>();
  readonly stats: FakeStats = {
    reconciles: 0,
    failures: 0,
    fullResyncs: 0,
    noops: 0,
    generationsAdded: 0,
    generationsRemoved: 0,
    peersSet: 0,
    peersRemoved: 0,
    routesSet: 0,
    routesRemoved: 0,
    strictChanges: 0,
  };
  /** Every epoch ever installed, in order (a generation re-added after removal appears again). */
  readonly installHistory: number[] = [];
  /** Wall-clock ms of the first completed handshake, by `epoch/node/publicKey`. */
  private readonly handshakes = new Map<string, number>();
  /** What {@link observe} reported for installed peers whose session is up, by peer entry. */
  private readonly observedUp = new WeakMap<DesiredPeer, ObservedPeer>();
  /** Epochs whose (IPsec) outbound SAs report that their sequence numbers near the end. */
  private readonly exhausting = new Set<number>();

  constructor(private readonly options: FakeDataplaneOptions = {}) {
    options.fabric?.network.join(options.fabric.node, this);
  }

  /** Makes the next pass fail with `error` when it reaches `step` (default: at its start). Queued, one per pass. */
  failNext(error: Error = fakeErrno("EIO"), step: FakeStep | "any" = "any"): void {
    this.faults.push({ step, error });
  }

  /** Makes every pass fail with `error` at `step` until `recover()` (a wedged data plane). */
  failAlways(error: Error = fakeErrno("EIO"), step: FakeStep | "any" = "any"): void {
    this.persistent = { step, error };
  }

  /** From now on, the IPsec SAs of `epoch` report `rekeySoon` (their sequence numbers near the end). */
  exhaustSequence(epoch: number): void {
    this.exhausting.add(epoch);
  }

  /**
   * Holds the first pass whose desired state matches `when` at its start until `release()` (a data
   * plane that answers late); `held` settles once a pass waits there.
   */
  holdWhen(when: (desired: DesiredNodeState) => boolean): { held: Promise<void>; release: () => void } {
    let release!: () => void;
    let reached!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const held = new Promise<void>((r) => (reached = r));
    this.hold = { when, gate, reached };
    return { held, release };
  }

  /** Ends `failAlways`. */
  recover(): void {
    this.persistent = undefined;
  }

  /** Calls `cb` after every pass that changed something (success or partial). Returns an unsubscribe. */
  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Installed generations, by ascending epoch. */
  generations(): FakeGeneration[] {
    return [...this.gens.values()].sort((a, b) => a.epoch - b.epoch);
  }

  generation(epoch: number): FakeGeneration | undefined {
    return this.gens.get(epoch);
  }

  /** Epochs installed now, ascending. */
  epochs(): number[] {
    return [...this.gens.keys()].sort((a, b) => a - b);
  }

  /** Whether generation `epoch` (any, when omitted) holds a peer for `node` (with `publicKey`, when given). */
  hasPeer(node: string, epoch?: number, publicKey?: string): boolean {
    const gens = epoch === undefined ? [...this.gens.values()] : [this.gens.get(epoch)].filter((g) => g);
    return gens.some((g) => {
      const p = g!.peers.get(node);
      return p !== undefined && (publicKey === undefined || p.publicKey === publicKey);
    });
  }

  /** The route installed for `dst`. */
  route(dst: string): DesiredRoute | undefined {
    return this.routeTable.get(dst);
  }

  routes(): DesiredRoute[] {
    return [...this.routeTable.values()].sort((a, b) => a.dst.localeCompare(b.dst));
  }

  get strict(): DesiredStrict | undefined {
    return this.strictState;
  }

  get mtu(): number | undefined {
    return this.mtuValue;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private maybeFail(step: FakeStep, pending: Fault | undefined): void {
    const f = pending ?? this.persistent;
    if (f !== undefined && (f.step === "any" || f.step === step)) throw f.error;
  }

  saInstance(): string | undefined {
    return this.instance;
  }

  async reconcile(desired: DesiredNodeState, privateKey: (epoch: number) => Buffer): Promise<void> {
    if (this.closed) throw new PodcryptError("ECLOSED", "fake data plane is closed");
    const hold = this.hold;
    if (hold?.when(desired)) {
      this.hold = undefined;
      hold.reached();
      await hold.gate;
    }
    this.stats.reconciles++;
    const fullResync = !this.inSync;
    if (fullResync && this.stats.reconciles > 1) this.stats.fullResyncs++;
    this.inSync = false;
    const fault = this.faults.shift();
    const before = this.changeCount();
    try {
      this.maybeFail("generations", fault);
      // Make before break: new generations and peers first, routes next, old generations last.
      for (const g of desired.generations) {
        const have = this.gens.get(g.epoch);
        if (
          have !== undefined &&
          have.mode === g.mode &&
          have.slot === g.slot &&
          have.ifname === g.ifname &&
          have.listenPort === g.listenPort
        )
          continue;
        // The slot's interface is shared by epochs e and e±2: the older one must be gone.
        for (const other of this.gens.values()) {
          if (other.epoch !== g.epoch && other.ifname === g.ifname) {
            throw fakeErrno("EEXIST", `fake data plane: ${g.ifname} still holds epoch ${other.epoch}`);
          }
        }
        const publicKey = publicFromPrivate(privateKey(g.epoch)).toString("base64");
        this.gens.set(g.epoch, {
          epoch: g.epoch,
          mode: g.mode,
          slot: g.slot,
          ifname: g.ifname,
          listenPort: g.listenPort,
          publicKey,
          peers: have?.peers ?? new Map(),
        });
        this.stats.generationsAdded++;
        this.installHistory.push(g.epoch);
      }
      // A fake keeps its state while it lives: the instance published before, else a new one.
      if (desired.generations.some((g) => g.mode === "ipsec"))
        this.instance ??= desired.saInstance ?? newSaInstance();
      this.maybeFail("peers", fault);
      for (const g of desired.generations) {
        const gen = this.gens.get(g.epoch)!;
        for (const p of g.peers) {
          const have = gen.peers.get(p.node);
          if (have !== undefined && samePeer(have, p)) continue;
          gen.peers.set(p.node, { ...p, endpoint: { ...p.endpoint }, allowedIps: [...p.allowedIps] });
          this.stats.peersSet++;
        }
        if (gen.peers.size !== g.peers.length) {
          const want = new Set(g.peers.map((p) => p.node));
          for (const node of [...gen.peers.keys()]) {
            if (!want.has(node)) {
              gen.peers.delete(node);
              this.stats.peersRemoved++;
            }
          }
        }
      }
      this.maybeFail("routes", fault);
      for (const r of desired.routes) {
        const have = this.routeTable.get(r.dst);
        if (have !== undefined && sameRoute(have, r)) continue;
        this.routeTable.set(r.dst, { ...r });
        this.stats.routesSet++;
      }
      if (this.routeTable.size !== desired.routes.length) {
        const want = new Set(desired.routes.map((r) => r.dst));
        for (const dst of [...this.routeTable.keys()]) {
          if (!want.has(dst)) {
            this.routeTable.delete(dst);
            this.stats.routesRemoved++;
          }
        }
      }
      this.maybeFail("strict", fault);
      if (!sameStrict(this.strictState, desired.strict)) {
        this.strictState = structuredClone(desired.strict);
        this.stats.strictChanges++;
      }
      this.mtuValue = desired.mtu;
      this.maybeFail("prune", fault);
      const keep = new Set(desired.generations.map((g) => g.epoch));
      for (const epoch of [...this.gens.keys()]) {
        if (!keep.has(epoch)) {
          this.gens.delete(epoch);
          for (const k of [...this.handshakes.keys()])
            if (k.startsWith(`${epoch}/`)) this.handshakes.delete(k);
          this.stats.generationsRemoved++;
        }
      }
      this.inSync = true;
    } catch (e) {
      this.stats.failures++;
      throw e;
    } finally {
      if (this.changeCount() === before) this.stats.noops++;
      else for (const cb of [...this.listeners]) cb();
    }
  }

  private changeCount(): number {
    const s = this.stats;
    return (
      s.generationsAdded +
      s.generationsRemoved +
      s.peersSet +
      s.peersRemoved +
      s.routesSet +
      s.routesRemoved +
      s.strictChanges
    );
  }

  async observe(): Promise<ObservedPeer[]> {
    if (this.closed) throw new PodcryptError("ECLOSED", "fake data plane is closed");
    return this.generations().flatMap((g) =>
      [...g.peers.values()].map((p) => {
        // A WireGuard peer whose session is up reads the same until it changes (a new object).
        const known = this.observedUp.get(p);
        if (known !== undefined && known.epoch === g.epoch) return known;
        const latestHandshake = g.mode === "wireguard" ? this.handshakeOf(g, p) : undefined;
        const o: ObservedPeer = {
          node: p.node,
          epoch: g.epoch,
          ifname: g.ifname,
          publicKey: p.publicKey,
          endpoint: `${p.endpoint.address}:${p.endpoint.port}`,
          txBytes: 0,
          rxBytes: 0,
          ...(latestHandshake === undefined ? {} : { latestHandshake }),
          ...(g.mode === "ipsec" && this.exhausting.has(g.epoch) ? { rekeySoon: true } : {}),
        };
        if (latestHandshake !== undefined) this.observedUp.set(p, o);
        return o;
      }),
    );
  }

  /** When the session of generation `g` with peer `p` came up, if it has. */
  private handshakeOf(g: FakeGeneration, p: DesiredPeer): number | undefined {
    const key = `${g.epoch}/${p.node}/${p.publicKey}`;
    const seen = this.handshakes.get(key);
    if (seen !== undefined) return seen;
    const f = this.options.fabric;
    if (f !== undefined && !f.network.reachable(p.node, g.epoch, p.publicKey, f.node, g.publicKey)) {
      return undefined;
    }
    const at = (this.options.clock ?? systemClock).wallNow();
    this.handshakes.set(key, at);
    return at;
  }

  /** Releases the handle; what is installed stays (traffic would keep flowing without the agent). */
  async close(): Promise<void> {
    this.closed = true;
  }

  /** A new handle on the same installed state, as a restarted agent would open (the fake "kernel" survives). */
  reopen(): FakeDataplane {
    const next = new FakeDataplane(this.options);
    for (const [e, g] of this.gens) next.gens.set(e, { ...g, peers: new Map(g.peers) });
    for (const [d, r] of this.routeTable) next.routeTable.set(d, r);
    for (const [k, at] of this.handshakes) next.handshakes.set(k, at);
    next.strictState = this.strictState;
    next.mtuValue = this.mtuValue;
    return next;
  }
}
