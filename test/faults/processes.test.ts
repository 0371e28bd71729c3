// test-tier: netns (root: network namespaces)
/**
 * Faults of the local cluster's processes under continuous traffic, both modes, on one cluster per
 * mode (test/faults/harness.ts): every row asserts 0 plaintext on the underlay and its loss bound.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { assertTraffic, daemonPid, faultSuite, RATE, sleep, waitUntil } from "./harness.js";

for (const mode of ["wireguard", "ipsec"] as const) {
  faultSuite(mode, (c) => {
    it("steady state: 100 datagrams/s per pair for 5 s, none lost, none in plaintext", async () => {
      assertTraffic(await c().traffic(5), {}, "steady");
    });

    // The goal is under 1 s of traffic; measured on a shared 2-core host: WireGuard 550-1000 ms (the
    // new daemon's start-up, the full push and one handshake), IPsec 1-2.4 s (peers re-key to the
    // new daemon's SA instance through the datastore). The row holds the bound it keeps on a loaded
    // CI host, 3 s (before: 3.5 s and 7-14 s), and prints the gap.
    it("kill -9 of a data-plane daemon loses under 3 s on that node's pairs only; the agent replaces it at once", async () => {
      const cl = c();
      const restartsBefore = (await cl.status()).nodes.find((n) => n.name === "node-2")!.restarts.dataplane;
      const pid = daemonPid("node-2", mode);
      assert.ok(pid !== undefined, `node-2 runs a ${mode} daemon`);
      const traffic = cl.traffic(10);
      await sleep(3000);
      const killedAt = Date.now();
      process.kill(pid, "SIGKILL");
      await waitUntil(
        () => {
          const now = daemonPid("node-2", mode);
          return now !== undefined && now !== pid;
        },
        10_000,
        "a new daemon",
      );
      const respawnMs = Date.now() - killedAt;
      const v = await traffic;
      const worst = assertTraffic(v, { faulty: "node-2", maxLost: 3 * RATE - 1 }, "daemon kill -9");
      const gapMs = Math.max(0, ...v.pairs.flatMap((p) => p.losses.map((l) => l.untilMs - l.atMs)));
      process.stdout.write(
        `# ${mode}: daemon kill -9: new daemon after ${respawnMs} ms, worst pair lost ${worst} datagrams, longest gap ${gapMs} ms\n`,
      );
      await waitUntil(
        async () =>
          (await cl.status()).nodes.find((n) => n.name === "node-2")!.restarts.dataplane ===
          restartsBefore + 1,
        15_000,
        "status to count the daemon's restart",
      );
      await cl.settled();
    });

    it("kill -9 of an agent loses 0; the supervisor restarts it and it reports again", async () => {
      const cl = c();
      const restartsBefore = (await cl.status()).nodes.find((n) => n.name === "node-2")!.restarts.agent;
      const traffic = cl.traffic(10);
      await sleep(3000);
      const { killedAt, restartMs } = await cl.killAndAwaitRestart("agent-node-2");
      await waitUntil(
        async () => {
          const n = (await cl.status()).nodes.find((x) => x.name === "node-2");
          return n?.heartbeat !== undefined && Date.parse(n.heartbeat) >= killedAt && n.errors.length === 0;
        },
        30_000,
        "the restarted agent to report",
      );
      assertTraffic(await traffic, {}, "agent kill -9");
      const node = (await cl.status()).nodes.find((n) => n.name === "node-2")!;
      assert.equal(node.restarts.agent, restartsBefore + 1, "status counts the restart");
      process.stdout.write(`# ${mode}: agent restarted ${restartMs} ms after kill -9\n`);
      await cl.settled();
    });

    // The lease of the dead leader expires after its TTL (5 s); then the standby and the restarted
    // controller (which keeps its identity, as a restarted container keeps its pod's name) race
    // for it, as replicas do on Kubernetes: either may lead, one must, and it must act.
    it("kill -9 of the leading controller loses 0; it is restarted and a controller leads and rotates again", async () => {
      const cl = c();
      const before = (await cl.status()).controllers;
      assert.equal(before.length, 2, "a leader and a standby run");
      const leader = before.find((x) => x.leader);
      assert.ok(leader !== undefined, `one of ${JSON.stringify(before)} leads`);
      const traffic = cl.traffic(10);
      await sleep(2000);
      const { killedAt } = await cl.killAndAwaitRestart(leader.name);
      await sleep(Math.max(0, killedAt + 5000 - Date.now()));
      let now = before;
      await waitUntil(
        async () => {
          now = (await cl.status()).controllers;
          return now.some((x) => x.leader && x.running);
        },
        30_000,
        "a running controller to lead",
      );
      const takeoverMs = Date.now() - killedAt;
      assertTraffic(await traffic, {}, "controller kill -9");
      const again = now.find((x) => x.name === leader.name)!;
      assert.ok(again.running && again.pid !== leader.pid, "the supervisor restarted the dead controller");
      assert.equal(again.restarts, leader.restarts + 1, "status counts the restart");
      const next = now.find((x) => x.leader)!;
      process.stdout.write(
        `# ${mode}: ${next.name === leader.name ? "the restarted controller" : "the standby"} leads ${takeoverMs} ms after kill -9 (lease TTL 5 s)\n`,
      );
      // The new leader acts: a rotation completes.
      const rot = await cl.podcrypt(["rotate", "--wait", "--timeout", "60"]);
      assert.equal(rot.code, 0, rot.stderr);
      await cl.settled();
    });
  });
}
