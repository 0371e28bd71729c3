import type { Clock, Timer } from "../clock.js";
import { applied, isLive, DEFAULT_TIMING, selectionHash } from "../protocol/index.js";
import type { DataplaneBackend } from "../dataplane/types.js";
import { isAlreadyExistsError, isConflictError, isNotFoundError } from "../datastore/errors.js";
import type { Datastore, LiveNodes, LivenessHold, Stored, Watch } from "../datastore/types.js";
import type { Logger } from "../log/logger.js";
import {
  CLUSTER_ENCRYPTION_NAME,
  findAcknowledgement,
  nodeSchema,
  type Acknowledgement,
  type ClusterEncryption,
  type Node,
  type NodeInput,
  type ResourceByKind,
} from "../model/index.js";
import { fromStored, resolveSelectors } from "../policy/index.js";
import {
  DesiredMemo,
  desiredState,
  epochsNeeded,
  sessionsFrom,
  type AgentSettings,
  type NodeSelection,
} from "./desired.js";
import {
  COALESCE_MS,
  KEY_BATCH_MS,
  RETRY_AFTER_FAILURE_MS,
  coalesceDelay,
  decideAfterReconcile,
  needsSessions,
  planKeys,
  stillAwaited,
  wakeFor,
  livenessWakes,
  RESYNC_MS,
  resyncDelay,
  type AfterReconcileDecision,
} from "./decide.js";
import { SelectionTracker } from "./selection.js";
import { TunnelTracker, type TunnelReport } from "./tunnels.js";
import { WorkloadGate, type TunnelView } from "./gate.js";
import { chainText } from "../errors/describe.js";
import { FailureTracker } from "./failures.js";
import { hostReport } from "./host-report.js";
import {
  describeRefusal,
  standingClaims,
  vetClaims,
  type AuthoritySource,
  type RefusedClaim,
  type StandingClaims,
} from "./claims.js";

/**
 * Whether writing `next` over `stored` changes nothing: compared as validated (defaults applied),
 * so that a write happens only on a real change.
 */
function sameNode(next: NodeInput, stored: Node): boolean {
  // Most calls compare a record built from the stored one with nothing changed: same JSON, no parse.
  if (JSON.stringify(next) === JSON.stringify(stored)) return true;
  const parsed = nodeSchema.safeParse(next);
  return parsed.success && JSON.stringify(parsed.data) === JSON.stringify(stored);
}

/** The kinds the agent watches. */
const WATCHED = ["nodes", "clusterencryptions", "encryptionpolicies", "services", "endpoints"] as const;
type WatchedKind = (typeof WATCHED)[number];

/** How long a heartbeat waits for the data plane's peer counters (tunnel report). */
const OBSERVE_MS = 2000;

/** The node's key pairs by epoch; private keys stay in 0600 files on this node. */
export interface EpochKeys {
  /** Makes (and persists) the key pair of `epoch` if it is missing; returns its public key (base64). */
  ensure(epoch: number): Promise<string>;
  /** The private key of `epoch` (throws if absent). */
  privateKey(epoch: number): Buffer;
  /** Deletes the key files of every epoch not in `keep`. */
  retain(keep: readonly number[]): Promise<void>;
}

export interface AgentOptions {
  settings: AgentSettings;
  /** The node's own description, published at start. */
  self: Pick<NodeInput, "underlay" | "podCIDRs" | "capabilities">;
  store: Datastore;
  backend: DataplaneBackend;
  keys: EpochKeys;
  /** Readings and timers (every timer of the agent runs on it). */
  clock: Clock;
  logger: Logger;
  /**
   * Heartbeat period: how often the node's liveness record is renewed and its status looked at
   * (written only when it changed). Default 5 s; the record lives DEFAULT_TIMING.livenessMs (15 s)
   * after a renewal.
   */
  heartbeatMs?: number;
  /**
   * A full pass runs at least this often even without changes (repairs what was altered behind
   * our back): this long after the last pass, whatever started it, or between phases longer after
   * a slow pass (decide.ts resyncDelay). Default {@link RESYNC_MS}.
   */
  resyncMs?: number;
  /** How long a watch event waits for others before the pass it asks for. Default {@link COALESCE_MS}. */
  coalesceMs?: number;
  /**
   * Follows what the cluster's authority assigned each node (Kubernetes: the Nodes' pod CIDRs and
   * addresses), calling `onChange` when that changes; peers' claims are vetted against it
   * (src/agent/claims.ts). Without it (local, etcd) only overlapping claims are refused.
   */
  authority?: (onChange: () => void) => Promise<AuthoritySource>;
  /**
   * Workload gating (src/agent/gate.ts): told of every heartbeat's tunnel report, the agent keeps
   * `status.workloadGate` of its record "closed" until the tunnels are up, then "open" (the
   * controller taints or untaints the Node). Default false: the record has no wish.
   */
  workloadGate?: boolean;
}

/**
 * The node agent (docs/design.md#components): publishes its public keys, watches nodes and the cluster
 * configuration, computes the desired data-plane state, reconciles it through its backend and
 * acknowledges phases. Event handlers only record that something changed; one loop applies. What
 * to write, reconcile and when to wake is decided by the pure functions of decide.ts; this class
 * gathers their inputs, does the I/O and arms the timers, all on `clock`.
 */
export class Agent {
  private readonly watches: Array<Pick<Watch, "close">> = [];
  /** This node's liveness record, renewed on every beat of the heartbeat timer. */
  private hold: LivenessHold | undefined;
  /** The renewal of {@link Agent.hold} under way, if any: one at a time. */
  private renewing: Promise<void> | undefined;
  /** Which nodes are live (their liveness records). */
  private live: LiveNodes = { has: () => false, close: async () => {} };
  /** The heartbeat timer, re-armed after each beat. */
  private beat: Timer | undefined;
  /** The heartbeat under way, if any: one at a time (see {@link Agent.heartbeat}). */
  private beating: Promise<void> | undefined;
  /** A heartbeat was asked for while one was under way: one more follows it. */
  private beatAgain = false;
  private dirty = true;
  private running = false;
  /** Settles when the running loop (or hand-over) ends. */
  private idle: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastErrors: string[] = [];
  /** Failed passes: logged once per distinct failure, counted, published in the node's status. */
  private readonly failures: FailureTracker;
  /** What the agent watches, as last seen (each relist replaces a kind's map). */
  private readonly seen: { [K in WatchedKind]: Map<string, ResourceByKind[K]> } = {
    nodes: new Map(),
    clusterencryptions: new Map(),
    encryptionpolicies: new Map(),
    services: new Map(),
    endpoints: new Map(),
  };
  /** The periodic full pass, re-armed after every pass. */
  private resync: Timer | undefined;
  /** A pass due at a time (a recheck, a batch of keys): the timer and when it fires. */
  private due: { timer: Timer; at: number } | undefined;
  private coalesce: Timer | undefined;
  /** After a failed pass: no pass until it fires (RETRY_AFTER_FAILURE_MS), then a full one. */
  private holdOff: Timer | undefined;
  /** What the passes derived from each node (desired.ts), for the next pass. */
  private readonly memo = new DesiredMemo();
  /** In prepare: the live peers whose key for the target epoch the last pass did not have. */
  private awaitingKeys = new Set<string>();
  /** How long the last pass took (wall clock, ms). */
  private lastPassMs = 0;
  private readonly selection = new SelectionTracker();
  /** The selector-set hash this node last published. */
  private publishedSelection: string | undefined;
  /** The host-encryption report this node last published (JSON of src/agent/host-report.ts). */
  private publishedHost: string | undefined;
  /** Data-plane daemons replaced since this agent started, and the last time (for status). */
  private daemonRestarts: { count: number; last?: string } = { count: 0 };
  private authority: AuthoritySource | undefined;
  /** Peers' claims the last pass refused (src/agent/claims.ts), as their descriptions. */
  private refusedNow = new Map<string, RefusedClaim>();
  private readonly tunnels = new TunnelTracker();
  private tunnelsNow: TunnelReport | undefined;
  /** Peers' pod CIDRs the last pass believed: they stand against later overlapping claims. */
  private standing: StandingClaims = new Map();
  /**
   * This node's record as this agent last read or wrote it, while the watch has shown no other
   * version of it since: what {@link publish} judges by instead of reading it again (on 1000 nodes
   * a read per pass and heartbeat of every agent was a tenth of the agents' time). Undefined: read.
   */
  private own: Stored<Node> | undefined;
  /** Watch events of this node's record so far, and the revision of the last (see {@link ownFrom}). */
  private ownEvents = { count: 0, revision: "" };

  /** Workload gating, when on (AgentOptions.workloadGate). */
  private readonly gate: WorkloadGate | undefined;

  constructor(private readonly o: AgentOptions) {
    this.failures = new FailureTracker(() => o.clock.wallNow());
    this.gate =
      o.workloadGate === true
        ? new WorkloadGate(
            {
              publish: (wish) =>
                this.publish((n) =>
                  n.status?.workloadGate === wish
                    ? undefined
                    : { ...n, status: { ...n.status, errors: n.status?.errors ?? [], workloadGate: wish } },
                ),
            },
            o.logger,
          )
        : undefined;
  }

  get name(): string {
    return this.o.settings.node;
  }

  private get nodes(): Map<string, Node> {
    return this.seen.nodes;
  }

  private get cluster(): ClusterEncryption | undefined {
    return this.seen.clusterencryptions.get(CLUSTER_ENCRYPTION_NAME);
  }

  /** Peers' claims the last pass refused and did not apply. */
  get refused(): readonly RefusedClaim[] {
    return [...this.refusedNow.values()];
  }

  async start(): Promise<void> {
    if (this.o.authority !== undefined) this.authority = await this.o.authority(() => this.changed());
    // Live before the record is (re)published: whoever sees the record sees a live node.
    this.hold = await this.o.store.holdLiveness(this.name, DEFAULT_TIMING.livenessMs / 1000);
    await this.publish((n) => n);
    // A node starting or ceasing to be live changes what passes wait for (only then a pass:
    // decide.ts livenessWakes); renewals change nothing.
    this.live = await this.o.store.followLiveness(() => {
      if (livenessWakes(this.cluster, this.name)) this.changed();
    });
    this.watches.push(this.live);
    for (const kind of WATCHED) await this.mirror(kind);
    const beat = this.o.clock.after(this.o.heartbeatMs ?? 5000, () => {
      beat.refresh();
      this.renewLiveness();
      void this.heartbeat();
    });
    this.beat = beat;
    // Every pass is a full reconcile: the periodic one is due only after a quiet period (on 500
    // nodes, a rotation's event-driven passes are enough, and a resync on top is one more each).
    this.armResync();
    await this.loop();
  }

  /** The periodic resync, due {@link resyncDelay} after the last pass (sooner in a phase). */
  private armResync(): void {
    this.resync?.cancel();
    const inPhase = this.cluster !== undefined && this.cluster.phase !== "idle";
    this.resync = this.o.clock.after(
      resyncDelay(this.o.resyncMs ?? RESYNC_MS, this.lastPassMs, inPhase),
      () => {
        this.dirty = true;
        void this.loop();
      },
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.beat?.cancel();
    this.resync?.cancel();
    this.due?.timer.cancel();
    this.coalesce?.cancel();
    this.holdOff?.cancel();
    this.authority?.close();
    this.hold?.release();
    await Promise.all(this.watches.map((w) => w.close()));
    await this.o.backend.close();
  }

  /** Keeps `this.seen[kind]` equal to the datastore: list, then watch from the list's revision. */
  private async mirror<K extends WatchedKind>(kind: K): Promise<void> {
    const col = this.o.store.collection(kind);
    const map = this.seen[kind] as Map<string, ResourceByKind[K]>;
    const relist = async (): Promise<void> => {
      const list = await col.list();
      // The watch that kept the cached record of this node current is gone.
      if (kind === "nodes") this.own = undefined;
      map.clear();
      for (const item of list.items) map.set(item.key, item.value);
      this.changed();
      const w = await col.watch(list.revision, {
        event: (e) => {
          const before = map.get(e.key);
          // Another version of this node's record than the one publish() last read or wrote (a
          // write of someone else's, or an older one of its own still on its way): read it again.
          if (kind === "nodes" && e.key === this.name) {
            this.ownEvents = { count: this.ownEvents.count + 1, revision: e.revision };
            if (e.revision !== this.own?.revision) this.own = undefined;
          }
          if (e.type === "DELETED") map.delete(e.key);
          else if (e.type !== "INVALID") map.set(e.key, e.object.value);
          else this.o.logger.warn({ kind, key: e.key, err: e.error }, "ignoring invalid object");
          const after = map.get(e.key);
          if (kind === "nodes") {
            const { wake, keyArrived } = wakeFor(before as Node | undefined, after as Node | undefined, {
              self: this.name,
              cluster: this.cluster,
              awaitingKeys: this.awaitingKeys,
            });
            if (keyArrived !== undefined) this.awaitingKeys.delete(keyArrived);
            if (wake === "urgent") {
              this.passNow();
              void this.loop();
              return;
            }
            if (wake === "batch") this.passWithin(KEY_BATCH_MS);
            if (wake !== "now") return;
          }
          this.changed();
        },
        gone: () => {
          void relist();
        },
        error: (err) => this.o.logger.warn({ kind, err }, "watch problem; retrying"),
      });
      this.watches.push(w);
    };
    await relist();
  }

  /**
   * Selective encryption: the selector set from policies, services and endpoints as stored, and
   * what of it to install now (src/agent/selection.ts); `hash` is what this node publishes once
   * installed.
   */
  private selectionNow(): { selection: NodeSelection; hash: string } {
    const policies = [...this.seen.encryptionpolicies.values()].map(fromStored);
    const { selectors } = resolveSelectors({
      policies,
      services: [...this.seen.services.values()],
      endpoints: [...this.seen.endpoints.values()],
      pods: [],
    });
    const hash = selectionHash(selectors);
    const everyone = [...this.nodes.values()]
      .filter((n) => n.name === this.name || isLive(n, this.live))
      .every((n) => (n.name === this.name ? this.publishedSelection : n.status?.selection) === hash);
    return { selection: this.selection.update(selectors, everyone), hash };
  }

  /**
   * IPsec: when an outbound SA of the current epoch nears the end of its sequence numbers, asks
   * the controller for a rotation now (docs/design.md#keys-and-rotation), once per epoch.
   */
  private async askForEarlyRotation(c: ClusterEncryption): Promise<void> {
    const a = applied(c);
    if (c.phase !== "idle" || !a.enabled || a.mode !== "ipsec") return;
    if (this.nodes.get(this.name)?.status?.rotationWanted?.epoch === c.epoch) return;
    const running = (await this.o.backend.observe())
      .filter((p) => p.epoch === c.epoch && p.rekeySoon === true)
      .map((p) => p.node);
    if (running.length === 0) return;
    const rotationWanted = {
      epoch: c.epoch,
      reason: `ESP sequence numbers of the SAs to ${running.join(", ")} near their end`.slice(0, 256),
      at: new Date(this.o.clock.wallNow()).toISOString(),
    };
    const asked = await this.publish((n) =>
      n.status?.rotationWanted?.epoch === c.epoch
        ? undefined
        : { ...n, status: { ...n.status, errors: n.status?.errors ?? [], rotationWanted } },
    );
    if (asked) this.o.logger.warn({ epoch: c.epoch, peers: running }, "asking for an early rotation");
  }

  /**
   * IPsec: publishes the SA instance the data plane holds, once it holds it. The data plane
   * installed its inbound SAs under it in the reconcile just done, so peers that see the new value
   * can switch to the new keys at once. With no IPsec data plane left (a switch to WireGuard) the
   * value is withdrawn: the next IPsec data plane has a new one, and peers must wait for it rather
   * than install SAs under a stale one (which a prepare phase would acknowledge, and lose traffic).
   */
  private async publishSaInstance(): Promise<void> {
    const saInstance = this.o.backend.saInstance();
    const wrote = await this.publish((n) => {
      if (n.saInstance === saInstance) return undefined;
      if (saInstance !== undefined) return { ...n, saInstance };
      const { saInstance: _withdrawn, ...rest } = n;
      return rest;
    });
    if (wrote) this.o.logger.info({ saInstance: saInstance ?? null }, "published SA instance");
  }

  /**
   * Read-modify-write of our own Node object. `change` returns undefined when the node as stored
   * already says what it would write: then nothing is written (every write of a Node wakes every
   * agent, and the watch cache this agent judges by may lag its own last write). Returns whether
   * it wrote.
   */
  private async publish(change: (n: NodeInput) => NodeInput | undefined): Promise<boolean> {
    const col = this.o.store.collection("nodes");
    for (let attempt = 0; attempt < 5; attempt++) {
      // The record as last read or written, unless the watch showed another version since; a
      // write based on a stale one fails its revision check and reads again.
      const cur = this.own ?? (await this.ownFrom(() => col.get(this.name)));
      const base: NodeInput = cur?.value ?? { name: this.name, underlay: this.o.self.underlay };
      // Liveness is the node's liveness record (holdLiveness), not a field of the record: a
      // heartbeat an older agent wrote here is dropped with the next write.
      const { heartbeat: _old, ...rest } = base;
      const refreshed: NodeInput = {
        ...rest,
        underlay: this.o.self.underlay,
        podCIDRs: this.o.self.podCIDRs,
        capabilities: this.o.self.capabilities,
        backend: this.o.backend.kind,
      };
      const next = change(refreshed);
      // Nothing to write unless the change or the refreshed fields differ from what is stored:
      // every write of a Node is an event at every agent.
      if (
        cur !== undefined &&
        (next === undefined ? sameNode(refreshed, cur.value) : sameNode(next, cur.value))
      )
        return false;
      try {
        await this.ownFrom(() =>
          cur === undefined
            ? col.create(next ?? refreshed)
            : col.update(next ?? refreshed, { revision: cur.revision }),
        );
        return true;
      } catch (e) {
        // Lost a race with another write of our node: read again and retry.
        this.own = undefined;
        if (!isConflictError(e) && !isNotFoundError(e) && !isAlreadyExistsError(e)) throw e;
      }
    }
    return false;
  }

  /**
   * Reads or writes this node's record and keeps the result as {@link own}, unless the watch showed
   * a version of it other than the result meanwhile: that one may be newer (another writer's, right
   * after this write), and then the next publish reads.
   */
  private async ownFrom<T extends Stored<Node> | undefined>(op: () => Promise<T>): Promise<T> {
    const before = this.ownEvents.count;
    const r = await op();
    this.own = this.ownEvents.count === before || this.ownEvents.revision === r?.revision ? r : undefined;
    return r;
  }

  /**
   * A data-plane daemon died (noticed at once, src/dataplane/node/daemon-watch.ts): a pass now,
   * not after the coalescing delay, which starts a new daemon and pushes it the full state; the
   * restart is counted in the node's status record (on from the count it holds: an earlier agent's
   * restarts count too).
   */
  daemonDied(ifname: string): void {
    if (this.stopped) return;
    const recorded = this.nodes.get(this.name)?.status?.daemonRestarts?.count ?? 0;
    this.daemonRestarts = {
      count: Math.max(this.daemonRestarts.count, recorded) + 1,
      last: new Date(this.o.clock.wallNow()).toISOString(),
    };
    this.o.logger.warn(
      { ifname, restarts: this.daemonRestarts.count },
      "data-plane daemon died; starting a new one with the full state",
    );
    this.passNow();
    void this.loop().then(() => this.heartbeat());
  }

  /**
   * A planned restart of this node's userspace data-plane daemons (an upgrade: SIGUSR2 to the
   * agent, `podcrypt cluster upgrade-node`): once the pass in progress ends, each daemon is handed
   * over to a successor that takes its device, socket and sessions or SAs (nothing lost, no
   * restart counted, no new SA instance), one after another; then a pass runs at once. Returns
   * the interfaces handed over; a failure is logged (the watch replaces a daemon lost on the way
   * as after a death).
   */
  async handOverDaemons(): Promise<string[]> {
    const handOver = this.o.backend.handOverDaemons;
    if (handOver === undefined || this.stopped) return [];
    while (this.running) await this.idle;
    this.running = true;
    let release = (): void => undefined;
    this.idle = new Promise((resolve) => (release = resolve));
    let done: string[] = [];
    try {
      this.o.logger.info("planned restart of the data-plane daemons: handing each over to a successor");
      done = await handOver.call(this.o.backend);
      this.o.logger.info({ interfaces: done }, "data-plane daemons handed over");
    } catch (e) {
      this.o.logger.error({ err: chainText(e) }, "handing the data-plane daemons over failed");
    } finally {
      this.running = false;
      release();
    }
    this.passNow();
    await this.loop();
    return done;
  }

  /** Asks for a pass at once, skipping the coalescing delay (the loop runs it next). */
  private passNow(): void {
    this.dirty = true;
    this.coalesce?.cancel();
    this.coalesce = undefined;
  }

  /**
   * One heartbeat at a time: renews the node's liveness, publishes its status and tunnel report
   * and tells the workload gate. Asked for while one is under way (the timer's next beat on a slow
   * store, or a change to report at once), it runs once more after that one, with what is new by
   * then: heartbeats never overlap, so a store that answers slowly is not sent more of them.
   */
  private heartbeat(): Promise<void> {
    if (this.beating !== undefined) {
      this.beatAgain = true;
      return this.beating;
    }
    const run = async (): Promise<void> => {
      do {
        this.beatAgain = false;
        await this.beatOnce();
      } while (this.beatAgain && !this.stopped);
    };
    const beating = run().finally(() => {
      this.beating = undefined;
    });
    this.beating = beating;
    return beating;
  }

  /**
   * Renews the node's liveness, on every beat of the clock and apart from the heartbeat's status:
   * that one waits for a pass under way, and a slow pass must not let the liveness lapse. A
   * renewal still under way when the next is due (a slow store) is not joined by another.
   */
  private renewLiveness(): void {
    const hold = this.hold;
    if (hold === undefined || this.renewing !== undefined) return;
    // Renewing the lease writes no record (on etcd): no watch anywhere sees it.
    this.renewing = hold
      .renew()
      .catch((e: unknown) => this.o.logger.warn({ err: e }, "renewing the node's liveness failed"))
      .finally(() => {
        this.renewing = undefined;
      });
  }

  /**
   * Publishes the node's status as the last pass left it. A pass under way is waited for first:
   * while it runs, the data plane holds part of its changes (peers set, routes not yet), and a
   * status read then would show tunnels up beside no failure although the pass is about to fail;
   * `cluster up` took that for a settled node.
   */
  private async beatOnce(): Promise<void> {
    while (this.running && !this.stopped) await this.idle;
    if (this.stopped) return;
    const restarts = this.daemonRestarts.count === 0 ? {} : { daemonRestarts: { ...this.daemonRestarts } };
    const dropped = ((await this.o.backend.strictDrops?.().catch(() => undefined)) ?? [])
      .filter((d) => d.packets > 0)
      .slice(0, 4096);
    const drops = dropped.length === 0 ? {} : { plaintextDrops: dropped };
    const failure = this.failures.state;
    const reconcileError = failure === undefined ? {} : { reconcileError: { ...failure } };
    // What `podcrypt status` shows as refused is what the agents report here (at most 256).
    const refusedNow = this.refused.slice(0, 256).map((r) => ({ ...r }));
    const refused = refusedNow.length === 0 ? {} : { refusedClaims: refusedNow };
    try {
      const tunnels = await this.judgeTunnels();
      await this.publish((n) => {
        // A failure (or refusal) an earlier agent of this node published is not this one's.
        const {
          reconcileError: _earlier,
          tunnels: old,
          refusedClaims: _refused,
          workloadGate: wish,
          ...status
        } = n.status ?? {};
        // The judgement's time moves only with the judgement: an unchanged one writes nothing.
        const keep =
          tunnels !== undefined &&
          old !== undefined &&
          JSON.stringify(old.families) === JSON.stringify(tunnels.families);
        return {
          ...n,
          status: {
            ...status,
            mtu: this.o.settings.mtu,
            errors: this.lastErrors,
            ...restarts,
            ...reconcileError,
            ...drops,
            ...refused,
            ...(tunnels === undefined ? {} : { tunnels: keep ? old : tunnels }),
            // Without gating this agent wishes nothing: an earlier agent's "closed" would keep
            // the Node tainted for good.
            ...(this.gate === undefined || wish === undefined ? {} : { workloadGate: wish }),
          },
        };
      });
      this.tunnelsNow = tunnels;
    } catch (e) {
      this.o.logger.warn({ err: e }, "heartbeat failed");
    }
    await this.gate?.observe(this.tunnelView());
  }

  /** What the gate is told: the last tunnel report, or why there is none. */
  private tunnelView(): TunnelView {
    const c = this.cluster;
    if (c === undefined || c.applied === undefined) return { kind: "unknown" };
    if (!applied(c).enabled) return { kind: "plaintext" };
    return this.tunnelsNow === undefined ? { kind: "unknown" } : { kind: "report", report: this.tunnelsNow };
  }

  /**
   * The tunnels to the live peers as the data plane shows them now (src/agent/tunnels.ts);
   * undefined while encryption is off or the agent has not reconciled yet. A data plane that does
   * not answer leaves every peer's counters unread: they count as pending.
   */
  private async judgeTunnels(): Promise<TunnelReport | undefined> {
    const c = this.cluster;
    if (c === undefined || c.applied === undefined || !applied(c).enabled) return undefined;
    const now = this.o.clock.wallNow();
    const peers = [...this.nodes.values()].filter((n) => n.name !== this.name && isLive(n, this.live));
    // A daemon that does not answer (stopped) must not hold the heartbeat past the liveness window.
    let timer: Timer | undefined;
    const observed = await Promise.race([
      this.o.backend.observe(),
      new Promise<never>((_, reject) => {
        timer = this.o.clock.after(OBSERVE_MS, () => reject(new Error(`no answer within ${OBSERVE_MS} ms`)));
      }),
    ])
      .catch((e: unknown) => {
        this.o.logger.warn({ err: (e as Error).message }, "reading the data plane's peers failed");
        return [];
      })
      .finally(() => timer?.cancel());
    return this.tunnels.observe(observed, peers, now);
  }

  /** The tunnel report the last heartbeat published; undefined before one or with encryption off. */
  get tunnelReport(): TunnelReport | undefined {
    return this.tunnelsNow;
  }

  /**
   * Logs claims refused for the first time (and those no longer refused), keeps them for metrics
   * and the node's status record; a change is reported at once (a heartbeat), not at the next one.
   */
  private noteRefused(refused: readonly RefusedClaim[]): void {
    const now = new Map(refused.map((r) => [describeRefusal(r), r]));
    let changed = now.size !== this.refusedNow.size;
    for (const [text, r] of now)
      if (!this.refusedNow.has(text)) {
        this.o.logger.warn({ peer: r.node, claim: r.value }, text);
        changed = true;
      }
    for (const [text, r] of this.refusedNow)
      if (!now.has(text)) this.o.logger.info({ peer: r.node, claim: r.value }, `no longer refused: ${text}`);
    this.refusedNow = now;
    if (changed) void this.heartbeat();
  }

  /** A watched object changed: one pass soon, for this change and those right behind it. */
  private changed(): void {
    this.dirty = true;
    if (this.coalesce !== undefined || this.stopped) return;
    this.coalesce = this.o.clock.after(
      coalesceDelay(this.o.coalesceMs ?? COALESCE_MS, this.lastPassMs),
      () => {
        this.coalesce = undefined;
        void this.loop();
      },
    );
  }

  /** Runs a pass within `ms`, unless one is due sooner already. */
  private passWithin(ms: number): void {
    if (this.stopped) return;
    const at = this.o.clock.now() + ms;
    if (this.due !== undefined && this.due.at <= at) return;
    this.due?.timer.cancel();
    this.due = {
      at,
      timer: this.o.clock.after(ms, () => {
        this.due = undefined;
        this.dirty = true;
        void this.loop();
      }),
    };
  }

  /** The apply loop: one pass at a time, again while something changed meanwhile. */
  private async loop(): Promise<void> {
    if (this.running || this.stopped || this.holdOff !== undefined) return;
    this.running = true;
    let release = (): void => undefined;
    this.idle = new Promise((resolve) => (release = resolve));
    try {
      // Changes seen during a pass wait for their coalescing timer, which runs the loop again; after
      // a failed pass, the hold-off timer does.
      while (this.dirty && !this.stopped && this.coalesce === undefined && this.holdOff === undefined) {
        this.dirty = false;
        // This pass sees every change so far: a pass due later for one of them is not needed.
        this.due?.timer.cancel();
        this.due = undefined;
        const started = this.o.clock.now();
        await this.pass();
        this.lastPassMs = this.o.clock.now() - started;
        if (!this.stopped) this.armResync();
      }
    } finally {
      this.running = false;
      release();
    }
  }

  /** One pass: keys, desired state, reconcile, acknowledgement. */
  private async pass(): Promise<void> {
    const c = this.cluster;
    // Until the controller has initialised the cluster there is no epoch to key.
    if (c === undefined || c.applied === undefined) return;
    try {
      const needed = epochsNeeded(c);
      const publicKeys: Record<string, string> = {};
      for (const e of needed) publicKeys[String(e)] = await this.o.keys.ensure(e);
      const keyPlan = planKeys(this.nodes.get(this.name), needed, publicKeys);
      for (const e of keyPlan.replaced)
        this.o.logger.warn(
          { epoch: e },
          "this node's key differs from the one it published (key file deleted, corrupt or replaced): publishing the new key, peers re-key",
        );
      const wanted = JSON.stringify(publicKeys);
      const keysChange = (n: NodeInput): NodeInput | undefined =>
        JSON.stringify(n.publicKeys) === wanted ? undefined : { ...n, publicKeys };
      if (keyPlan.write === "now") await this.publish(keysChange);
      let pruneLater = keyPlan.write === "with-acknowledgement";
      // Only what a peer may claim is used in this pass, from desired state to acknowledgement.
      const vetted = vetClaims([...this.nodes.values()], this.name, this.authority?.lookup, this.standing);
      const { nodes, refused } = vetted;
      this.standing = standingClaims(vetted);
      this.noteRefused(refused);
      const takeover = needsSessions(c);
      const sessions = sessionsFrom(takeover ? await this.o.backend.observe() : []);
      const selective = c.encryption === "selective" ? this.selectionNow() : undefined;
      const desired = desiredState(
        this.o.settings,
        c,
        nodes,
        sessions,
        selective?.selection,
        this.memo,
        refused.filter((r) => r.field === "podCIDRs").map((r) => r.value),
      );
      await this.o.backend.reconcile(desired, (e) => this.o.keys.privateKey(e));
      await this.publishSaInstance();
      this.lastErrors = [];
      if (selective !== undefined && this.publishedSelection !== selective.hash) {
        // Installed: tell the others. Their publishing (a Node event here) is what settles the set.
        await this.publish((n) =>
          n.status?.selection === selective.hash
            ? undefined
            : { ...n, status: { ...n.status, errors: n.status?.errors ?? [], selection: selective.hash } },
        );
        this.publishedSelection = selective.hash;
        this.o.logger.info({ selection: selective.hash }, "selected traffic installed");
      }
      // What `podcrypt status` shows of host encryption: what this pass installed, written on change.
      const host = hostReport(desired, nodes);
      const hostJson = JSON.stringify(host);
      if (this.publishedHost !== hostJson) {
        await this.publish((n) =>
          JSON.stringify(n.status?.hostEncryption) === hostJson
            ? undefined
            : { ...n, status: { ...n.status, errors: n.status?.errors ?? [], hostEncryption: host } },
        );
        this.publishedHost = hostJson;
      }
      const now = this.o.clock.wallNow();
      const live = nodes.filter((n) => n.name !== this.name && isLive(n, this.live));
      const acknowledge = async (a: NonNullable<AfterReconcileDecision["acknowledge"]>): Promise<void> => {
        const from = a.notBefore === undefined ? -Infinity : Date.parse(a.notBefore);
        const ack = { epoch: a.epoch, phase: a.phase, at: new Date(Math.max(now, from)).toISOString() };
        const same = (x: Acknowledgement) => x.epoch === ack.epoch && x.phase === ack.phase;
        // The watch cache may not show our own last write yet: judge by the node as just read, so
        // an acknowledgement is written once (duplicates would push older ones out of the history);
        // one from before `notBefore` is replaced.
        let acknowledging = false;
        const wrote = await this.publish((n) => {
          const keyed = pruneLater ? (keysChange(n) ?? n) : n;
          acknowledging = findAcknowledgement(n, ack.epoch, ack.phase, a.notBefore) === undefined;
          if (acknowledging)
            return {
              ...keyed,
              acknowledgements: [...(n.acknowledgements ?? []).filter((x) => !same(x)), ack].slice(-16),
            };
          return keyed === n ? undefined : keyed;
        });
        if (wrote) pruneLater = false;
        if (wrote && acknowledging)
          this.o.logger.info({ epoch: ack.epoch, phase: ack.phase }, "acknowledged phase");
      };
      const next = decideAfterReconcile({
        cluster: c,
        self: this.name,
        me: this.nodes.get(this.name),
        live,
        desired,
        takeover,
      });
      if (next.awaitingKeys !== undefined && c.target !== undefined) {
        const { awaiting, complete } = stillAwaited(next.awaitingKeys, c.target.epoch, this.nodes);
        this.awaitingKeys = awaiting;
        if (complete) this.changed();
      }
      if (next.acknowledge !== undefined) await acknowledge(next.acknowledge);
      if (next.recheckInMs !== undefined) this.passWithin(next.recheckInMs);
      if (pruneLater) await this.publish(keysChange);
      await this.askForEarlyRotation(c);
      await this.o.keys.retain(needed);
      const news = this.failures.succeeded();
      if (news.kind === "cleared") {
        const f = news.failure;
        this.o.logger.info(
          { failedPasses: f.count, since: f.since },
          `reconcile succeeds again after ${f.count} failed ${f.count === 1 ? "pass" : "passes"}`,
        );
        void this.heartbeat();
      }
    } catch (e) {
      this.lastErrors = [chainText(e).slice(0, 1000)];
      // The same failure every pass is logged once and counted (status shows the count); a
      // different one, or the end of it, is logged again.
      const news = this.failures.failed(e);
      if (news.kind === "new") {
        const r = news.replaced;
        this.o.logger.error(
          {
            err: e,
            ...(r === undefined ? {} : { replaces: { message: r.message, count: r.count, since: r.since } }),
          },
          "reconcile failed; full resync next pass (the same failure again is counted, not logged)",
        );
        void this.heartbeat();
      }
      // The next pass (a full one) after a pause, on the clock: the loop waits for this timer.
      this.holdOff = this.o.clock.after(RETRY_AFTER_FAILURE_MS, () => {
        this.holdOff = undefined;
        this.dirty = true;
        void this.loop();
      });
    }
  }
}
