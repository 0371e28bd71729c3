// test-tier: netns (root: network namespaces)
/**
 * Dual-stack pods with host encryption on the local cluster, userspace data planes, both modes,
 * over either underlay:
 * - `--ip-family dual --host-encryption` (IPv4 underlay; the nodes publish IPv6 fabric addresses
 *   too) and `--ip-family dual --underlay-family ipv6 --host-encryption` (an IPv6-only underlay
 *   carrying IPv4 and IPv6 pods): `verify` passes for every ordered pod pair in both families and
 *   every node-to-node pair in each family the nodes have host addresses of (both, IPv6 only), and
 *   a capture of the fabric of its own (tcpdump, not verify's) sees no marker of either family and
 *   no host marker, the tunnels' packets only of the underlay's family, and on the IPv6 underlay
 *   no IPv4 frame at all;
 * - host traffic of each family: a node's marked datagrams to another node's address do not cross
 *   the fabric in plaintext, while the same to the discard port (which host encryption leaves
 *   outside the tunnels) do: the capture sees host traffic of that family;
 * - strict mode: with one node's tunnel daemon stopped (SIGSTOP, its interface held down, as in
 *   the Prometheus test, and a default route of each family on the underlay as a real node has),
 *   IPv6 and then IPv4 pod traffic toward another node is dropped by that node's rules (the
 *   peer's drop counter grows with each family) and not one packet with a pod address of either
 *   family crosses the fabric.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { after, afterEach, describe, it } from "node:test";
import { randomBytes } from "node:crypto";
import { projectRoot } from "../../src/paths.js";
import { readClusterState } from "../../src/localcluster/state.js";
import { runIn } from "../../src/platform/netns/netns.js";
import { tcpdumpFabric } from "./capture.js";
import { freezeTunnel, outDrops, tunnelDaemon } from "./strict-node.js";
import { clusterBusy, clusterCli, type VerifyJson } from "./run-cli.js";

const busy = await clusterBusy();
const children = new Set<ChildProcess>();
const frozen = new Set<number>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The UDP destination port of an Ethernet frame carrying UDP over IPv4 or IPv6 (no extension headers), if any. */
function udpPort(frame: Buffer): { family: "ipv4" | "ipv6"; port: number } | undefined {
  const type = frame.length >= 14 ? frame.readUInt16BE(12) : 0;
  if (type === 0x0800 && frame.length >= 38 && frame[23] === 17) {
    const ihl = (frame[14]! & 0x0f) * 4;
    return { family: "ipv4", port: frame.readUInt16BE(14 + ihl + 2) };
  }
  if (type === 0x86dd && frame.length >= 58 && frame[20] === 17)
    return { family: "ipv6", port: frame.readUInt16BE(56) };
  return undefined;
}

after(() => {
  for (const pid of frozen) process.kill(pid, "SIGCONT");
  for (const c of children) c.kill("SIGKILL");
});

const setups = [
  { mode: "wireguard", underlay: "ipv4", ports: [51820, 51821] },
  { mode: "wireguard", underlay: "ipv6", ports: [51820, 51821] },
  { mode: "ipsec", underlay: "ipv4", ports: [4500] },
  { mode: "ipsec", underlay: "ipv6", ports: [4500] },
] as const;

for (const s of setups) {
  describe(
    `dual-stack pods, ${s.mode}, userspace, ${s.underlay} underlay`,
    { skip: busy === false ? false : busy, concurrency: 1 },
    () => {
      const { home, podcrypt, remove } = clusterCli(`dualstack-${s.mode}-${s.underlay}`);
      let up = false;
      afterEach(() => {
        for (const pid of frozen) process.kill(pid, "SIGCONT");
        frozen.clear();
      });
      after(async () => {
        for (const c of children) c.kill("SIGKILL");
        if (up) await podcrypt(["cluster", "down"]);
        remove();
      });

      // The families of the nodes' host addresses: an IPv4 underlay with IPv6 pods has both.
      const hostFamilies = s.underlay === "ipv4" ? ["ipv4", "ipv6"] : ["ipv6"];

      it("verify passes in both families and node to node; an independent capture sees no marker and the tunnels on the underlay's family only", async () => {
        const r = await podcrypt([
          "cluster",
          "up",
          "--ip-family",
          "dual",
          "--underlay-family",
          s.underlay,
          "--mode",
          s.mode,
          "--dataplane",
          "userspace",
          "--host-encryption",
          "--timeout",
          "150",
        ]);
        up = true;
        assert.equal(r.code, 0, `cluster up failed: ${r.stderr}`);
        const stop = await tcpdumpFabric(join(home, "fabric.pcap"), children);
        const v = await podcrypt(["verify", "--json"]);
        const frames = await stop();
        assert.equal(v.code, 0, `verify failed: ${v.stderr}\n${v.stdout}`);
        const result = JSON.parse(v.stdout) as VerifyJson;
        assert.equal(result.ok, true);
        // 3 nodes: 6 ordered pairs, each in both families for the pods and in each host family node to node.
        assert.deepEqual(
          result.pairs.map((p) => `${p.from}>${p.to} ${p.host === true ? "host" : "pod"} ${p.family}`).sort(),
          ["node-1", "node-2", "node-3"]
            .flatMap((a) =>
              ["node-1", "node-2", "node-3"]
                .filter((b) => b !== a)
                .flatMap((b) => [
                  `${a}>${b} pod ipv4`,
                  `${a}>${b} pod ipv6`,
                  ...hostFamilies.map((f) => `${a}>${b} host ${f}`),
                ]),
            )
            .sort(),
        );
        for (const p of result.pairs)
          assert.deepEqual(
            [p.delivered, p.plaintextSeen],
            [true, false],
            `${p.from}>${p.to} ${p.family}${p.host === true ? " node-to-node" : ""}`,
          );
        assert.equal(
          frames.filter((f) => f.data.includes("PODCRYPT-VERIFY")).length,
          0,
          "no verify marker (pod of either family, or host) on the fabric",
        );
        const tunnel = frames
          .map((f) => udpPort(f.data))
          .filter((u) => u !== undefined && s.ports.some((p) => p === u.port));
        assert.ok(tunnel.length >= 24, `the probes crossed the tunnels (${tunnel.length} tunnel packets)`);
        assert.deepEqual(
          [...new Set(tunnel.map((u) => u!.family))],
          [s.underlay],
          "tunnel packets of the underlay's family",
        );
        if (s.underlay === "ipv6")
          assert.equal(
            frames.filter((f) => [0x0800, 0x0806].includes(f.data.readUInt16BE(12))).length,
            0,
            "an IPv6-only underlay: no IPv4 or ARP frame on the fabric",
          );
      });

      it("host traffic of each host family goes through the tunnels; to the discard port, left outside them, it crosses in plaintext", async () => {
        const state = readClusterState(home);
        assert.ok(state !== undefined, "the cluster of the test before runs");
        const [n1, n2] = state.plan.nodes;
        const nonce = randomBytes(4).toString("hex");
        const stop = await tcpdumpFabric(join(home, "host.pcap"), children);
        const sent: Array<{ family: string; tunnelled: string; outside: string }> = [];
        for (const family of hostFamilies) {
          const ip = family === "ipv4" ? n2!.underlayIPv4 : `[${n2!.underlayIPv6}]`;
          const tunnelled = `HOSTV6-IN-${family}-${nonce}`;
          const outside = `HOSTV6-OUT-${family}-${nonce}`;
          // Nothing listens at either port: what matters is what crosses the fabric.
          await runIn(n1!.netns, process.execPath, [
            join(projectRoot(), "bin", "podcrypt"),
            "debug",
            "probe",
            "--targets",
            `udp:${ip}:5009:${tunnelled},udp:${ip}:9:${outside}`,
            "--count",
            "3",
            "--seconds",
            "1",
          ]);
          sent.push({ family, tunnelled, outside });
        }
        const frames = await stop();
        for (const x of sent) {
          assert.equal(
            frames.some((f) => f.data.includes(x.outside)),
            true,
            `${x.family}: the capture sees host traffic left outside the tunnels`,
          );
          assert.equal(
            frames.some((f) => f.data.includes(x.tunnelled)),
            false,
            `${x.family}: node-to-node marker in plaintext`,
          );
        }
      });

      it("strict mode, a node's tunnel daemon stopped: IPv6 and IPv4 pod packets dropped at the node, none on the fabric", async () => {
        const state = readClusterState(home);
        assert.ok(state !== undefined, "the cluster of the test before runs");
        const [n1, n2] = state.plan.nodes;
        const from = state.plan.pods.find((p) => p.node === n1!.name)!;
        const to = state.plan.pods.find((p) => p.node === n2!.name)!;
        const [to4, to6] = to.ips;
        assert.ok(to4 !== undefined && to6 !== undefined && to6.includes(":"), JSON.stringify(to.ips));
        const { dev, pid: daemon } = await tunnelDaemon(n1!.netns, to6);
        // As on a real node: default routes of both families on the underlay, the way plaintext
        // would leave once the tunnel's routes are gone; through node-2's fabric addresses, which
        // answer ARP and neighbour solicitations, so that a packet not dropped does cross.
        const v4gw = s.underlay === "ipv6" ? ["inet6", n2!.underlayIPv6] : [n2!.underlayIPv4];
        await runIn(n1!.netns, "ip", ["-4", "route", "add", "default", "via", ...v4gw, "dev", "eth0"]);
        await runIn(n1!.netns, "ip", [
          "-6",
          "route",
          "add",
          "default",
          "via",
          n2!.underlayIPv6,
          "dev",
          "eth0",
        ]);
        const stop = await tcpdumpFabric(join(home, "strict.pcap"), children, {
          filter: "net 10.244.0.0/16 or net fd00:10:244::/48",
        });
        const release = await freezeTunnel(n1!.netns, dev, daemon, frozen);
        try {
          await sleep(500);
          const before = await outDrops(n1!.netns, n2!.name);
          const ping = (family: "-4" | "-6", ip: string) =>
            runIn(from.netns, "ping", [family, "-n", "-q", "-c", "20", "-i", "0.02", "-W", "1", ip]).catch(
              (e: Error) => e.message,
            );
          await ping("-6", to6);
          const after6 = await outDrops(n1!.netns, n2!.name);
          await ping("-4", to4);
          const after4 = await outDrops(n1!.netns, n2!.name);
          await sleep(500);
          const frames = await stop();
          assert.deepEqual(
            frames.map((f) => f.data.subarray(12, 14).toString("hex")),
            [],
            "no packet with a pod address of either family crossed the fabric",
          );
          assert.ok(
            after6 - before >= 20,
            `IPv6 pod packets dropped by node-1's strict rules: ${after6 - before}`,
          );
          assert.ok(
            after4 - after6 >= 20,
            `IPv4 pod packets dropped by node-1's strict rules: ${after4 - after6}`,
          );
          process.stdout.write(
            `# ${s.mode}/${s.underlay} underlay, ${dev} stopped: dropped ${after6 - before} IPv6 and ${after4 - after6} IPv4 pod packets, 0 on the fabric\n`,
          );
        } finally {
          release();
        }
      });
    },
  );
}
