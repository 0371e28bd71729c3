// test-tier: netns (root: network namespaces)
/**
 * No AES-GCM nonce is ever used twice under one ESP key, whatever dies (src/keys/derive.ts, SA
 * instances). A 3-node IPsec local cluster (userspace ESP) under continuous traffic, the underlay
 * captured on the fabric bridge, while node-2 goes through:
 *
 *   1. kill -9 of its `podcrypt esp` daemon (the agent starts a new one);
 *   2. kill -9 of its agent, which the cluster's supervisor starts again (the daemon lives on:
 *      the instance must stay);
 *   3. its Node record deleted (its agent held meanwhile) and re-published (the peers remove it,
 *      then add it again);
 *   4. a "reboot": the supervisor held (SIGSTOP) so that nothing comes back early, agent and
 *      daemon killed, its tunnel device deleted, the state directory kept; then the supervisor
 *      resumes and starts the agent again, as kubelet would after the reboot.
 *
 * Then: no (SPI, sequence number) appears twice in the capture (the SPI names one key: every SPI
 * the daemons exported had a single key), and no daemon counted a replay drop.
 */
import assert from "node:assert/strict";
import { execFile, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { openDatastore } from "../../src/cli/datastore.js";
import { espGet, espSocketPath, type EspStatus } from "../../src/dataplane/esp-userspace/control.js";
import { nodeIfPrefix } from "../../src/localcluster/cluster.js";
import { alive } from "../../src/localcluster/processes.js";
import { readClusterState, type ClusterProcess } from "../../src/localcluster/state.js";
import { readSupervisorRecord } from "../../src/localcluster/supervisor.js";
import { startEspCapture } from "./capture.js";
import { stopCapture, tsharkFields } from "../support/tshark.js";
import { clusterBusy, clusterCli, type VerifyJson } from "./run-cli.js";

const execFileP = promisify(execFile);
const { home, podcrypt, remove } = clusterCli("esp-nonce");
const NODES = ["node-1", "node-2", "node-3"];
const VICTIM = "node-2";
const espIf = (node: string): string => `${nodeIfPrefix(NODES.indexOf(node) + 1)}e`;
const socketOf = (node: string): string => espSocketPath(espIf(node));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const children = new Set<ChildProcess>();

async function waitUntil(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now();
  while (!(await cond().catch(() => false))) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
  return Date.now() - start;
}

const daemon = (node: string): Promise<EspStatus | undefined> =>
  espGet(socketOf(node)).catch(() => undefined);

/** Every node's daemon sends to every other node with an active SA, both ends agreeing on the SPIs. */
async function converged(): Promise<boolean> {
  const all = await Promise.all(NODES.map(daemon));
  if (all.some((s) => s === undefined)) return false;
  const spis = new Map<string, string>();
  for (const [i, s] of all.entries()) {
    for (const peer of NODES.filter((n) => n !== NODES[i])) {
      const p = s!.peers.find((x) => x.name === peer);
      if (p?.activeKeyId == null) return false;
      const out = s!.sas.find((x) => x.direction === "out" && x.peer === peer && x.active === true);
      if (out === undefined) return false;
      spis.set(`${NODES[i]}>${peer}`, out.spi);
    }
  }
  // a's active outbound SPI is installed inbound at b.
  return [...spis].every(([k, spi]) => {
    const [from, to] = k.split(">");
    return all[NODES.indexOf(to!)]!.sas.some((x) => x.direction === "in" && x.peer === from && x.spi === spi);
  });
}

function agentProcess(): ClusterProcess {
  const p = readClusterState(home)?.processes.find((x) => x.name === `agent-${VICTIM}`);
  assert.ok(p !== undefined, `cluster.json lists agent-${VICTIM}`);
  return p;
}

async function killAndWait(pid: number, what: string): Promise<void> {
  process.kill(pid, "SIGKILL");
  await waitUntil(async () => !alive(pid), 5000, `${what} to die`);
}

/** The SA instance node-2 published. */
async function publishedInstance(): Promise<string | undefined> {
  const store = await openDatastore(readClusterState(home)!.datastore);
  try {
    return (await store.collection("nodes").get(VICTIM))?.value.saInstance;
  } finally {
    await store.close();
  }
}

const startCapture = (pcap: string): Promise<ChildProcess> => startEspCapture(pcap, children);

/** SPI -> keys of every SA the daemons hold now, added to `keys` (key material stays in memory). */
async function collectKeys(keys: Map<string, Set<string>>): Promise<void> {
  const r = await podcrypt(["debug", "esp-sa", "--tshark"]);
  assert.equal(r.code, 0, "debug esp-sa --tshark failed");
  for (const line of r.stdout.trim().split("\n")) {
    const f = line.split(",").map((x) => x.replace(/^"|"$/g, ""));
    const spi = f[3]!;
    const set = keys.get(spi) ?? new Set<string>();
    set.add(f[5]!);
    keys.set(spi, set);
  }
}

after(() => {
  for (const c of children) c.kill("SIGKILL");
  remove();
});

describe(
  "ESP nonces across daemon restart, agent restart, peer re-add and node reboot",
  { skip: await clusterBusy() },
  () => {
    before(async () => {
      const up = await podcrypt(["cluster", "up", "--mode", "ipsec", "--timeout", "150"]);
      assert.equal(up.code, 0, `cluster up --mode ipsec failed: ${up.stderr}`);
      await waitUntil(converged, 30_000, "every pair's SAs");
    });
    after(async () => {
      for (const c of children) c.kill("SIGKILL");
      await podcrypt(["cluster", "down"]);
      remove();
    });

    it("no (SPI, sequence) twice on the underlay and no replay drop, under continuous traffic", async () => {
      const pcap = join(home, "fabric.pcap");
      const capture = await startCapture(pcap);
      const keys = new Map<string, Set<string>>();
      await collectKeys(keys);
      const seconds = 75;
      const traffic = podcrypt(
        ["verify", "--json", "--seconds", String(seconds), "--count", String(seconds * 100)],
        (seconds + 120) * 1000,
      );
      await sleep(3000);
      const report: string[] = [];
      const instance0 = await publishedInstance();
      assert.match(instance0 ?? "", /^[0-9a-f]{32}$/, "node-2 published an SA instance");

      // 1. kill -9 of node-2's ESP daemon: a new daemon, a new instance, new SAs at every peer.
      const d1 = (await daemon(VICTIM))!;
      assert.equal(d1.local.instance, instance0, "the daemon holds the published instance");
      await killAndWait(d1.pid, "podcrypt esp");
      let ms = await waitUntil(
        async () =>
          (await daemon(VICTIM))?.pid !== undefined &&
          (await daemon(VICTIM))!.pid !== d1.pid &&
          (await converged()),
        60_000,
        "a new ESP daemon and every pair's SAs",
      );
      const instance1 = await publishedInstance();
      assert.notEqual(instance1, instance0, "a fresh daemon gets a new SA instance");
      assert.equal((await daemon(VICTIM))!.local.instance, instance1);
      report.push(`daemon kill -9: converged after ${ms} ms`);
      await collectKeys(keys);
      await sleep(3000);

      // 2. kill -9 of node-2's agent, started again: the daemon lives on, so the instance stays.
      const agent = agentProcess();
      const d2 = (await daemon(VICTIM))!;
      await killAndWait(agent.pid, "the agent");
      ms = await waitUntil(
        async () => agentProcess().pid !== agent.pid && alive(agentProcess().pid),
        15_000,
        "the supervisor to start the agent again",
      );
      report.push(`agent kill -9: restarted after ${ms} ms`);
      await sleep(4000);
      assert.ok(alive(agentProcess().pid), "the restarted agent runs");
      assert.equal(await publishedInstance(), instance1, "an agent restart keeps the instance");
      assert.equal((await daemon(VICTIM))?.pid, d2.pid, "the daemon outlived the agent");
      assert.equal((await daemon(VICTIM))?.local.instance, instance1, "and still holds the instance");
      assert.ok(await converged());
      await collectKeys(keys);

      // 3. node-2's record deleted: the peers remove it; its agent publishes it again and they re-add
      // it. The agent is held (SIGSTOP) until the peers have removed it: its heartbeat, every 5 s,
      // would otherwise write the record again before they noticed it gone.
      const holder = agentProcess();
      process.kill(holder.pid, "SIGSTOP");
      try {
        const store = await openDatastore(readClusterState(home)!.datastore);
        try {
          await store.collection("nodes").delete(VICTIM);
        } finally {
          await store.close();
        }
        await waitUntil(
          async () => !(await daemon("node-1"))!.peers.some((p) => p.name === VICTIM),
          30_000,
          "node-1 to remove node-2",
        );
      } finally {
        process.kill(holder.pid, "SIGCONT");
      }
      ms = await waitUntil(converged, 60_000, "node-2 re-added everywhere");
      assert.equal(await publishedInstance(), instance1, "re-published with the same instance");
      report.push(`record deleted: re-added after ${ms} ms`);
      await collectKeys(keys);
      await sleep(3000);

      // 4. "Reboot": agent and daemon killed, the tunnel device gone, the state directory kept.
      const agent2 = agentProcess();
      const d4 = (await daemon(VICTIM))!;
      const supervisor = readSupervisorRecord(home);
      assert.ok(supervisor !== undefined && alive(supervisor.pid), "the cluster runs a supervisor");
      process.kill(supervisor.pid, "SIGSTOP");
      try {
        await killAndWait(agent2.pid, "the agent");
        await killAndWait(d4.pid, "podcrypt esp");
        await execFileP("ip", ["-n", agent2.netns!, "link", "del", espIf(VICTIM)]).catch(() => undefined);
      } finally {
        process.kill(supervisor.pid, "SIGCONT");
      }
      ms = await waitUntil(
        async () => (await daemon(VICTIM))?.pid !== d4.pid && (await converged()),
        60_000,
        "node-2 back after the reboot",
      );
      const instance4 = await publishedInstance();
      assert.ok(instance4 !== instance1 && instance4 !== instance0, "a reboot gets a new SA instance");
      report.push(`reboot: converged after ${ms} ms`);
      await collectKeys(keys);

      const v = JSON.parse((await traffic).stdout) as VerifyJson;
      await sleep(500);
      await stopCapture(capture);
      children.delete(capture);

      for (const p of v.pairs)
        assert.equal(p.plaintextSeen, false, `${p.from}->${p.to} plaintext on the underlay`);
      const lost = v.pairs.map((p) => `${p.from}->${p.to} ${p.sent - p.echoed}/${p.sent}`);

      // Every SPI names one key.
      for (const [spi, k] of keys) assert.equal(k.size, 1, `SPI ${spi} under ${k.size} keys`);
      // No (SPI, sequence) twice: no GCM nonce twice under one key.
      const rows = await tsharkFields(pcap, [], ["esp.spi", "esp.sequence"]);
      const seen = new Set<string>();
      const dups: string[] = [];
      let packets = 0;
      for (const [spi, seq] of rows) {
        if (spi === undefined || spi === "" || seq === undefined || seq === "") continue;
        packets++;
        const k = `${spi}|${seq}`;
        if (seen.has(k)) dups.push(k);
        seen.add(k);
      }
      assert.ok(packets > 10_000, `captured ${packets} ESP packets`);
      assert.deepEqual(dups.slice(0, 10), [], `${dups.length} (SPI, sequence) pairs seen twice`);
      // No replay drops anywhere (node-1 and node-3 ran throughout; node-2's daemon since the reboot).
      for (const n of NODES) {
        const s = (await daemon(n))!;
        assert.equal(s.drops.replay, 0, `${n} dropped ${s.drops.replay} replays`);
        assert.ok(
          s.sas.every((x) => x.replayDrops === 0),
          `${n}: ${JSON.stringify(s.sas.map((x) => [x.peer, x.spi, x.replayDrops]))}`,
        );
      }
      process.stdout.write(
        `# ${packets} ESP packets, ${seen.size} distinct (SPI, sequence), 0 twice; ${keys.size} SPIs, one key each; ` +
          `0 replay drops; ${report.join("; ")}; lost per pair: ${lost.join(", ")}\n`,
      );
      rmSync(pcap, { force: true });
    });
  },
);
