// test-tier: netns (root: network namespaces)
/**
 * Fault row: a rotation while one node's agent is dead (held stopped before `rotate`, resumed
 * after the others completed). Its data plane keeps the epoch it had; the others keep that epoch for it
 * (ClusterEncryption `lagging`), so no pair loses a datagram, `rotate --wait` names the lagging
 * node (exit 3), and once its agent is back the node catches up and the lag ends.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { assertTraffic, faultSuite, sleep, type FaultCluster, waitUntil } from "./harness.js";

const VICTIM = "node-2";

interface Lagging {
  lagging: Array<{ node: string; epoch: number; until: string }>;
}

async function rotationWithDeadAgent(c: FaultCluster): Promise<void> {
  const before = await c.status();
  const traffic = c.traffic(70);
  await sleep(2000);
  // The supervisor would restart a killed agent within a second, so the agent is held stopped
  // (SIGSTOP): to the cluster it is as dead (no heartbeat, no acknowledgement), while its data
  // plane, a separate process, keeps the epoch it had.
  const resume = c.freeze(`agent-${VICTIM}`);
  try {
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
  } finally {
    resume();
  }
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
