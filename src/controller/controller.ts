import { FailureTracker } from "../agent/failures.js";
import type { Clock } from "../clock.js";
import { isConflictError } from "../datastore/errors.js";
import type { Datastore, LeaderElection, LiveNodes, Watch } from "../datastore/types.js";
import type { Logger } from "../log/logger.js";
import {
  CLUSTER_ENCRYPTION_NAME,
  type ClusterEncryption,
  type ClusterEncryptionInput,
  type Node,
} from "../model/index.js";
import { DEFAULT_TIMING, type PhaseTiming } from "../protocol/index.js";
import { decide, MAX_BLIND_MS, type Sight } from "./phases.js";
import { PolicyStatusController } from "./policy-status.js";
import { WorkloadGateController, type NodeTaintWriter } from "./workload-gate.js";

/** Default name of the controller's leader election. */
export const CONTROLLER_ELECTION = "podcrypt-controller";

export interface ControllerOptions {
  store: Datastore;
  identity: string;
  clock: Clock;
  logger: Logger;
  timing?: PhaseTiming;
  /** Leadership lease TTL in seconds: a crashed leader is replaced within about this. Default 5. */
  leaseTtlSeconds?: number;
  /** Name of the leader election (Kubernetes: the Lease `podcrypt-leader-<name>`). Default CONTROLLER_ELECTION. */
  electionName?: string;
  /**
   * The ClusterEncryption the leader creates when it finds none (the configuration file's
   * `cluster` section). Default: every field at its default (enabled, wireguard, all traffic).
   */
  seed?: Omit<ClusterEncryptionInput, "name">;
  /** Write policy status (Accepted, Programmed) while leader. Default true. */
  policyStatus?: boolean;
  /**
   * Workload gating (src/controller/workload-gate.ts): writes the not-ready taint of a Kubernetes
   * Node as its agent's record asks. Only the kubernetes datastore has Nodes: without it (the
   * default) the records' wishes are not applied.
   */
  nodeTaint?: NodeTaintWriter;
}

/** What the controller's health endpoints look at. */
export interface ControllerHealth {
  /** Whether the election runs (a standby that campaigns is healthy). */
  campaigning: boolean;
  leader: boolean;
  /** Wall-clock ms of the last step that succeeded, and of the first of the failures since, if any. */
  lastStepOkAt: number | undefined;
  failingSince: number | undefined;
  /** Steps that threw, in total. */
  stepFailures: number;
  /** Policy status writes made and failed, in total. */
  policyStatusWrites: number;
  policyStatusFailures: number;
  /**
   * Runs (rotation, enable, disable) this controller finished while leading: all of them, and
   * those that finished with a node timed out (it did not acknowledge a phase in time).
   */
  runsCompleted: number;
  runsFailed: number;
  /** Nodes this controller timed out in a phase (each node and phase once). */
  phaseTimeouts: number;
}

/** The longest the leader goes without looking at the cluster (one read and a pure decision). */
const RESYNC_MS = 5_000;

/**
 * The controller (docs/design.md#components): leader-elected; drives enable, disable and rotation
 * through prepare → switch → retire. It holds no keys: it only reads nodes' acknowledgements and
 * writes the cluster's phase.
 */
export class Controller {
  private election: LeaderElection | undefined;
  private readonly watches: Array<Pick<Watch, "close">> = [];
  /** The nodes as their watch delivered them (while leader). */
  private readonly nodes = new Map<string, Node>();
  /** Which nodes are live (while leader). */
  private liveness: LiveNodes | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private dirty = false;
  private stopped = false;
  private policyStatus: PolicyStatusController | undefined;
  private gates: WorkloadGateController | undefined;
  private lastStepOkAt: number | undefined;
  private failingSince: number | undefined;
  private stepFailures = 0;
  private runsCompleted = 0;
  private runsFailed = 0;
  private phaseTimeouts = 0;
  /** Failed steps: logged once per distinct failure, then counted. */
  private readonly failures: FailureTracker;
  /** When this controller last (re)gained sight of the datastore (src/controller/phases.ts Sight). */
  private sight: Sight | undefined;
  /** The nodes live at the last good step (for `sight` after an outage). */
  private liveAtLastStep: ReadonlySet<string> | undefined;
  /** The controller's steps failed since the last good one (the datastore may be gone). */
  private blind = false;
  /** The last deferral logged, so a waiting run is logged once, not at every look. */
  private lastDeferred: string | undefined;
  private readonly statusCounters = { writes: 0, failures: 0 };

  constructor(private readonly o: ControllerOptions) {
    this.failures = new FailureTracker(() => o.clock.wallNow());
  }

  get isLeader(): boolean {
    return this.election?.isLeader ?? false;
  }

  /** The name of the election it campaigns in. */
  get electionName(): string {
    return this.o.electionName ?? CONTROLLER_ELECTION;
  }

  /** For /healthz, /readyz and /metrics. */
  health(): ControllerHealth {
    const live = this.policyStatus?.counters ?? { writes: 0, failures: 0 };
    return {
      campaigning: this.election !== undefined && !this.stopped,
      leader: this.isLeader,
      lastStepOkAt: this.lastStepOkAt,
      failingSince: this.failingSince,
      stepFailures: this.stepFailures,
      runsCompleted: this.runsCompleted,
      runsFailed: this.runsFailed,
      phaseTimeouts: this.phaseTimeouts,
      policyStatusWrites: this.statusCounters.writes + live.writes,
      policyStatusFailures: this.statusCounters.failures + live.failures,
    };
  }

  /** Joins the election; acts only while leader. Resolves once campaigning started. */
  async start(): Promise<void> {
    this.election = await this.o.store.campaign(this.electionName, this.o.identity, {
      ttlSeconds: this.o.leaseTtlSeconds ?? 5,
    });
    this.election.onChange((leader) => {
      this.o.logger.info({ identity: this.o.identity, leader }, leader ? "became leader" : "lost leadership");
      if (leader) void this.lead();
      else void this.unwatch();
    });
    if (this.election.isLeader) await this.lead();
  }

  async stop(resign = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.unwatch();
    if (resign) await this.election?.resign();
  }

  private async unwatch(): Promise<void> {
    const ws = this.watches.splice(0);
    this.liveness = undefined;
    this.gates?.stop();
    this.gates = undefined;
    const ps = this.policyStatus;
    this.policyStatus = undefined;
    if (ps !== undefined) {
      this.statusCounters.writes += ps.counters.writes;
      this.statusCounters.failures += ps.counters.failures;
    }
    await Promise.all([...ws.map((w) => w.close()), ps?.stop()]);
  }

  private async lead(): Promise<void> {
    // A new leader cannot know what it missed: it gives the nodes time to report first. A leader
    // elected again (its campaign lapsed in a datastore outage) knows which nodes were live at its
    // last good step; one that never led waits for every node with a record (phases.ts Sight).
    const now = this.o.clock.wallNow();
    this.sight = {
      since: now,
      lostAt: this.lastStepOkAt ?? now - MAX_BLIND_MS,
      ...(this.liveAtLastStep === undefined ? {} : { liveAtLoss: this.liveAtLastStep }),
    };
    const seedClusters = this.o.store.collection("clusterencryptions");
    if ((await seedClusters.get(CLUSTER_ENCRYPTION_NAME)) === undefined) {
      await seedClusters
        .create({ ...this.o.seed, name: CLUSTER_ENCRYPTION_NAME })
        .then(() => this.o.logger.info({ seed: this.o.seed ?? {} }, "created the cluster configuration"))
        .catch(() => undefined);
    }
    // Liveness records change only when a node starts or stops being live (renewals write none).
    // Its first look already kicks the loop: steps see it (this.liveness) only once the nodes are
    // mirrored below, or a step would judge the phase on no nodes (or on the mirror of an earlier
    // leadership) and find nobody to wait for: a standby that took over after a datastore outage
    // moved prepare on to switch with no node prepared.
    const liveness = await this.o.store.followLiveness(() => this.kick());
    this.watches.push(liveness);
    // Nodes are mirrored from their watch: a step reads the mirror, not a list of every node
    // (on 1000 nodes, each phase's acknowledgements are 1000 events, and steps run back to back).
    const nodes = this.o.store.collection("nodes");
    const mirrorNodes = async (): Promise<void> => {
      const list = await nodes.list();
      this.nodes.clear();
      for (const i of list.items) this.nodes.set(i.key, i.value);
      this.watches.push(
        await nodes.watch(list.revision, {
          event: (e) => {
            if (e.type === "DELETED") this.nodes.delete(e.key);
            else if (e.type !== "INVALID") this.nodes.set(e.key, e.object.value);
            this.kick();
            this.gates?.kick();
          },
          gone: () => void mirrorNodes(),
          error: (err) => this.o.logger.warn({ kind: "nodes", err }, "watch problem; retrying"),
        }),
      );
    };
    await mirrorNodes();
    this.liveness = liveness;
    if (this.o.nodeTaint !== undefined && this.isLeader && !this.stopped) {
      this.gates?.stop();
      this.gates = new WorkloadGateController({
        write: this.o.nodeTaint,
        nodes: () => this.nodes.values(),
        logger: this.o.logger.child({ part: "workload-gate" }),
      });
      this.gates.kick();
    }
    const clusters = this.o.store.collection("clusterencryptions");
    const watchClusters = async (): Promise<void> => {
      const list = await clusters.list();
      this.watches.push(
        await clusters.watch(list.revision, {
          event: () => this.kick(),
          gone: () => void watchClusters(),
          error: (err) => this.o.logger.warn({ kind: "clusterencryptions", err }, "watch problem; retrying"),
        }),
      );
    };
    await watchClusters();
    if (this.o.policyStatus !== false && this.isLeader && !this.stopped) {
      const ps = new PolicyStatusController({
        store: this.o.store,
        clock: this.o.clock,
        logger: this.o.logger.child({ part: "policy-status" }),
      });
      this.policyStatus = ps;
      await ps.start();
    }
    this.kick();
  }

  private kick(): void {
    this.dirty = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      while (this.dirty && !this.stopped && this.isLeader) {
        this.dirty = false;
        if (this.blind) {
          // Seeing again after failed steps: judged as if a new leader, from the last good step.
          const now = this.o.clock.wallNow();
          this.sight = {
            since: now,
            lostAt: this.lastStepOkAt ?? now - MAX_BLIND_MS,
            ...(this.liveAtLastStep === undefined ? {} : { liveAtLoss: this.liveAtLastStep }),
          };
        }
        await this.step();
        this.blind = false;
        this.lastStepOkAt = this.o.clock.wallNow();
        this.failingSince = undefined;
        const news = this.failures.succeeded();
        if (news.kind === "cleared")
          this.o.logger.info(
            { failedSteps: news.failure.count, since: news.failure.since },
            `controller steps succeed again after ${news.failure.count} failed`,
          );
      }
    } catch (e) {
      this.stepFailures++;
      this.blind = true;
      this.failingSince ??= this.o.clock.wallNow();
      // The same failure every retry is logged once and counted; a different one is logged again.
      const news = this.failures.failed(e);
      if (news.kind === "new")
        this.o.logger.error(
          {
            err: e,
            ...(news.replaced === undefined
              ? {}
              : {
                  replaces: {
                    message: news.replaced.message,
                    count: news.replaced.count,
                    since: news.replaced.since,
                  },
                }),
          },
          "controller step failed (the same failure again is counted, not logged)",
        );
      this.schedule(1000);
    } finally {
      this.running = false;
    }
  }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), Math.max(0, Math.min(ms, 2_147_000_000)));
  }

  private async step(): Promise<void> {
    const clusters = this.o.store.collection("clusterencryptions");
    const cur = await clusters.get(CLUSTER_ENCRYPTION_NAME);
    if (cur === undefined) return;
    const live = this.liveness;
    if (live === undefined) return;
    const nodes: Node[] = [...this.nodes.values()];
    const now = this.o.clock.wallNow();
    const d = decide(cur.value, nodes, live, now, this.o.timing ?? DEFAULT_TIMING, this.sight);
    // What was live at this good step is what a later outage's `sight` remembers.
    this.liveAtLastStep = new Set(nodes.filter((n) => live.has(n.name)).map((n) => n.name));
    if (d.deferred !== this.lastDeferred && d.deferred !== undefined)
      this.o.logger.warn({ lagging: cur.value.lagging.map((l) => l.node) }, `run deferred: ${d.deferred}`);
    this.lastDeferred = d.deferred;
    if (d.next !== undefined) {
      try {
        await clusters.update(d.next as ClusterEncryption, { revision: cur.revision });
        this.phaseTimeouts += d.timedOut?.length ?? 0;
        const ended = cur.value.target;
        if (ended !== undefined && cur.value.phase !== "idle" && d.next.phase === "idle") {
          this.runsCompleted++;
          if (d.next.timeouts.some((t) => t.epoch === ended.epoch)) this.runsFailed++;
        }
        this.o.logger.info(
          {
            phase: d.next.phase,
            epoch: d.next.epoch,
            target: d.next.target?.epoch,
            reason: d.reason,
            timedOut: d.timedOut,
            lagging: d.next.lagging.length > 0 ? d.next.lagging.map((l) => l.node) : undefined,
          },
          "cluster phase",
        );
      } catch (e) {
        if (!isConflictError(e)) throw e;
      }
      this.dirty = true;
      return;
    }
    // Look again within RESYNC_MS even when nothing is due: a change whose event was missed (a
    // watch that lapsed and was not yet re-established) is acted on all the same, as a Kubernetes
    // informer's resync does. Heartbeats used to wake the controller every few seconds; liveness on
    // leases writes nothing, so nothing else would.
    this.schedule(Math.min(d.recheckInMs ?? RESYNC_MS, RESYNC_MS));
  }
}
