/**
 * The control plane at scale: N simulated nodes — the real Agent class
 * with a stateful FakeDataplane and in-memory key pairs each — and the real Controller, against a
 * real etcd (Debian's /usr/bin/etcd on free 127.0.0.1 ports, temp data dir).
 *
 * Measures:
 *   - join: a new agent starts → every one of the N data planes holds it as a peer (and the new
 *     node holds all N);
 *   - rotation: `rotate` requested → the cluster is idle at the next epoch and every data plane
 *     holds exactly the new generation with every peer under its published key (the controller's
 *     default timing, so the 2 s retire grace is included).
 * Agents use the production defaults (heartbeat 5 s, resync 10 s) unless told otherwise.
 *
 * The agents run in worker threads (agents-worker.ts, one per core by default), each worker with
 * its own etcd clients; the controller and the measurements run in the main thread. By default the
 * agents of one etcd client share its watch of each kind (test/support/shared-watch.ts): each
 * event is received and decoded once per client and handed to each of its agents, as each agent on
 * a real node would decode it once on its own core. Every agent still reads and writes its own
 * Node through etcd, and handles, reconciles and acknowledges on its own. `watchPerAgent` gives
 * every agent its own etcd watches (then a thread decodes every event once per agent it hosts,
 * which is what limits that variant). Handshakes complete as soon as a peer is configured (no
 * FakeFabric: the data planes are spread over threads).
 */
import { availableParallelism } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import { DEFAULT_TIMING, type PhaseTiming } from "../../src/protocol/index.js";
import { EtcdDatastore } from "../../src/datastore/etcd/index.js";
import type { Datastore } from "../../src/datastore/types.js";
import { findAcknowledgement, type ClusterEncryption } from "../../src/model/index.js";
import { EtcdTestServer } from "../../test/support/etcd-server.js";
import {
  idleAt,
  publishedKeys,
  readCluster,
  requestRotation,
  simController,
  simNodeName,
  waitUntil,
} from "../../test/support/sim.js";
import { processCpuSeconds } from "../machine.js";
import { startProfile } from "./profile.js";
import type { Condition, Reply, Request, WorkerSetup } from "./protocol.js";

/**
 * For a rotation that did not complete: the nodes that published no key for `epoch` (every agent
 * waits for them, and none holds only the new generation with every peer), and which of them
 * the datastore holds no liveness record for.
 */
async function unkeyed(store: Datastore, epoch: number): Promise<string> {
  const nodes = (await store.collection("nodes").list()).items;
  const without = nodes.filter((n) => n.value.publicKeys[String(epoch)] === undefined).map((n) => n.key);
  if (without.length === 0) return `every node of ${nodes.length} published a key for epoch ${epoch}`;
  const live = await store.heartbeats();
  const dead = without.filter((n) => !live.has(n));
  return (
    `${without.length} of ${nodes.length} nodes published no key for epoch ${epoch}: ` +
    `${without.slice(0, 10).join(", ")}${without.length > 10 ? ", ..." : ""}` +
    ` (${dead.length} of them without a liveness record)`
  );
}

/**
 * For a rotation that did not complete with the controller idle: the nodes it left lagging (every
 * agent keeps the old generation for them), how far each got in catching up (acknowledged prepare
 * and switch of the current epoch, a switch time set for its pairs, a switch acknowledged after
 * it) and which of them have no liveness record.
 */
async function laggingNow(store: Datastore, c: ClusterEncryption | undefined): Promise<string> {
  if (c === undefined || c.lagging.length === 0) return "none lagging";
  const nodes = new Map((await store.collection("nodes").list()).items.map((n) => [n.key, n.value]));
  const live = await store.heartbeats();
  const count = (f: (l: ClusterEncryption["lagging"][number]) => boolean): number =>
    c.lagging.filter(f).length;
  const acked = (node: string, phase: "prepare" | "switch", notBefore?: string) => {
    const n = nodes.get(node);
    return n === undefined ? undefined : findAcknowledgement(n, c.epoch, phase, notBefore);
  };
  const until = Math.min(...c.lagging.map((l) => Date.parse(l.until)));
  return (
    `${c.lagging.length} lagging (${c.lagging
      .slice(0, 5)
      .map((l) => l.node)
      .join(", ")}${c.lagging.length > 5 ? ", ..." : ""}): ` +
    `${count((l) => acked(l.node, "prepare") !== undefined)} acknowledged prepare of epoch ${c.epoch}, ` +
    `${count((l) => l.switchAt !== undefined)} have a switch time, ` +
    `${count((l) => acked(l.node, "switch") !== undefined)} acknowledged switch ` +
    `(${count((l) => l.switchAt !== undefined && acked(l.node, "switch", l.switchAt) !== undefined)} after their switch time), ` +
    `${count((l) => !live.has(l.node))} without a liveness record; the first lag ends ${new Date(until).toISOString()}`
  );
}

export interface ScaleOptions {
  /** Simulated agents before the join. Default 500. */
  agents: number;
  /** Worker threads hosting the agents. Default: the machine's cores. */
  workers?: number;
  /** etcd clients per worker, shared by its agents. Default 2. */
  clients?: number;
  /**
   * Agents started per round; each round waits until every running agent holds every started
   * peer. Default 100.
   */
  startBatch?: number;
  /** Every agent with etcd watches of its own instead of its client's shared ones. Default false. */
  watchPerAgent?: boolean;
  /** Rotations to time. Default 1. */
  rotations?: number;
  heartbeatMs?: number;
  resyncMs?: number;
  timing?: PhaseTiming;
  /** Per-measurement limit. Default 120 s. */
  timeoutMs?: number;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
  /**
   * Writes V8 CPU profiles of the measurements (join and rotations, not the start): the main
   * thread's to this file, worker k's to this file with `.worker-k` before its extension.
   */
  cpuProfile?: string;
}

export interface ScaleRotation {
  ms: number;
  /** Time from request to the controller's prepare write, and each phase's length. */
  phasesMs: { request: number; prepare: number; switch: number; retire: number };
  /** From the controller's `idle` write until the last data plane dropped the old generation. */
  tailMs: number;
  /** Per phase: when the slowest node acknowledged, after the phase began (ms). */
  slowestAckMs: { prepare: number; switch: number; retire: number };
  /** Per phase: when half of the nodes had acknowledged, after the phase began (ms). */
  medianAckMs: { prepare: number; switch: number; retire: number };
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
  workers: number;
  /** etcd clients per worker. */
  clients: number;
  /** Whether the agents of a client shared its watches (see the module comment). */
  sharedWatches: boolean;
  heartbeatMs: number;
  /** Agents started per round. */
  startBatch: number;
  /** Until all agents ran and every data plane held every peer. */
  startMs: number;
  /** Agents that failed to start (an etcd call past its deadline) and were started afresh. */
  startRestarts: number;
  join: { ms: number; joinerMs: number };
  rotations: ScaleRotation[];
  /** Event-loop delay while measuring (ms): the main thread (controller) and the worst worker. */
  loopDelay: { p50: number; p99: number; max: number };
  workerLoopDelay: { p50: number; p99: number; max: number };
  /** Reconcile passes per agent during the measurements (mean). */
  passesPerAgent: number;
  /** CPU time of this process (all threads: every agent and the controller) during the measurements. */
  cpuSeconds: number;
  /** CPU time of etcd during the measurements. */
  etcdCpuSeconds: number;
  rssMb: number;
}

async function ackStats(
  store: Datastore,
  epoch: number,
  c: ClusterEncryption,
): Promise<Pick<ScaleRotation, "slowestAckMs" | "medianAckMs" | "duplicateAcks" | "prepareAckEvicted">> {
  const nodes = (await store.collection("nodes").list()).items.map((i) => i.value);
  const slowestAckMs = { prepare: NaN, switch: NaN, retire: NaN };
  const medianAckMs = { ...slowestAckMs };
  for (const ph of ["prepare", "switch", "retire"] as const) {
    const start = Date.parse(c.phaseStartedAt[ph] ?? "");
    const acks = nodes
      .map((n) => Date.parse(findAcknowledgement(n, epoch, ph)?.at ?? ""))
      .filter(Number.isFinite);
    acks.sort((a, b) => a - b);
    slowestAckMs[ph] = acks.length === 0 ? NaN : acks[acks.length - 1]! - start;
    medianAckMs[ph] = acks.length === 0 ? NaN : acks[Math.floor(acks.length / 2)]! - start;
  }
  let duplicateAcks = 0;
  for (const n of nodes) {
    const mine = n.acknowledgements.filter((a) => a.epoch === epoch);
    duplicateAcks += mine.length - new Set(mine.map((a) => a.phase)).size;
  }
  const prepareAckEvicted = nodes.filter(
    (n) => findAcknowledgement(n, epoch, "prepare") === undefined,
  ).length;
  return { slowestAckMs, medianAckMs, duplicateAcks, prepareAckEvicted };
}

/** A worker thread and the requests it has yet to answer. */
class AgentWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private next = 0;

  constructor(setup: WorkerSetup) {
    this.worker = new Worker(new URL("./agents-worker.js", import.meta.url), {
      workerData: setup,
      resourceLimits: { maxYoungGenerationSizeMb: 256 },
    });
    this.worker.on("message", (r: Reply) => {
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      if (r.error !== undefined) p?.reject(new Error(r.error));
      else p?.resolve(r);
    });
    this.worker.on("error", (e) => this.failAll(e));
    this.worker.on("exit", (code) => this.failAll(new Error(`agent worker exited with status ${code}`)));
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  call(r: DistributiveOmit<Request, "id">): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...r, id });
    });
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Runs the scale measurement; cleans up everything it started, also on failure. */
export async function runScale(o: ScaleOptions): Promise<ScaleResult> {
  const log = o.progress ?? (() => {});
  const n = o.agents;
  const workersN = Math.max(1, Math.min(o.workers ?? availableParallelism(), n));
  const clientsN = Math.max(1, o.clients ?? 2);
  const timing = o.timing ?? DEFAULT_TIMING;
  const timeoutMs = o.timeoutMs ?? 120_000;
  const heartbeatMs = o.heartbeatMs ?? 5_000;
  const startBatch = Math.max(1, o.startBatch ?? 100);
  const server = await EtcdTestServer.start();
  // Ctrl-C / SIGTERM: etcd is our child and would outlive us; stop it and remove its data first.
  const onSignal = (sig: NodeJS.Signals): void => {
    void server.stop().finally(() => process.kill(process.pid, sig));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const stores: Datastore[] = [];
  const workers: AgentWorker[] = [];
  let controllerStop: (() => Promise<void>) | undefined;
  const delay = monitorEventLoopDelay({ resolution: 10 });
  try {
    const open = (): Datastore => {
      const s = new EtcdDatastore({ hosts: server.endpoint });
      stores.push(s);
      return s;
    };
    const observer = open();
    const controller = simController(open(), "controller-1", timing);
    controllerStop = () => controller.stop();
    await controller.start();
    await waitUntil(
      async () => idleAt(await readCluster(observer), 1),
      30_000,
      "controller initialising",
      50,
    );
    const setup: WorkerSetup = {
      endpoint: server.endpoint,
      clients: clientsN,
      sharedWatches: o.watchPerAgent !== true,
      // grpc's default window (64 KiB) per agent sharing a connection; see agents-worker.ts.
      flowControlWindow: 65_535 * Math.ceil((n + 1) / (workersN * clientsN)),
      heartbeatMs,
      ...(o.resyncMs === undefined ? {} : { resyncMs: o.resyncMs }),
    };
    for (let k = 0; k < workersN; k++) workers.push(new AgentWorker(setup));
    /** Worker k hosts agents k+1, k+1+W, ... */
    const hostOf = (i: number): AgentWorker => workers[(i - 1) % workersN]!;
    /** The time the condition held on every worker (the last of their answers). */
    const everywhere = async (condition: Condition, what: string): Promise<number> =>
      Math.max(
        ...(await Promise.all(workers.map((w) => w.call({ op: "until", condition, what, timeoutMs })))).map(
          (r) => r.at!,
        ),
      );

    log(
      `starting ${n} agents in ${workersN} worker threads, ${clientsN} etcd clients each` +
        (setup.sharedWatches ? " (watches shared per client)" : "") +
        `, ${startBatch} at a time`,
    );
    const t0 = Date.now();
    // Nodes join a cluster over time, not a thousand in the same instant: the agents start in
    // rounds, and each round waits for every running agent to hold every started peer. Started
    // all at once, every running agent passes again for each new node while hundreds of others
    // list the nodes, all on this machine's few cores instead of a core each: the event loops
    // fall so far behind that etcd calls pass their 30 s deadline (at 500 agents on a loaded
    // machine, at 1000 always).
    for (let from = 1; from <= n; from += startBatch) {
      const to = Math.min(n, from + startBatch - 1);
      await Promise.all(
        workers.map((w, k) =>
          w.call({
            op: "start",
            indices: Array.from({ length: to - from + 1 }, (_, i) => from + i).filter(
              (i) => (i - 1) % workersN === k,
            ),
            timeoutMs,
          }),
        ),
      );
      await everywhere({ kind: "peers", epoch: 1, count: to - 1 }, `${to} agents to hold every peer`);
      if (to < n) log(`${to} agents running, ${Math.round((Date.now() - t0) / 1000)} s`);
    }
    const startMs = Date.now() - t0;
    log(`${n} agents started and converged in ${startMs} ms`);

    const profile = (k: number | undefined): string | undefined =>
      o.cpuProfile === undefined
        ? undefined
        : k === undefined
          ? o.cpuProfile
          : o.cpuProfile.replace(/(\.[^./]*)?$/, `.worker-${k}$1`);
    delay.enable();
    const mainProfile = o.cpuProfile === undefined ? undefined : await startProfile();
    const cpu0 = process.cpuUsage();
    const etcdCpu0 = processCpuSeconds(server.pid) ?? NaN;
    const passes0 = (
      await Promise.all(workers.map((w, k) => w.call({ op: "measure", ...opt("profile", profile(k)) })))
    ).reduce((a, r) => a + r.reconciles!, 0);

    // A measurement that fails (the 1000-agent size's rotations did) keeps its profiles: they
    // show what the agents did instead.
    const rotations: ScaleRotation[] = [];
    let joinMs = NaN;
    let joinerMs = NaN;
    try {
      // Join: node n+1 starts; every data plane must hold it.
      const joiner = simNodeName(n + 1);
      const tj = Date.now();
      const reached = handled(
        everywhere({ kind: "has-peer", node: joiner, epoch: 1 }, "the join to reach every agent"),
      );
      await hostOf(n + 1).call({ op: "start", indices: [n + 1], timeoutMs });
      joinMs = (await reached) - tj;
      joinerMs =
        (
          await hostOf(n + 1).call({
            op: "until",
            condition: { kind: "peers", epoch: 1, count: n },
            names: [joiner],
            what: "the joiner to hold every peer",
            timeoutMs,
          })
        ).at! - tj;
      log(`join reached all ${n} agents in ${joinMs} ms (the joiner had all peers after ${joinerMs} ms)`);

      for (let r = 0; r < (o.rotations ?? 1); r++) {
        const before = (await readCluster(observer))!.epoch;
        const next = before + 1;
        const tr = Date.now();
        await requestRotation(observer);
        const done = handled(
          everywhere({ kind: "only", epoch: next, count: n }, `rotation to epoch ${next}`),
        );
        let idleSeen = 0;
        await waitUntil(
          async () => {
            if (idleAt(await readCluster(observer), next)) idleSeen = Date.now();
            return idleSeen !== 0;
          },
          timeoutMs,
          `the controller to finish epoch ${next}`,
          10,
        );
        // A rotation that outlasts the controller's run says every 30 s how the lagging nodes, if
        // any, are catching up: slow progress and a stall look alike at the end.
        const watch = setInterval(() => {
          void readCluster(observer)
            .then(async (c) =>
              log(
                `rotation to epoch ${next}, ${Math.round((Date.now() - tr) / 1000)} s: cluster ${c?.phase} ` +
                  `(epoch ${c?.epoch}); ${await laggingNow(observer, c)}`,
              ),
            )
            .catch(() => undefined);
        }, 30_000);
        const allDone = await done
          .finally(() => clearInterval(watch))
          .catch(async (e: unknown) => {
            const c = await readCluster(observer);
            throw new Error(
              `${(e as Error).message}: cluster ${c?.phase} (epoch ${c?.epoch}, ${c?.timeouts.length} timeouts); ${await unkeyed(observer, next)}; ${await laggingNow(observer, c)}`,
            );
          });
        const ms = Math.max(idleSeen, allDone) - tr;
        const c = (await readCluster(observer))!;
        const keys = [...(await publishedKeys(observer))]
          .filter(([k]) => k.endsWith(`/${next}`))
          .map(([k, v]): [string, string] => [k.slice(0, k.lastIndexOf("/")), v]);
        await Promise.all(workers.map((w) => w.call({ op: "check-keys", epoch: next, keys })));
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
          tailMs: Math.max(0, allDone - idleSeen),
          ...(await ackStats(observer, next, c)),
          timeouts: c.timeouts.filter((t) => t.epoch === next).length,
        });
        log(`rotation ${before}→${next} in ${ms} ms`);
      }
    } catch (e) {
      await Promise.allSettled(
        workers.map((w, k) => w.call({ op: "measured", ...opt("profile", profile(k)) })),
      );
      await mainProfile?.stop(profile(undefined)!).catch(() => {});
      throw e;
    }
    delay.disable();
    const ends = await Promise.all(
      workers.map((w, k) => w.call({ op: "measured", ...opt("profile", profile(k)) })),
    );
    const cpu = process.cpuUsage(cpu0);
    const etcdCpuSeconds = (processCpuSeconds(server.pid) ?? NaN) - etcdCpu0;
    if (mainProfile !== undefined) await mainProfile.stop(profile(undefined)!);
    const passes = ends.reduce((a, r) => a + r.reconciles!, 0) - passes0;
    const worst = (f: "p50" | "p99" | "max") => Math.max(...ends.map((r) => r.loopDelayMs![f]));
    return {
      agents: n,
      workers: workersN,
      clients: clientsN,
      sharedWatches: setup.sharedWatches,
      heartbeatMs,
      startBatch,
      startMs,
      startRestarts: ends.reduce((a, r) => a + (r.restarts ?? 0), 0),
      join: { ms: joinMs, joinerMs },
      rotations,
      loopDelay: {
        p50: delay.percentile(50) / 1e6,
        p99: delay.percentile(99) / 1e6,
        max: delay.max / 1e6,
      },
      workerLoopDelay: { p50: worst("p50"), p99: worst("p99"), max: worst("max") },
      passesPerAgent: passes / (n + 1),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      etcdCpuSeconds,
      rssMb: Math.round(process.memoryUsage().rss / 2 ** 20),
    };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    delay.disable();
    log("cleaning up");
    // Each step is given a time and then abandoned: with etcd gone (killed, or failed) the agents'
    // and the controller's last calls (a resignation, a watch's cancel) wait for an answer that
    // never comes, and the bench hung here instead of stopping etcd and going on to the next size.
    const step = async (what: string, ms: number, p: Promise<unknown>): Promise<void> => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), ms)));
      if ((await Promise.race([p.catch(() => {}), late]).finally(() => clearTimeout(timer))) === "late")
        log(`cleaning up: ${what} did not end within ${ms / 1000} s, going on`);
    };
    await step("stopping the agents", 30_000, Promise.allSettled(workers.map((w) => w.call({ op: "stop" }))));
    await Promise.allSettled(workers.map((w) => w.terminate()));
    await step("stopping the controller", 10_000, controllerStop?.() ?? Promise.resolve());
    await step("closing the etcd clients", 10_000, Promise.all(stores.map((s) => s.close())));
    await server.stop();
  }
}

/**
 * `p`, marked as handled: a measurement that fails before awaiting it (etcd gone) must not leave
 * it to reject unhandled when the cleanup terminates the workers, which ended the process before
 * the cleanup stopped etcd and before the other sizes ran. Awaiting it later still throws.
 */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/** `{ [key]: value }`, or nothing when `value` is undefined (exactOptionalPropertyTypes). */
function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
