// test-tier: netns (root: network namespaces)
//
// Host (node-to-node) encryption on the local cluster, userspace data planes, both modes: `cluster
// up --host-encryption`, then verify's node-to-node pairs and an independent capture of the
// underlay; a node reaching another node's pods; switched off (the capture sees the host marker:
// the capture is not blind to it) and on again; the agents' datastore connection and the tunnels'
// own UDP stay outside the tunnels throughout.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FABRIC_BRIDGE, FABRIC_NETNS, NETNS_PREFIX } from "../../src/localcluster/plan.js";
import { projectRoot } from "../../src/paths.js";
import { listNetns, run } from "../../src/platform/netns/netns.js";
import { tsharkCapturing } from "../support/tshark.js";
import { clusterCli } from "./run-cli.js";

const busy = (await listNetns()).some((n) => n.startsWith(NETNS_PREFIX));

interface Info {
  nodes: Array<{ name: string; netns: string; underlayIPv4: string }>;
  pods: Array<{ name: string; node: string; ip: string }>;
}

interface Verify {
  ok: boolean;
  pairs: Array<{ from: string; to: string; delivered: boolean; plaintextSeen: boolean; host?: boolean }>;
}

/** A capture of the whole underlay (the fabric bridge) into `file`, running once it captures. */
async function capture(file: string, children: Set<ChildProcess>): Promise<() => Promise<Buffer>> {
  const t = spawn("ip", ["netns", "exec", FABRIC_NETNS, "tshark", "-n", "-i", FABRIC_BRIDGE, "-w", file], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.add(t);
  await tsharkCapturing(t);
  return async () => {
    const done = new Promise((r) => t.once("exit", r));
    t.kill("SIGINT");
    await done;
    children.delete(t);
    const bytes = readFileSync(file);
    rmSync(file, { force: true });
    return bytes;
  };
}

/** `podcrypt debug probe` inside `netns` (a node's own namespace): marked messages to one target. */
async function probeFrom(netns: string, target: string, marker: string): Promise<number> {
  const out = await run("ip", [
    "netns",
    "exec",
    netns,
    process.execPath,
    join(projectRoot(), "bin", "podcrypt"),
    "debug",
    "probe",
    "--targets",
    `${target}:${marker}`,
    "--count",
    "5",
    "--seconds",
    "1",
  ]);
  return (JSON.parse(out) as Record<string, { echoed: number }>)[marker]!.echoed;
}

for (const mode of ["wireguard", "ipsec"] as const) {
  describe(
    `host encryption on the local cluster (3 nodes, userspace ${mode})`,
    { skip: busy ? "a local cluster is already running on this machine" : false },
    () => {
      const { podcrypt, remove } = clusterCli(`host-enc-${mode}`);
      const children = new Set<ChildProcess>();
      let info: Info;
      let ruleBefore = "";

      before(async () => {
        const up = await podcrypt([
          "cluster",
          "up",
          "--nodes",
          "3",
          "--mode",
          mode,
          "--dataplane",
          "userspace",
          "--host-encryption",
          "--timeout",
          "150",
        ]);
        assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
        assert.match(up.stdout, /host encryption on/);
        info = JSON.parse((await podcrypt(["cluster", "info", "--json"])).stdout) as Info;
      });
      after(async () => {
        for (const c of children) c.kill("SIGKILL");
        await podcrypt(["cluster", "down"]);
        remove();
      });

      it("verify checks every node-to-node pair besides the pod pairs: all delivered, none in plaintext", async () => {
        const r = await podcrypt(["verify", "--json"]);
        const v = JSON.parse(r.stdout) as Verify;
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.equal(v.ok, true);
        const host = v.pairs.filter((p) => p.host === true);
        assert.equal(host.length, 6, "one node-to-node check per ordered node pair");
        assert.equal(v.pairs.length, 12);
        for (const p of v.pairs)
          assert.deepEqual(
            [p.delivered, p.plaintextSeen],
            [true, false],
            `${p.from}->${p.to} host=${p.host}`,
          );
      });

      it("a node reaches another node's pods and node addresses through the tunnel; the tunnels' own UDP stays outside", async () => {
        const [n1, n2] = info.nodes;
        const pod = info.pods.find((p) => p.node === n2!.name)!;
        const nonce = randomBytes(4).toString("hex");
        const toPod = `HOSTENC-POD-${nonce}`;
        const toNode = `HOSTENC-NODE-${nonce}`;
        const stop = await capture(`/tmp/podcrypt-host-enc-${nonce}.pcap`, children);
        const echoed = await probeFrom(n1!.netns, `udp:${pod.ip}:7`, toPod);
        // Nothing listens there: what matters is what crossed the underlay.
        await probeFrom(n1!.netns, `udp:${n2!.underlayIPv4}:5009`, toNode);
        const pcap = await stop();
        assert.equal(echoed, 5, "node-1 → a pod of node-2: every message echoed");
        assert.equal(pcap.includes(toPod), false, "node → pod marker seen in plaintext");
        assert.equal(pcap.includes(toNode), false, "node → node marker seen in plaintext");
        // The host table routes the other nodes' addresses into the tunnel; the tunnels' ports are
        // excluded ahead of it, or no tunnel could carry anything.
        const rules = await run("ip", ["netns", "exec", n1!.netns, "ip", "rule", "show"]);
        ruleBefore = rules;
        assert.match(rules, /5031:\s+from all lookup 5041/);
        assert.match(
          rules,
          new RegExp(`5030:\\s+from all ipproto udp sport ${mode === "ipsec" ? 4500 : 51820}`),
        );
        const table = await run("ip", ["netns", "exec", n1!.netns, "ip", "route", "show", "table", "5041"]);
        for (const n of info.nodes.slice(1))
          assert.match(
            table,
            new RegExp(
              `${n.underlayIPv4.replaceAll(".", "\\.")} dev \\S+ .*src ${n1!.underlayIPv4.replaceAll(".", "\\.")}`,
            ),
          );
      });

      it("switched off, host traffic crosses in plaintext (the capture sees it); switched on again, it does not", async () => {
        const [n1, n2] = info.nodes;
        const off = await podcrypt(["enable", "--no-host", "--wait"]);
        assert.equal(off.code, 0, off.stderr);
        const nonce = randomBytes(4).toString("hex");
        let stop = await capture(`/tmp/podcrypt-host-enc-off-${nonce}.pcap`, children);
        await probeFrom(n1!.netns, `udp:${n2!.underlayIPv4}:5009`, `HOSTENC-OFF-${nonce}`);
        let pcap = await stop();
        assert.equal(
          pcap.includes(`HOSTENC-OFF-${nonce}`),
          true,
          "host encryption off: the marker crosses in plaintext",
        );
        const rules = await run("ip", ["netns", "exec", n1!.netns, "ip", "rule", "show"]);
        assert.doesNotMatch(rules, /lookup 5041/);
        assert.doesNotMatch(rules, /^5030:/m);
        const vOff = JSON.parse((await podcrypt(["verify", "--json"])).stdout) as Verify;
        assert.equal(vOff.ok, true);
        assert.equal(vOff.pairs.filter((p) => p.host === true).length, 0, "no node-to-node checks while off");

        const on = await podcrypt(["enable", "--host", "--wait"]);
        assert.equal(on.code, 0, on.stderr);
        stop = await capture(`/tmp/podcrypt-host-enc-on-${nonce}.pcap`, children);
        await probeFrom(n1!.netns, `udp:${n2!.underlayIPv4}:5009`, `HOSTENC-ON-${nonce}`);
        pcap = await stop();
        assert.equal(
          pcap.includes(`HOSTENC-ON-${nonce}`),
          false,
          "host encryption on again: marker in plaintext",
        );
        assert.equal(await run("ip", ["netns", "exec", n1!.netns, "ip", "rule", "show"]), ruleBefore);
        const v = JSON.parse((await podcrypt(["verify", "--json"])).stdout) as Verify;
        assert.equal(v.ok, true, JSON.stringify(v.pairs.filter((p) => !p.delivered || p.plaintextSeen)));
        assert.equal(v.pairs.filter((p) => p.host === true).length, 6);
      });

      it("the agents keep their datastore: every node live and every peer established", async () => {
        const s = JSON.parse((await podcrypt(["status", "--json"])).stdout) as {
          nodes: Array<{ name: string; live: boolean; peers: Array<{ node: string; state: string }> }>;
        };
        assert.equal(s.nodes.length, 3);
        for (const n of s.nodes) {
          assert.equal(n.live, true, `${n.name} live`);
          assert.deepEqual(
            [...new Set(n.peers.filter((p) => p.state === "established").map((p) => p.node))].sort(),
            info.nodes.filter((x) => x.name !== n.name).map((x) => x.name),
            `${n.name}'s peers`,
          );
        }
      });
    },
  );
}
