// test-tier: netns (root: network namespaces)
/**
 * Faults of the control plane on the real local cluster (3 nodes, userspace WireGuard), driven
 * through the CLI as a user would: an agent killed with SIGKILL under traffic (the cluster's
 * supervisor restarts it), the leading controller killed (beside the standby `cluster up` runs),
 * and the key files left on disk after a rotation.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDatastore } from "../../src/cli/datastore.js";
import { CONTROLLER_ELECTION } from "../../src/controller/controller.js";
import { NETNS_PREFIX } from "../../src/localcluster/plan.js";
import { alive } from "../../src/localcluster/processes.js";
import { readClusterState, type ClusterProcess } from "../../src/localcluster/state.js";
import type { ControllerStatus } from "../../src/localcluster/status.js";
import { listNetns } from "../../src/platform/netns/netns.js";
import { sleep, waitUntil } from "../faults/harness.js";
import { clusterCli, type CliResult } from "../localcluster/run-cli.js";

const { home, podcrypt } = clusterCli("faults-test");
type Result = CliResult;

interface Status {
  phase: string;
  epoch: number;
  timeouts: unknown[];
  nodes: Array<{
    name: string;
    live: boolean;
    heartbeat?: string;
    epochs: number[];
    errors: string[];
    restarts: { agent: number };
    peers: Array<{ node: string; epoch: number; publicKey?: string }>;
  }>;
  controllers: ControllerStatus[];
}

async function status(): Promise<Status> {
  const r = await podcrypt(["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Status;
}

interface Verify {
  ok: boolean;
  pairs: Array<{ from: string; to: string; sent: number; echoed: number; plaintextSeen: boolean }>;
}

function assertNoLoss(r: Result, what: string): Verify {
  const v = JSON.parse(r.stdout) as Verify;
  assert.equal(v.pairs.length, 6, `${what}: every ordered pair measured`);
  for (const p of v.pairs) {
    assert.equal(p.plaintextSeen, false, `${what}: ${p.from}->${p.to} plaintext on the underlay`);
    assert.ok(p.sent > 0, `${what}: ${p.from}->${p.to} sent nothing`);
    assert.equal(p.echoed, p.sent, `${what}: ${p.from}->${p.to} lost ${p.sent - p.echoed} of ${p.sent}`);
  }
  return v;
}

/** Public keys other nodes hold for `node`, as `peerOf/epoch → key`. */
function keysSeenFor(s: Status, node: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of s.nodes)
    for (const p of n.peers) if (p.node === node && p.publicKey) out[`${n.name}/${p.epoch}`] = p.publicKey;
  return out;
}

/** Digest of a node's key files (compared, never printed). */
function keyFiles(node: string): Record<string, string> {
  const dir = join(home, "nodes", node);
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir)
    .filter((x) => x.endsWith(".key"))
    .sort())
    out[f] = createHash("sha256")
      .update(readFileSync(join(dir, f)))
      .digest("hex");
  return out;
}

function processNamed(name: string): ClusterProcess {
  const p = readClusterState(home)?.processes.find((x) => x.name === name);
  assert.ok(p !== undefined, `cluster.json lists ${name}`);
  return p;
}

const busy = (await listNetns()).some((n) => n.startsWith(NETNS_PREFIX));
after(() => rmSync(home, { recursive: true, force: true }));

describe(
  "local cluster faults (3 nodes, userspace WireGuard)",
  { skip: busy ? "a local cluster is already running on this machine" : false },
  () => {
    before(async () => {
      const up = await podcrypt(["cluster", "up", "--timeout", "150"]);
      assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
    });
    after(async () => {
      await podcrypt(["cluster", "down"]);
      rmSync(home, { recursive: true, force: true });
    });

    it("kill -9 of an agent under traffic loses 0 packets; the supervisor restarts it and it keeps its public key", async () => {
      const victim = "node-2";
      const before = await status();
      const seenBefore = keysSeenFor(before, victim);
      assert.equal(Object.keys(seenBefore).length, 2, "both other nodes hold node-2 as a peer");
      const filesBefore = keyFiles(victim);
      const proc = processNamed(`agent-${victim}`);

      // 100 datagrams/s per ordered pair for 12 s; the agent dies 3 s in.
      const traffic = podcrypt(["verify", "--json", "--seconds", "12", "--count", "1200"], 120_000);
      await sleep(3000);
      const killedAt = Date.now();
      process.kill(proc.pid, "SIGKILL");
      await waitUntil(
        () => {
          const now = processNamed(`agent-${victim}`);
          return now.pid !== proc.pid && alive(now.pid);
        },
        10_000,
        "the supervisor to restart the agent",
      );
      await waitUntil(
        async () => {
          const n = (await status()).nodes.find((x) => x.name === victim);
          return n?.heartbeat !== undefined && Date.parse(n.heartbeat) >= killedAt && n.errors.length === 0;
        },
        30_000,
        "the restarted agent to report",
      );
      assertNoLoss(await traffic, "agent kill -9");

      const afterStatus = await status();
      const node = afterStatus.nodes.find((x) => x.name === victim)!;
      assert.equal(
        node.restarts.agent,
        (before.nodes.find((x) => x.name === victim)?.restarts.agent ?? 0) + 1,
      );
      assert.deepEqual(keysSeenFor(afterStatus, victim), seenBefore, "peers still hold the same public key");
      assert.deepEqual(keyFiles(victim), filesBefore, "the key files are the same");
      assert.equal(afterStatus.epoch, before.epoch);
      assert.equal((await podcrypt(["verify"])).code, 0);
    });

    it("the leading controller dies under traffic: traffic is unaffected, it comes back and a controller leads again", async () => {
      const state = readClusterState(home)!;
      const store = await openDatastore(state.datastore);
      try {
        const leading = await store.leader(CONTROLLER_ELECTION);
        const controllers = (await status()).controllers;
        assert.equal(controllers.length, 2, "cluster up runs a leader and a standby");
        const first = controllers.find((c) => c.identity === leading);
        const standby = controllers.find((c) => c.identity !== leading);
        assert.ok(
          first !== undefined && standby !== undefined,
          `one of ${JSON.stringify(controllers)} leads`,
        );

        const traffic = podcrypt(["verify", "--json", "--seconds", "12", "--count", "1200"], 120_000);
        await sleep(2000);
        const killedAt = Date.now();
        process.kill(first.pid, "SIGKILL");
        // The dead leader's lease expires after its TTL; then the standby and the restarted
        // controller (same identity) race for it: either may lead, one must.
        await sleep(5000);
        let now = controllers;
        await waitUntil(
          async () => {
            now = (await status()).controllers;
            return now.some((c) => c.leader && c.running && c.pid !== first.pid);
          },
          30_000,
          "a running controller to lead",
        );
        const takeoverMs = Date.now() - killedAt;
        assertNoLoss(await traffic, "controller kill -9");
        process.stdout.write(`# controller takeover after kill -9: ${takeoverMs} ms (lease TTL 5 s)\n`);
        const again = now.find((c) => c.name === first.name)!;
        assert.ok(again.running && again.pid !== first.pid, "the supervisor restarted the dead controller");
        assert.equal(again.restarts, first.restarts + 1);

        // The new leader acts: a rotation completes.
        const epoch = (await status()).epoch;
        const rot = await podcrypt(["rotate", "--wait", "--timeout", "60"]);
        assert.equal(rot.code, 0, rot.stderr);
        assert.equal((await status()).epoch, epoch + 1);
      } finally {
        await store.close();
      }
    });

    it("after a rotation under traffic, only the current epoch's private key is left on every node", async () => {
      const before = await status();
      const oldFiles = Object.fromEntries(before.nodes.map((n) => [n.name, keyFiles(n.name)]));
      const traffic = podcrypt(["verify", "--json", "--seconds", "8", "--count", "800"], 120_000);
      await sleep(1500);
      const rot = await podcrypt(["rotate", "--wait", "--timeout", "60"]);
      assert.equal(rot.code, 0, rot.stderr);
      assertNoLoss(await traffic, "rotation");
      const s = await status();
      assert.equal(s.epoch, before.epoch + 1);
      assert.deepEqual(s.timeouts, []);
      for (const n of s.nodes) {
        const files = keyFiles(n.name);
        assert.deepEqual(Object.keys(files), [`epoch-${s.epoch}.key`], `${n.name} key files`);
        assert.ok(!Object.values(oldFiles[n.name]!).includes(files[`epoch-${s.epoch}.key`]!), "a fresh key");
        assert.deepEqual(n.epochs, [s.epoch], `${n.name} publishes only the current epoch`);
      }
    });
  },
);
