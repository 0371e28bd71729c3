// test-tier: netns (root: network namespaces)
//
// Host (node-to-node) encryption on the local cluster, userspace data planes, both modes: `cluster
// up --host-encryption`, then verify's node-to-node pairs and an independent capture of the
// underlay; a node reaching another node's pods; switched off (the capture sees the host marker:
// the capture is not blind to it) and on again; the agents' datastore connection and the tunnels'
// own UDP stay outside the tunnels throughout. Strict host mode on dual-stack pods (`cluster up
// --strict-host`): with one node's tunnel daemon stopped, no IPv4 or IPv6 pod packet and no host
// packet of either family leaves that node in plaintext (a tcpdump capture of the fabric), the
// node's drop counter grows and its agent, still reaching its datastore, publishes the drops;
// switched off, the same host packets cross in plaintext (the capture is not blind to them).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FABRIC_BRIDGE, FABRIC_NETNS, NETNS_PREFIX } from "../../src/localcluster/plan.js";
import { readClusterState } from "../../src/localcluster/state.js";
import { projectRoot } from "../../src/paths.js";
import { canonicalIp } from "../../src/platform/netlink/addr.js";
import { listNetns, run, runIn } from "../../src/platform/netns/netns.js";
import { tsharkCapturing } from "../support/tshark.js";
import { tcpdumpFabric } from "./capture.js";
import { freezeTunnel, outDrops, tunnelDaemon } from "./strict-node.js";
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

/**
 * What an Ethernet frame leaks in plaintext, if anything: a pod address of either family (10.244/16,
 * fd00:10:244::/48), or a host packet of `from` (either family) other than UDP to or from a tunnel
 * port (or IPv6 neighbour discovery).
 */
function leak(
  frame: Buffer,
  from: { v4: string; v6: string },
  tunnelPorts: readonly number[],
): string | undefined {
  const type = frame.length >= 14 ? frame.readUInt16BE(12) : 0;
  if (type === 0x0800 && frame.length >= 34) {
    const src = [...frame.subarray(26, 30)].join(".");
    const dst = [...frame.subarray(30, 34)].join(".");
    if ([src, dst].some((a) => a.startsWith("10.244."))) return `IPv4 pod packet ${src} > ${dst}`;
    if (src !== from.v4) return undefined;
    const proto = frame[23];
    const ihl = (frame[14]! & 0x0f) * 4;
    const ports = proto === 17 ? [frame.readUInt16BE(14 + ihl), frame.readUInt16BE(14 + ihl + 2)] : [];
    return ports.some((p) => tunnelPorts.includes(p))
      ? undefined
      : `host packet ${src} > ${dst} protocol ${proto} ports ${ports.join(">")}`;
  }
  if (type === 0x86dd && frame.length >= 54) {
    const pod = (off: number) => frame.subarray(off, off + 6).equals(Buffer.from("fd0000100244", "hex"));
    if (pod(22) || pod(38)) return "IPv6 pod packet";
    const src = canonicalIp(
      frame
        .subarray(22, 38)
        .toString("hex")
        .replace(/(.{4})(?!$)/g, "$1:"),
    );
    if (src !== canonicalIp(from.v6)) return undefined;
    const next = frame[20];
    const ports = next === 17 ? [frame.readUInt16BE(54), frame.readUInt16BE(56)] : [];
    // Neighbour discovery (ICMPv6 133-137) is how the node finds its next hop: not host traffic.
    if (next === 58 && frame[54]! >= 133 && frame[54]! <= 137) return undefined;
    return ports.some((p) => tunnelPorts.includes(p))
      ? undefined
      : `host packet ${src} protocol ${next} ports ${ports.join(">")}`;
  }
  return undefined;
}

for (const mode of ["wireguard", "ipsec"] as const) {
  describe(
    `strict host mode on the local cluster (3 nodes, dual-stack pods, userspace ${mode})`,
    { skip: busy ? "a local cluster is already running on this machine" : false },
    () => {
      const { home, podcrypt, remove } = clusterCli(`strict-host-${mode}`);
      const children = new Set<ChildProcess>();
      const frozen = new Set<number>();
      const tunnelPorts = mode === "ipsec" ? [4500] : [51820, 51821];
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
          "--ip-family",
          "dual",
          "--host-encryption",
          "--strict-host",
          "--timeout",
          "150",
        ]);
        assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
        assert.match(up.stdout, /host encryption on \(strict\)/);
      });
      after(async () => {
        for (const pid of frozen) process.kill(pid, "SIGCONT");
        for (const c of children) c.kill("SIGKILL");
        await podcrypt(["cluster", "down"]);
        remove();
      });

      /**
       * Stops node-1's daemon of the tunnel that carries node-2's pods (SIGSTOP, its interface
       * held down, a default route of each family on the underlay as a real node has), runs `fn`
       * with a capture of the fabric, and resumes the daemon.
       */
      async function withStoppedDaemon(
        tag: string,
        fn: (n: {
          n1: string;
          n2: string;
          n1Ns: string;
          n2Addr: { v4: string; v6: string };
        }) => Promise<void>,
      ): Promise<Buffer[]> {
        const state = readClusterState(home)!;
        const [n1, n2] = state.plan.nodes;
        const to6 = state.plan.pods.find((p) => p.node === n2!.name)!.ips[1]!;
        const { dev, pid: daemon } = await tunnelDaemon(n1!.netns, to6);
        for (const [family, via] of [
          ["-4", n2!.underlayIPv4],
          ["-6", n2!.underlayIPv6],
        ] as const)
          await runIn(n1!.netns, "ip", [family, "route", "replace", "default", "via", via, "dev", "eth0"]);
        const stop = await tcpdumpFabric(join(home, `${tag}.pcap`), children, { remove: true });
        const release = await freezeTunnel(n1!.netns, dev, daemon, frozen);
        try {
          await sleep(500);
          await fn({
            n1: n1!.name,
            n2: n2!.name,
            n1Ns: n1!.netns,
            n2Addr: { v4: n2!.underlayIPv4, v6: n2!.underlayIPv6 },
          });
          await sleep(500);
          return (await stop()).map((r) => r.data);
        } finally {
          release();
          process.kill(daemon, "SIGCONT");
          frozen.delete(daemon);
          await runIn(n1!.netns, "ip", ["link", "set", dev, "up"]).catch(() => "");
        }
      }

      /**
       * Host packets from node `ns` to both of a node's addresses: `podcrypt debug probe` UDP
       * messages with `marker`-v4 and `marker`-v6, and 10 pings of each family.
       */
      async function hostPackets(
        ns: string,
        addr: { v4: string; v6: string },
        marker: string,
      ): Promise<void> {
        for (const [family, target, tag] of [
          ["-4", addr.v4, "v4"],
          ["-6", `[${addr.v6}]`, "v6"],
        ] as const) {
          await probeFrom(ns, `udp:${target}:5009`, `${marker}-${tag}`);
          await runIn(ns, "ping", [
            family,
            "-n",
            "-q",
            "-c",
            "10",
            "-i",
            "0.02",
            "-W",
            "1",
            family === "-4" ? addr.v4 : addr.v6,
          ]).catch(() => "");
        }
      }

      /** node-1's host addresses, the sources of what `leak` looks for. */
      const node1 = (): { v4: string; v6: string } => {
        const n = readClusterState(home)!.plan.nodes[0]!;
        return { v4: n.underlayIPv4, v6: n.underlayIPv6 };
      };

      it("verify passes with it on: every pod pair of both families and every node pair, none in plaintext", async () => {
        const r = await podcrypt(["verify", "--json"]);
        const v = JSON.parse(r.stdout) as Verify;
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.equal(v.ok, true);
        // Every ordered node pair, in both families (the nodes have IPv4 and IPv6 host addresses).
        assert.equal(v.pairs.filter((p) => p.host === true).length, 12);
      });

      it("a node's tunnel daemon stopped: no pod packet of either family and no host packet leaves it in plaintext; dropped, counted, published", async () => {
        const nonce = randomBytes(4).toString("hex");
        const marker = `STRICTHOST-ON-${nonce}`;
        const counts = { before: 0, pods: 0, host: 0 };
        let names = { n1: "", n2: "" };
        const frames = await withStoppedDaemon(`strict-on-${nonce}`, async ({ n1, n2, n1Ns, n2Addr }) => {
          names = { n1, n2 };
          const state = readClusterState(home)!;
          const from = state.plan.pods.find((p) => p.node === n1)!;
          const [to4, to6] = state.plan.pods.find((p) => p.node === n2)!.ips;
          counts.before = await outDrops(n1Ns, n2);
          for (const [family, ip] of [
            ["-6", to6!],
            ["-4", to4!],
          ] as const)
            await runIn(from.netns, "ping", [
              family,
              "-n",
              "-q",
              "-c",
              "20",
              "-i",
              "0.02",
              "-W",
              "1",
              ip,
            ]).catch(() => "");
          counts.pods = await outDrops(n1Ns, n2);
          await hostPackets(n1Ns, n2Addr, marker);
          counts.host = await outDrops(n1Ns, n2);
        });
        const from = node1();
        assert.deepEqual(
          frames.map((f) => leak(f, from, tunnelPorts)).filter((l) => l !== undefined),
          [],
          "nothing of node-1's pods or of its host crossed the fabric in plaintext",
        );
        assert.equal(
          frames.some((f) => f.includes(marker)),
          false,
          "the host marker crossed in plaintext",
        );
        assert.ok(counts.pods - counts.before >= 40, `pod packets dropped: ${counts.pods - counts.before}`);
        assert.ok(counts.host - counts.pods >= 30, `host packets dropped: ${counts.host - counts.pods}`);
        // The agent kept its datastore: node-1 stays live and publishes the drops it counted.
        let published = 0;
        for (let i = 0; i < 60 && published < counts.host; i++) {
          if (i > 0) await sleep(500);
          const s = JSON.parse((await podcrypt(["status", "--json"])).stdout) as {
            nodes: Array<{
              name: string;
              live: boolean;
              plaintextDrops?: Array<{ peer: string; direction: string; packets: number }>;
            }>;
          };
          const n = s.nodes.find((x) => x.name === names.n1)!;
          assert.equal(n.live, true, `${names.n1} live`);
          published =
            n.plaintextDrops?.find((d) => d.peer === names.n2 && d.direction === "out")?.packets ?? 0;
        }
        assert.ok(published >= counts.host, `node-1 published ${published} drops, counted ${counts.host}`);
        process.stdout.write(
          `# ${mode}: daemon stopped, strict host on: dropped ${counts.pods - counts.before} pod and ${counts.host - counts.pods} host packets, 0 in plaintext on the fabric (${frames.length} frames)\n`,
        );
      });

      it("switched off (--no-strict-host), the same host packets cross in plaintext: the capture is not blind", async () => {
        // The daemon runs again: wait until every pair passes, then switch (a rotation, acknowledged by every node).
        let v: Verify | undefined;
        for (let i = 0; i < 20 && v?.ok !== true; i++) {
          if (i > 0) await sleep(1000);
          v = JSON.parse((await podcrypt(["verify", "--json"])).stdout) as Verify;
        }
        assert.equal(v?.ok, true, "the cluster recovers once the daemon runs again");
        const off = await podcrypt(["enable", "--no-strict-host", "--wait"]);
        assert.equal(off.code, 0, off.stderr);
        const nonce = randomBytes(4).toString("hex");
        const marker = `STRICTHOST-OFF-${nonce}`;
        let dropped = 0;
        const frames = await withStoppedDaemon(`strict-off-${nonce}`, async ({ n1Ns, n2, n2Addr }) => {
          const before = await outDrops(n1Ns, n2);
          await hostPackets(n1Ns, n2Addr, marker);
          dropped = (await outDrops(n1Ns, n2)) - before;
        });
        const from = node1();
        for (const tag of ["v4", "v6"])
          assert.equal(
            frames.some((f) => f.includes(`${marker}-${tag}`)),
            true,
            `strict host mode off: the ${tag} host marker crosses in plaintext`,
          );
        const leaks = frames.map((f) => leak(f, from, tunnelPorts)).filter((l) => l !== undefined);
        for (const proto of ["protocol 1 ", "protocol 58 "])
          assert.ok(
            leaks.filter((l) => l.includes(proto)).length >= 10,
            `the pings (${proto.trim()}) cross in plaintext: ${leaks.join("; ")}`,
          );
        assert.equal(dropped, 0, "no host packet dropped");
      });
    },
  );
}
