/**
 * A worker thread of bench/scale hosting some of the simulated agents (real Agent class, fake data
 * planes, in-memory keys) on its own etcd clients, so that the agents are spread over the machine's
 * cores as they would be over nodes. The main thread asks it to start agents and to report when a
 * condition holds for all of its agents (it polls them here, every few milliseconds, and answers
 * with the wall-clock time it first saw the condition hold).
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";
import { noop } from "cockatiel";
import { EtcdDatastore } from "../../src/datastore/etcd/index.js";
import { SharedWatchStore } from "../../test/support/shared-watch.js";
import { simNode, waitUntil, type SimNode } from "../../test/support/sim.js";
import { startProfile, type Profile } from "./profile.js";
import type { Condition, Reply, Request, WorkerSetup } from "./protocol.js";

const setup = workerData as WorkerSetup;
// One connection carries the calls of hundreds of agents, each of which on a node of its own
// would have a connection and HTTP/2 windows of its own: with grpc's default 64 KiB connection
// window, the node lists of the agents starting in one round (hundreds of KiB each) crossed it a
// window at a time, each update waiting for this thread's busy event loop, and passed their 30 s
// deadline. The window is the sum of the agents' own. Nor does the client break its circuit
// (etcd3 refuses every call for 5 s after three failed in a row): on a node the three would be one
// agent's own, here they are any three of the hundreds of agents sharing the client, whose calls
// would all fail because of them.
const stores = Array.from({ length: setup.clients }, () => {
  const s = new EtcdDatastore({
    hosts: setup.endpoint,
    client: {
      grpcOptions: { "grpc-node.flow_control_window": setup.flowControlWindow },
      faultHandling: { host: () => noop },
    },
  });
  return setup.sharedWatches ? new SharedWatchStore(s) : s;
});
const nodes: SimNode[] = [];
const starting: Promise<void>[] = [];
/** Times an agent that failed to start was replaced by a fresh one, as its pod would be restarted. */
let restarts = 0;
/** The last agent start that failed {@link MAX_STARTS} times. */
let startFailure: Error | undefined;
const MAX_STARTS = 6;
/** The pause before a restart, times the failed attempts (kubelet backs a crashing pod off too). */
const RESTART_BACKOFF_MS = 5_000;

const makeNode = (index: number): SimNode =>
  simNode(stores[index % stores.length]!, index, {
    heartbeatMs: setup.heartbeatMs,
    ...(setup.resyncMs === undefined ? {} : { resyncMs: setup.resyncMs }),
  });

/**
 * Starts the agent in `nodes[slot]`. An agent whose start fails (an etcd call past its deadline
 * while the machine is swamped) exits on a node and its pod is restarted: here it is stopped and a
 * fresh agent of the same node started after a pause that grows with each failure, up to
 * {@link MAX_STARTS} times (at load 17-24, three attempts without a pause were not enough for
 * the 400th agent: its restarts came while the others still listed).
 */
async function startAgent(slot: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await nodes[slot]!.agent.start();
      return;
    } catch (e) {
      await nodes[slot]!.agent.stop().catch(() => {});
      if (attempt === MAX_STARTS) {
        startFailure = new Error(
          `${nodes[slot]!.name} failed to start ${MAX_STARTS} times: ${(e as Error).message}`,
        );
        return;
      }
      restarts++;
      await new Promise((r) => setTimeout(r, attempt * RESTART_BACKOFF_MS));
      nodes[slot] = makeNode(nodes[slot]!.index);
    }
  }
}
const delay = monitorEventLoopDelay({ resolution: 10 });
let profile: Profile | undefined;

const peersOf = (s: SimNode, epoch: number): number => s.backend.generation(epoch)?.peers.size ?? -1;

function holds(c: Condition, s: SimNode): boolean {
  switch (c.kind) {
    case "started":
      return s.backend.stats.reconciles > 0;
    case "peers":
      return peersOf(s, c.epoch) === c.count;
    case "has-peer":
      return s.name === c.node || s.backend.hasPeer(c.node, c.epoch);
    case "only":
      return s.backend.epochs().length === 1 && peersOf(s, c.epoch) === c.count;
  }
}

/**
 * What the agents that fail `c` hold, for a measurement that timed out: how many hold which
 * epochs with how many peers in `c`'s epoch (the most common first).
 */
function holding(c: Condition, agents: readonly SimNode[]): string {
  if (c.kind === "started") return "";
  const counts = new Map<string, number>();
  for (const s of agents) {
    if (holds(c, s)) continue;
    const k = `epochs [${s.backend.epochs().join(",")}] with ${peersOf(s, c.epoch)} peers in ${c.epoch}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 4)
    .map(([k, v]) => `${v} hold ${k}`)
    .join("; ");
}

function among(names: readonly string[] | undefined): SimNode[] {
  if (names === undefined) return nodes;
  const want = new Set(names);
  return nodes.filter((s) => want.has(s.name));
}

async function handle(r: Request): Promise<Reply> {
  switch (r.op) {
    case "start": {
      // Batches of 25: each agent's first reconcile before the next batch, as nodes booting.
      for (let i = 0; i < r.indices.length; i += 25) {
        const first = nodes.length;
        nodes.push(...r.indices.slice(i, i + 25).map(makeNode));
        const slots = Array.from({ length: nodes.length - first }, (_, k) => first + k);
        // start() resolves when its apply loop drains, which under the event stream of hundreds of
        // agents may take long: its first reconcile is what counts.
        for (const slot of slots) starting.push(startAgent(slot));
        await waitUntil(
          () => {
            if (startFailure !== undefined) throw startFailure;
            return slots.every((slot) => holds({ kind: "started" }, nodes[slot]!));
          },
          r.timeoutMs,
          "agents starting",
          5,
        );
      }
      return { id: r.id, at: Date.now() };
    }
    case "until": {
      const who = () => among(r.names);
      await waitUntil(() => who().every((s) => holds(r.condition, s)), r.timeoutMs, r.what, 5).catch(
        (e: unknown) => {
          const k = who().filter((s) => holds(r.condition, s)).length;
          throw new Error(
            `${(e as Error).message}: ${k}/${who().length} agents of this worker; ${holding(r.condition, who())}`,
          );
        },
      );
      return { id: r.id, at: Date.now() };
    }
    case "check-keys": {
      const keys = new Map(r.keys);
      for (const s of nodes) {
        for (const p of s.backend.generation(r.epoch)?.peers.values() ?? []) {
          if (keys.get(p.node) !== p.publicKey)
            throw new Error(`${s.name} holds a stale key for ${p.node} after rotation to ${r.epoch}`);
        }
      }
      return { id: r.id };
    }
    case "measure": {
      if (r.profile !== undefined) profile = await startProfile();
      delay.reset();
      delay.enable();
      return { id: r.id, reconciles: nodes.reduce((a, s) => a + s.backend.stats.reconciles, 0) };
    }
    case "measured": {
      delay.disable();
      if (profile !== undefined && r.profile !== undefined) await profile.stop(r.profile);
      profile = undefined;
      return {
        id: r.id,
        reconciles: nodes.reduce((a, s) => a + s.backend.stats.reconciles, 0),
        agents: nodes.length,
        restarts,
        loopDelayMs: {
          p50: delay.percentile(50) / 1e6,
          p99: delay.percentile(99) / 1e6,
          max: delay.max / 1e6,
        },
      };
    }
    case "stop": {
      await Promise.allSettled(starting);
      await Promise.allSettled(nodes.map((s) => s.agent.stop()));
      await Promise.allSettled(stores.map((s) => s.close()));
      return { id: r.id };
    }
  }
}

parentPort!.on("message", (r: Request) => {
  handle(r).then(
    (reply) => parentPort!.postMessage(reply),
    (e: unknown) => parentPort!.postMessage({ id: r.id, error: (e as Error).message }),
  );
});
