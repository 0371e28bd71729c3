/**
 * The control plane at scale (issue 3, acceptance 7): N simulated nodes — the real Agent class
 * with a stateful FakeDataplane and in-memory key pairs each — and the real Controller in this
 * process, against a real etcd (Debian's /usr/bin/etcd on free 127.0.0.1 ports, temp data dir).
 *
 * Measures:
 *   - join: a new agent starts → every one of the N data planes holds it as a peer (and the new
 *     node holds all N);
 *   - rotation: `rotate` requested → the cluster is idle at the next epoch and every data plane
 *     holds exactly the new generation with every peer under its published key (the controller's
 *     default timing, so the 2 s retire grace is included).
 * Agents use the production defaults (heartbeat 5 s, resync 10 s) unless told otherwise.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { FakeFabric } from "../../src/dataplane/fake/index.js";
import { DEFAULT_TIMING, type PhaseTiming } from "../../src/controller/phases.js";
import { EtcdDatastore } from "../../src/datastore/etcd/index.js";
import type { Datastore } from "../../src/datastore/types.js";
import { findAcknowledgement, type ClusterEncryption } from "../../src/model/index.js";
import { EtcdTestServer } from "../../test/datastore/etcd-server.js";
import {
  idleAt,
  publishedKeys,
  readCluster,
  requestRotation,
  simController,
  simNode,
  waitUntil,
  type SimNode,
} from "../../test/controlplane/sim.js";

export interface ScaleOptions {
  /** Simulated agents before the join. Default 500. */
  agents: number;
  /** etcd clients the agents share (agent i uses client i mod clients). Default: one per agent up to 50. */
  clients?: number;
  /** Rotations to time. Default 1. */
  rotations?: number;
  heartbeatMs?: number;
  resyncMs?: number;
  timing?: PhaseTiming;
  /** Per-measurement limit. Default 120 s. */
  timeoutMs?: number;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
}

export interface ScaleRotation {
  ms: number;
  /** Time from request to the controller's prepare write, and each phase's length. */
  phasesMs: { request: number; prepare: number; switch: number; retire: number };
  /** From the controller's `idle` write until the last data plane dropped the old generation. */
  tailMs: number;
  /** Per phase: when the slowest node acknowledged, after the phase began (ms). */
  slowestAckMs: { prepare: number; switch: number; retire: number };
  /**
   * Acknowledgements of this epoch written more than once (summed over nodes; a lower bound, the
   * Node keeps only its last 16). Each is a Node write every agent and the controller processes.
   */
  duplicateAcks: number;
  /** Nodes whose prepare acknowledgement was pushed out of their 16-entry history by duplicates. */
  prepareAckEvicted: number;
  timeouts: number;
}

export interface ScaleResult {
  agents: number;
  clients: number;
  heartbeatMs: number;
  startMs: number;
  /** After start, until every data plane holds every peer. */
  initialConvergeMs: number;
  join: { ms: number; joinerMs: number };
  rotations: ScaleRotation[];
  /** Event-loop delay while measuring (ms): this process hosts all agents and the controller. */
  loopDelay: { p50: number; p99: number; max: number };
  /** Reconcile passes per agent during the measurements (mean). */
  passesPerAgent: number;
  rssMb: number;
}

async function ackStats(
  store: Datastore,
  epoch: number,
  c: ClusterEncryption,
): Promise<Pick<ScaleRotation, "slowestAckMs" | "duplicateAcks" | "prepareAckEvicted">> {
  const nodes = (await store.collection("nodes").list()).items.map((i) => i.value);
  const slowestAckMs = { prepare: NaN, switch: NaN, retire: NaN };
  for (const ph of ["prepare", "switch", "retire"] as const) {
    const start = Date.parse(c.phaseStartedAt[ph] ?? "");
    const acks = nodes
      .map((n) => Date.parse(findAcknowledgement(n, epoch, ph)?.at ?? ""))
      .filter(Number.isFinite);
    slowestAckMs[ph] = acks.length === 0 ? NaN : Math.max(...acks) - start;
  }
  let duplicateAcks = 0;
  for (const n of nodes) {
    const mine = n.acknowledgements.filter((a) => a.epoch === epoch);
    duplicateAcks += mine.length - new Set(mine.map((a) => a.phase)).size;
  }
  const prepareAckEvicted = nodes.filter(
    (n) => findAcknowledgement(n, epoch, "prepare") === undefined,
  ).length;
  return { slowestAckMs, duplicateAcks, prepareAckEvicted };
}

/** Runs the scale measurement; cleans up everything it started, also on failure. */
export async function runScale(o: ScaleOptions): Promise<ScaleResult> {
  const log = o.progress ?? (() => {});
  const n = o.agents;
  const clientsN = Math.max(1, Math.min(o.clients ?? Math.min(n, 50), n + 1));
  const timing = o.timing ?? DEFAULT_TIMING;
  const timeoutMs = o.timeoutMs ?? 120_000;
  const heartbeatMs = o.heartbeatMs ?? 5_000;
  const server = await EtcdTestServer.start();
  // Ctrl-C / SIGTERM: etcd is our child and would outlive us; stop it and remove its data first.
  const onSignal = (sig: NodeJS.Signals): void => {
    void server.stop().finally(() => process.kill(process.pid, sig));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const stores: Datastore[] = [];
  const nodes: SimNode[] = [];
  let controllerStop: (() => Promise<void>) | undefined;
  const delay = monitorEventLoopDelay({ resolution: 10 });
  const starting: Promise<void>[] = [];
  try {
    const open = (): Datastore => {
      const s = new EtcdDatastore({ hosts: server.endpoint });
      stores.push(s);
      return s;
    };
    const observer = open();
    const controllerStore = open();
    const clients = Array.from({ length: clientsN }, open);
    const controller = simController(controllerStore, "controller-1", timing);
    controllerStop = () => controller.stop();
    await controller.start();
    await waitUntil(
      async () => idleAt(await readCluster(observer), 1),
      30_000,
      "controller initialising",
      50,
    );

    log(`starting ${n} agents on ${clientsN} etcd clients`);
    const t0 = Date.now();
    const fabric = new FakeFabric();
    const make = (i: number): SimNode =>
      simNode(clients[i % clientsN]!, i, {
        fabric,
        heartbeatMs,
        ...(o.resyncMs === undefined ? {} : { resyncMs: o.resyncMs }),
      });
    for (let i = 1; i <= n; i += 25) {
      const batch = Array.from({ length: Math.min(25, n - i + 1) }, (_, k) => make(i + k));
      nodes.push(...batch);
      // Agent.start() resolves only when its apply loop drains, which under a steady stream of
      // Node events (heartbeats of hundreds of agents) may take very long: wait for each agent's
      // first watch instead (its first reconcile), and let start() finish in the background.
      for (const b of batch) starting.push(b.agent.start());
      await waitUntil(
        () => batch.every((b) => b.backend.stats.reconciles > 0),
        timeoutMs,
        "agents starting",
        5,
      );
    }
    const startMs = Date.now() - t0;
    const peersOf = (s: SimNode, epoch: number): number => s.backend.generation(epoch)?.peers.size ?? -1;
    await waitUntil(() => nodes.every((s) => peersOf(s, 1) === n - 1), timeoutMs, "initial convergence", 20);
    const initialConvergeMs = Date.now() - t0;
    log(`started in ${startMs} ms, converged after ${initialConvergeMs} ms`);

    delay.enable();
    const passes0 = nodes.reduce((a, s) => a + s.backend.stats.reconciles, 0);

    // Join: node n+1 starts; every data plane must hold it.
    const joiner = make(n + 1);
    const tj = Date.now();
    nodes.push(joiner);
    starting.push(joiner.agent.start());
    const others = nodes.slice(0, n);
    let joinerMs = -1;
    await waitUntil(
      () => {
        if (joinerMs < 0 && peersOf(joiner, 1) === n) joinerMs = Date.now() - tj;
        return others.every((s) => s.backend.hasPeer(joiner.name, 1));
      },
      timeoutMs,
      "the join to reach every agent",
      5,
    ).catch((e: unknown) => {
      const k = others.filter((s) => s.backend.hasPeer(joiner.name, 1)).length;
      throw new Error(`${(e as Error).message}: ${k}/${others.length} agents hold the new peer`);
    });
    const joinMs = Date.now() - tj;
    await waitUntil(() => peersOf(joiner, 1) === n, timeoutMs, "the joiner to hold every peer", 5);
    if (joinerMs < 0) joinerMs = Date.now() - tj;
    log(`join reached all ${n} agents in ${joinMs} ms (the joiner had all peers after ${joinerMs} ms)`);

    const rotations: ScaleRotation[] = [];
    for (let r = 0; r < (o.rotations ?? 1); r++) {
      const before = (await readCluster(observer))!.epoch;
      const next = before + 1;
      const tr = Date.now();
      await requestRotation(observer);
      let idleSeen = 0;
      await waitUntil(
        async () => {
          if (idleSeen === 0 && idleAt(await readCluster(observer), next)) idleSeen = Date.now();
          return (
            idleSeen !== 0 && nodes.every((s) => s.backend.epochs().length === 1 && peersOf(s, next) === n)
          );
        },
        timeoutMs,
        `rotation to epoch ${next}`,
        10,
      ).catch(async (e: unknown) => {
        const c = await readCluster(observer);
        const k = nodes.filter((s) => s.backend.epochs().length === 1 && peersOf(s, next) === n).length;
        throw new Error(
          `${(e as Error).message}: cluster ${c?.phase} (epoch ${c?.epoch}, ${c?.timeouts.length} timeouts), ${k}/${nodes.length} data planes done`,
        );
      });
      const ms = Date.now() - tr;
      const c = (await readCluster(observer))!;
      const keys = await publishedKeys(observer);
      for (const s of nodes) {
        for (const p of s.backend.generation(next)!.peers.values()) {
          if (keys.get(`${p.node}/${next}`) !== p.publicKey)
            throw new Error(`${s.name} holds a stale key for ${p.node} after rotation to ${next}`);
        }
      }
      const at = (x: string | undefined): number => (x === undefined ? NaN : Date.parse(x));
      const ps = c.phaseStartedAt;
      rotations.push({
        ms,
        phasesMs: {
          request: at(ps.prepare) - tr,
          prepare: at(ps.switch) - at(ps.prepare),
          switch: at(ps.retire) - at(ps.switch),
          retire: at(c.lastCompletedAt) - at(ps.retire),
        },
        tailMs: Date.now() - idleSeen,
        ...(await ackStats(observer, next, c)),
        timeouts: c.timeouts.filter((t) => t.epoch === next).length,
      });
      log(`rotation ${before}→${next} in ${ms} ms`);
    }
    delay.disable();
    await Promise.all(starting);
    const passes = nodes.reduce((a, s) => a + s.backend.stats.reconciles, 0) - passes0;
    return {
      agents: n,
      clients: clientsN,
      heartbeatMs,
      startMs,
      initialConvergeMs,
      join: { ms: joinMs, joinerMs },
      rotations,
      loopDelay: {
        p50: delay.percentile(50) / 1e6,
        p99: delay.percentile(99) / 1e6,
        max: delay.max / 1e6,
      },
      passesPerAgent: passes / nodes.length,
      rssMb: Math.round(process.memoryUsage().rss / 2 ** 20),
    };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    delay.disable();
    log("cleaning up");
    await Promise.all(nodes.map((s) => s.agent.stop().catch(() => {})));
    await controllerStop?.().catch(() => {});
    await Promise.all(stores.map((s) => s.close().catch(() => {})));
    await server.stop();
  }
}
