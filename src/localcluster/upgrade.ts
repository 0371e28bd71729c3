/**
 * `podcrypt cluster upgrade-node NODE`: a node upgrade as a rolling DaemonSet update does it, one
 * process after another, losing nothing (docs/design.md, "A planned restart (an upgrade)"):
 *   1. the agent gets SIGTERM and the cluster's supervisor starts the new one (as kubelet starts
 *      the new pod), which adopts the running data-plane daemons; the data plane never waits on
 *      the agent, so nothing is lost meanwhile;
 *   2. once the new agent reports, it gets SIGUSR2: it replaces each of the node's userspace
 *      daemons by handover (`--take-over`: device, socket and sessions or SAs move to the
 *      successor, the old daemon stops first and exits once the new one serves);
 *   3. done when every daemon that ran before was replaced and the agent reports without error.
 */
import { readFileSync } from "node:fs";
import type { Datastore } from "../datastore/types.js";
import { PodcryptError } from "../errors/index.js";
import { run } from "../platform/netns/netns.js";
import type { Progress } from "./cluster.js";
import { until } from "./nodes.js";
import { alive } from "./processes.js";
import { collectStatus } from "./status.js";
import { clusterHome, readClusterState, plannedNode, requireClusterState } from "./state.js";

/** The podcrypt data-plane daemons running in `netns`: pid -> `wireguard IFNAME` / `esp IFNAME`. */
export async function dataplaneDaemons(netns: string): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const pids = (await run("ip", ["netns", "pids", netns]).catch(() => "")).split(/\s+/).filter(Boolean);
  for (const p of pids) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // gone
    }
    const i = argv.findIndex((a) => a.endsWith("bin/podcrypt"));
    const kind = argv[i + 1];
    if (i >= 0 && (kind === "wireguard" || kind === "esp") && argv[i + 2] !== undefined)
      out.set(Number(p), `${kind} ${argv[i + 2]}`);
  }
  return out;
}

/** What an upgrade took. */
export interface UpgradeResult {
  /** From SIGTERM of the old agent until the new one reported. */
  agentMs: number;
  /** From SIGUSR2 until every daemon was replaced. */
  daemonsMs: number;
  /** The daemons replaced: `wireguard IFNAME` / `esp IFNAME` with the old and new pid. */
  daemons: Array<{ daemon: string; from: number; to: number }>;
}

/** Upgrades node `name` of the running local cluster (see the file's comment); `timeoutMs` per step. */
export async function upgradeNode(
  openStore: (url: string) => Promise<Datastore>,
  progress: Progress,
  name: string,
  timeoutMs: number,
): Promise<UpgradeResult> {
  const home = clusterHome();
  const state = requireClusterState(home);
  const node = plannedNode(state, name);
  const agentOf = () => readClusterState(home)?.processes.find((p) => p.name === `agent-${name}`);
  const old = agentOf();
  if (old === undefined || !alive(old.pid))
    throw new PodcryptError("ESTATE", `the agent of ${name} is not running: nothing to upgrade`);
  const before = await dataplaneDaemons(node.netns);

  progress(`stopping the agent of ${name} (pid ${old.pid}); the supervisor starts the new one`);
  const stoppedAt = Date.now();
  process.kill(old.pid, "SIGTERM");
  let agent = old;
  const agentMs = await until(`the new agent of ${name} reports`, stoppedAt + timeoutMs, async () => {
    const now = agentOf();
    if (now === undefined || now.pid === old.pid || !alive(now.pid)) return false;
    agent = now;
    const s = await collectStatus(state, openStore).catch(() => undefined);
    const n = s?.nodes.find((x) => x.name === name);
    return n?.heartbeat !== undefined && Date.parse(n.heartbeat) >= stoppedAt && n.errors.length === 0;
  });
  progress(`the new agent (pid ${agent.pid}) reports after ${(agentMs / 1000).toFixed(1)} s`);

  if (before.size === 0) {
    progress(`${name} runs no userspace data-plane daemon: nothing to hand over`);
    return { agentMs, daemonsMs: 0, daemons: [] };
  }
  progress(`handing over ${[...before.values()].join(", ")} (SIGUSR2 to the agent)`);
  const signalledAt = Date.now();
  process.kill(agent.pid, "SIGUSR2");
  let after = before;
  const daemonsMs = await until(`every daemon of ${name} is replaced`, signalledAt + timeoutMs, async () => {
    after = await dataplaneDaemons(node.netns);
    const replaced = [...before].every(
      ([pid, what]) => !alive(pid) && [...after].some(([p, w]) => w === what && !before.has(p)),
    );
    if (!replaced) return false;
    const s = await collectStatus(state, openStore).catch(() => undefined);
    const n = s?.nodes.find((x) => x.name === name);
    return n !== undefined && n.errors.length === 0;
  });
  const daemons = [...before].map(([from, daemon]) => ({
    daemon,
    from,
    to: [...after].find(([p, w]) => w === daemon && !before.has(p))![0],
  }));
  for (const d of daemons) progress(`${d.daemon}: pid ${d.from} handed over to pid ${d.to}`);
  return { agentMs, daemonsMs, daemons };
}
