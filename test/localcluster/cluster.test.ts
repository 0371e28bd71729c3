// test-tier: netns (root: network namespaces)
import assert from "node:assert/strict";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { LocalDatastore } from "../../src/datastore/local/index.js";
import { listNetns } from "../../src/platform/netns/netns.js";
import { NETNS_PREFIX } from "../../src/localcluster/plan.js";
import { bulkBetweenNodes } from "./bulk.js";
import { clusterCli, rotateUnderTraffic } from "./run-cli.js";

const { home, podcrypt } = clusterCli("cluster-test");

async function ours(): Promise<string[]> {
  return (await listNetns()).filter((n) => n.startsWith(NETNS_PREFIX));
}

// The local cluster owns the `pc-` namespaces: never disturb one a person is running.
const busy = (await ours()).length > 0;
after(() => rmSync(home, { recursive: true, force: true }));

describe(
  "local cluster (3 nodes x 2 pods, userspace WireGuard)",
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

    it("refuses a second `cluster up` clearly", async () => {
      const r = await podcrypt(["cluster", "up"]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /already running/);
      // One line, saying nothing changed: not the "left for a look" of an `up` that failed.
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /nothing changed/);
      assert.doesNotMatch(r.stderr, /for a look/);
    });

    it("describes itself as the contract says (cluster info --json)", async () => {
      const info = JSON.parse((await podcrypt(["cluster", "info", "--json"])).stdout) as {
        fabric: { netns: string; bridge: string };
        nodes: Array<{ name: string; netns: string; underlayIPv4: string; podCIDR: string }>;
        pods: Array<{ name: string; node: string; netns: string; ip: string }>;
      };
      assert.equal(info.nodes.length, 3);
      assert.equal(info.pods.length, 6);
      assert.ok(info.fabric.bridge !== "" && info.fabric.netns !== "");
      const netns = await listNetns();
      for (const n of info.nodes) assert.ok(netns.includes(n.netns), n.netns);
    });

    it("verify passes: every ordered pair delivered, no marker on the underlay", async () => {
      const r = await podcrypt(["verify", "--json"]);
      const v = JSON.parse(r.stdout) as {
        ok: boolean;
        pairs: Array<{ from: string; to: string; delivered: boolean; plaintextSeen: boolean }>;
      };
      assert.equal(r.code, 0, r.stderr);
      assert.equal(v.ok, true);
      assert.equal(v.pairs.length, 6);
      for (const p of v.pairs)
        assert.deepEqual([p.delivered, p.plaintextSeen], [true, false], `${p.from}->${p.to}`);
    });

    it("pods push bulk TCP to pods of another node through the tunnel (full-sized segments)", () =>
      bulkBetweenNodes(podcrypt));

    it("status shows every peer established, with counters that grow with traffic", async () => {
      type S = {
        enabled: boolean;
        mode: string;
        phase: string;
        epoch: number;
        nodes: Array<{
          name: string;
          backend: string;
          peers: Array<{ node: string; state: string; txBytes: number; rxBytes: number }>;
        }>;
      };
      const before = JSON.parse((await podcrypt(["status", "--json"])).stdout) as S;
      assert.equal(before.enabled, true);
      assert.equal(before.mode, "wireguard");
      for (const n of before.nodes) {
        assert.equal(n.backend, "wireguard-userspace");
        assert.equal(new Set(n.peers.map((p) => p.node)).size, 2, `${n.name} peers`);
      }
      await podcrypt(["verify"]);
      const later = JSON.parse((await podcrypt(["status", "--json"])).stdout) as S;
      const total = (s: S): number =>
        s.nodes.flatMap((n) => n.peers).reduce((a, p) => a + p.txBytes + p.rxBytes, 0);
      assert.ok(total(later) > total(before), `counters grew: ${total(before)} -> ${total(later)}`);
    });

    it("10 rotations under continuous traffic between every pair: 0 lost, 0 plaintext, epochs advance, old keys gone", async () => {
      const epochBefore = (JSON.parse((await podcrypt(["status", "--json"])).stdout) as { epoch: number })
        .epoch;
      const rotations = 10;
      // 100 datagrams/s to every other node from one pod per node, from before the first
      // rotation until 3 s after the last, when the test ends it (SIGINT); at most 400 s.
      const { verify: v, rotatedMs } = await rotateUnderTraffic(
        podcrypt,
        ["--seconds", "400", "--count", "40000"],
        600_000,
        rotations,
      );
      for (const p of v.pairs) {
        assert.equal(p.plaintextSeen, false, `${p.from}->${p.to} plaintext`);
        assert.equal(p.echoed, p.sent, `${p.from}->${p.to} lost ${p.sent - p.echoed} of ${p.sent}`);
      }
      const epochAfter = (JSON.parse((await podcrypt(["status", "--json"])).stdout) as { epoch: number })
        .epoch;
      assert.equal(epochAfter, epochBefore + rotations);
      // Retired private keys are gone: each node keeps only the current epoch's key file.
      for (const node of ["node-1", "node-2", "node-3"]) {
        assert.deepEqual(
          readdirSync(join(home, "nodes", node)).filter((f) => f.endsWith(".key")),
          [`epoch-${epochAfter}.key`],
        );
      }
      process.stdout.write(
        `# ${rotations} rotations in ${(rotatedMs / 1000).toFixed(1)} s under traffic, 0 lost\n`,
      );
    });

    it("disable and enable under traffic lose nothing; no node sends plaintext once it switched", async () => {
      const traffic = podcrypt(["verify", "--json", "--seconds", "25", "--count", "2500"], 240_000);
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal((await podcrypt(["disable", "--wait", "--timeout", "120"])).code, 0);
      const off = await podcrypt(["verify", "--json"]);
      assert.equal(off.code, 1, "verify must fail on a plaintext cluster");
      const offv = JSON.parse(off.stdout) as { pairs: Array<{ plaintextSeen: boolean }> };
      assert.ok(offv.pairs.every((p) => p.plaintextSeen));
      const enable = await podcrypt(["enable", "--wait", "--timeout", "120"]);
      assert.equal(enable.code, 0);
      const v = JSON.parse((await traffic).stdout) as {
        pairs: Array<{
          from: string;
          to: string;
          sent: number;
          echoed: number;
          plaintextAt?: { lastBySource: Record<string, number> };
        }>;
      };
      for (const p of v.pairs) assert.equal(p.echoed, p.sent, `${p.from}->${p.to} lost ${p.sent - p.echoed}`);
      // From the moment a node switched to sending encrypted in the enable run (its switch
      // acknowledgement is written after its routes moved), none of its pods' packets crossed the
      // underlay in plaintext: neither their requests nor their echoes.
      const { epoch } = JSON.parse((await podcrypt(["status", "--json"])).stdout) as { epoch: number };
      const store = await LocalDatastore.open({ dir: join(home, "store") });
      const switched = new Map<string, number>();
      try {
        for (const { value: n } of (await store.collection("nodes").list()).items) {
          const ack = n.acknowledgements.find((a) => a.epoch === epoch && a.phase === "switch");
          assert.ok(ack, `${n.name} acknowledged switch@${epoch}`);
          switched.set(n.name, Date.parse(ack.at));
        }
      } finally {
        await store.close();
      }
      const info = JSON.parse((await podcrypt(["cluster", "info", "--json"])).stdout) as {
        pods: Array<{ node: string; ip: string }>;
      };
      const nodeOf = new Map(info.pods.map((x) => [x.ip, x.node]));
      let checked = 0;
      for (const p of v.pairs)
        for (const [ip, last] of Object.entries(p.plaintextAt?.lastBySource ?? {})) {
          const node = nodeOf.get(ip)!;
          assert.ok(
            last <= switched.get(node)!,
            `${node} sent ${p.from}->${p.to} traffic in plaintext ${last - switched.get(node)!} ms after it switched`,
          );
          checked++;
        }
      assert.ok(checked >= 6, "plaintext (while disabled) was seen and placed in time");
      assert.equal((await podcrypt(["verify"])).code, 0);
    });

    it("cluster down leaves nothing behind", async () => {
      const r = await podcrypt(["cluster", "down"]);
      assert.equal(r.code, 0);
      assert.deepEqual(await ours(), []);
      const again = await podcrypt(["status"]);
      assert.notEqual(again.code, 0);
      assert.match(again.stderr, /no local cluster is running/);
    });
  },
);

describe(
  "local cluster started with --disabled",
  { skip: busy ? "a local cluster is already running on this machine" : false },
  () => {
    after(async () => {
      await podcrypt(["cluster", "down"]);
    });

    it("verify fails and names every pair as plaintext", async () => {
      const up = await podcrypt(["cluster", "up", "--disabled", "--timeout", "150"]);
      assert.equal(up.code, 0, `cluster up --disabled failed: ${up.stderr}`);
      const r = await podcrypt(["verify"]);
      assert.equal(r.code, 1);
      for (const a of [1, 2, 3]) {
        for (const b of [1, 2, 3]) {
          if (a !== b)
            assert.ok(
              r.stderr.includes(`node-${a}→node-${b}`),
              `stderr names node-${a}→node-${b}: ${r.stderr}`,
            );
        }
      }
      assert.match(r.stderr, /plaintext on the underlay/);
    });
  },
);
