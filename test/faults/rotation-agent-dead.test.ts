/**
 * Fault row: a rotation while one node's agent is dead (kill -9 before `rotate`, restarted after
 * the others completed). Its data plane keeps the epoch it had; the others keep that epoch for it
 * (ClusterEncryption `lagging`), so no pair loses a datagram, `rotate --wait` names the lagging
 * node (exit 3), and once its agent is back the node catches up and the lag ends.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, it } from "node:test";
import { alive, startDaemon } from "../../src/localcluster/processes.js";
import { readClusterState, writeClusterState } from "../../src/localcluster/state.js";
import { assertTraffic, faultSuite, sleep, waitUntil, type FaultCluster } from "./harness.js";

const VICTIM = "node-2";
const restarted: number[] = [];
after(() => {
  for (const pid of restarted.filter(alive)) process.kill(pid, "SIGKILL");
});

/** The podcrypt arguments a running daemon was started with (after `bin/podcrypt`). */
function daemonArgs(pid: number): string[] {
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8")
    .split("\0")
    .filter((a) => a !== "");
  const i = argv.findIndex((a) => a.endsWith(join("bin", "podcrypt")));
  assert.ok(i >= 0, `pid ${pid} is a podcrypt daemon`);
  return argv.slice(i + 1);
}

interface Lagging {
  lagging: Array<{ node: string; epoch: number; until: string }>;
}

async function rotationWithDeadAgent(c: FaultCluster): Promise<void> {
  const agent = c.process(`agent-${VICTIM}`);
  const argv = daemonArgs(agent.pid);
  const before = await c.status();
  const traffic = c.traffic(70);
  await sleep(2000);
  process.kill(agent.pid, "SIGKILL");
  await waitUntil(() => !alive(agent.pid), 5000, "the agent to die");
  // Its heartbeat goes stale (15 s): the controller no longer waits for it.
  await sleep(17_000);
  const rotate = await c.podcrypt(["rotate", "--wait", "--timeout", "60"], 70_000);
  assert.equal(
    rotate.code,
    3,
    `rotate --wait exits 3 naming the lagging node: ${rotate.stdout}${rotate.stderr}`,
  );
  assert.match(rotate.stderr, new RegExp(`not acknowledged by ${VICTIM}`));
  const lagged = (await c.status()) as unknown as Lagging & { epoch: number };
  assert.equal(lagged.epoch, before.epoch + 1);
  assert.deepEqual(
    lagged.lagging.map((l) => [l.node, l.epoch]),
    [[VICTIM, before.epoch]],
  );
  // The others completed; the victim's agent comes back and catches up.
  await sleep(5000);
  const state = readClusterState(c.home)!;
  const again = startDaemon(c.home, agent.role, agent.name, argv, agent.netns);
  restarted.push(again.pid);
  state.processes = [...state.processes.filter((p) => p.name !== agent.name), again];
  writeClusterState(state, c.home);
  await waitUntil(
    async () => ((await c.status()) as unknown as Lagging).lagging.length === 0,
    40_000,
    `${VICTIM} to catch up`,
  );
  const lost = assertTraffic(await traffic, {}, `rotation with ${VICTIM}'s agent dead`);
  process.stdout.write(`# ${c.mode}: rotation with ${VICTIM}'s agent dead: worst pair lost ${lost}\n`);
  await c.settled();
  const s = await c.status();
  assert.ok(
    s.nodes.find((n) => n.name === VICTIM)?.peers.every((p) => p.epoch === s.epoch),
    `${VICTIM} runs epoch ${s.epoch} with every peer`,
  );
}

for (const mode of ["wireguard", "ipsec"] as const)
  faultSuite(mode, (c) => {
    it("a rotation with one agent dead loses 0, completes for the others, names it; it catches up", () =>
      rotationWithDeadAgent(c()));
  });
