/** A node of the local cluster as the strict-mode suites take it apart: its tunnels' daemons and drop counters. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { run, runIn } from "../../src/platform/netns/netns.js";
import { agentMetrics } from "./agent-metrics.js";

/**
 * The tunnel interface node namespace `netns` routes `to` through and the pid of the daemon behind
 * it (the process in `netns` whose command line names the interface); fails the test when `to` is
 * not routed into a tunnel or no daemon of it runs.
 */
export async function tunnelDaemon(netns: string, to: string): Promise<{ dev: string; pid: number }> {
  const route = JSON.parse(await runIn(netns, "ip", ["-j", "route", "get", to])) as Array<{ dev: string }>;
  const dev = route[0]!.dev;
  assert.match(dev, /^pc\d+w[01e]$/, `${netns} routes ${to} through a tunnel`);
  const pids = (await run("ip", ["netns", "pids", netns])).split(/\s+/).filter(Boolean).map(Number);
  const pid = pids.find((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").includes(dev);
    } catch {
      return false;
    }
  });
  assert.ok(pid !== undefined, `the daemon of ${dev} runs in ${netns}`);
  return { dev, pid };
}

/**
 * The packets node `netns`'s strict rules dropped on their way out to `peer`, as its agent counts
 * them (`podcrypt_plaintext_dropped_packets_total`): nft's own counters restart whenever the agent
 * replaces its table (a pass after a failed one re-applies it, as one does while a tunnel daemon
 * is stopped), the agent's count carries them over.
 */
export async function outDrops(netns: string, peer: string): Promise<number> {
  const text = await agentMetrics(netns, { fresh: true });
  const line = text
    .split("\n")
    .find(
      (l) =>
        l.startsWith("podcrypt_plaintext_dropped_packets_total{") &&
        l.includes(`peer="${peer}"`) &&
        l.includes('direction="out"'),
    );
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/**
 * Freezes tunnel daemon `pid` (SIGSTOP; added to `frozen`, which the caller resumes in its cleanup)
 * and sets its interface `dev` in `netns` down, again every 200 ms until the returned function is
 * called: the agent may set the interface up again on a pass (its daemon is there, only frozen).
 */
export async function freezeTunnel(
  netns: string,
  dev: string,
  pid: number,
  frozen: Set<number>,
): Promise<() => void> {
  process.kill(pid, "SIGSTOP");
  frozen.add(pid);
  const down = () => runIn(netns, "ip", ["link", "set", dev, "down"]).catch(() => "");
  await down();
  const keepDown = setInterval(() => void down(), 200);
  return () => clearInterval(keepDown);
}
