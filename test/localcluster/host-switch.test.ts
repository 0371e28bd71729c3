// test-tier: netns (root: network namespaces)
//
// Host encryption switched and rotated under continuous traffic, 3 dual-stack nodes (IPv4
// underlay), userspace data planes, both modes: with host encryption on, 5 rotations; then host
// encryption off, on and off again. Throughout, every node sends sequence-numbered UDP to a pod of
// every other node over IPv4 and over IPv6, and from its own addresses to every other node's
// address of each family (host traffic: the nodes have IPv6 fabric addresses besides the IPv4
// underlay), 100 datagrams per second each. Nothing may be lost, and an independent capture of
// the underlay (tcpdump on the fabric bridge) may show no pod marker at all and no host marker
// while host encryption is on; while it is off the host marker crosses in plaintext (so the capture
// is not blind to it).
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { readClusterState } from "../../src/localcluster/state.js";
import { run, spawnIn } from "../../src/platform/netns/netns.js";
import {
  sequencedSender,
  sequenceReceiver,
  type SequenceCount,
  type SequenceSent,
} from "../support/udp-blast.js";
import { tcpdumpFabric } from "./capture.js";
import { clusterBusy, clusterCli } from "./run-cli.js";

const busy = await clusterBusy();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const mode of ["wireguard", "ipsec"] as const) {
  describe(
    `host encryption switched and rotated under traffic (3 dual-stack nodes, userspace ${mode})`,
    { skip: busy },
    () => {
      const { home, podcrypt, remove } = clusterCli(`host-switch-${mode}`);
      const children = new Set<ChildProcess>();
      const spawnTracked = (ns: string, cmd: string, args: string[], o: Parameters<typeof spawnIn>[3]) => {
        const c = spawnIn(ns, cmd, args, o);
        children.add(c);
        return c;
      };
      let up = false;
      after(async () => {
        for (const c of children) c.kill("SIGKILL");
        if (up) await podcrypt(["cluster", "down"]);
        remove();
      });

      it("5 rotations with it on, then off → on → off: 0 lost of IPv4 pod, IPv6 pod, IPv4 host and IPv6 host traffic; no marker in plaintext while on", async () => {
        const r = await podcrypt([
          "cluster",
          "up",
          "--nodes",
          "3",
          "--ip-family",
          "dual",
          "--mode",
          mode,
          "--dataplane",
          "userspace",
          "--host-encryption",
          "--timeout",
          "150",
        ]);
        up = true;
        assert.equal(r.code, 0, `cluster up failed: ${r.stderr}`);
        const { plan } = readClusterState(home)!;
        const nonce = randomBytes(4).toString("hex");
        const podMarker = `HOSTSWITCH-POD-${nonce}`;
        const hostMarker = `HOSTSWITCH-HOST-${nonce}`;
        const nodes = plan.nodes.map((n) => ({ ...n, pod: plan.pods.find((p) => p.node === n.name)! }));
        const ipsOf = (p: { ips: string[] }) => ({
          v4: p.ips.find((ip) => !ip.includes(":"))!,
          v6: p.ips.find((ip) => ip.includes(":"))!,
        });
        for (const n of nodes) assert.ok(ipsOf(n.pod).v6 !== undefined, `${n.pod.name} has IPv6`);

        // Receivers first, then the capture, then the senders.
        const receivers = await Promise.all(
          nodes.map(async (n) => ({
            node: n,
            pod: await sequenceReceiver(spawnTracked, n.pod.netns),
            host: await sequenceReceiver(spawnTracked, n.netns),
          })),
        );
        // Enough of each frame for the markers.
        const stopCapture = await tcpdumpFabric(join(home, "fabric.pcap"), children, { snaplen: 200 });
        const senders = await Promise.all(
          nodes.map(async (n) => {
            const others = nodes.filter((o) => o !== n);
            return {
              node: n,
              pod: await sequencedSender(
                spawnTracked,
                n.pod.netns,
                others.flatMap((o) => [ipsOf(o.pod).v4, ipsOf(o.pod).v6]),
                podMarker,
              ),
              host: await sequencedSender(
                spawnTracked,
                n.netns,
                others.flatMap((o) => [o.underlayIPv4, o.underlayIPv6]),
                hostMarker,
              ),
            };
          }),
        );
        const t0 = Date.now();
        const at = () => ((Date.now() - t0) / 1000).toFixed(1);
        const log: string[] = [];
        await sleep(2000);
        const epoch = async () =>
          (JSON.parse((await podcrypt(["status", "--json"])).stdout) as { epoch: number }).epoch;
        const epochBefore = await epoch();

        // On: 5 rotations.
        const rotationsFrom = Date.now();
        for (let i = 0; i < 5; i++) {
          const rot = await podcrypt(["rotate", "--wait", "--timeout", "120"]);
          assert.equal(rot.code, 0, `rotation ${i + 1}: ${rot.stderr}`);
        }
        log.push(`5 rotations ${((Date.now() - rotationsFrom) / 1000).toFixed(1)} s`);
        // Off, on, off: each run timed from the request to its completion.
        const windows: Array<{ on: boolean; from: number; to: number }> = [{ on: true, from: t0, to: 0 }];
        const switchTo = async (on: boolean) => {
          const asked = Date.now();
          windows.at(-1)!.to = asked;
          const s = await podcrypt(["enable", on ? "--host" : "--no-host", "--wait", "--timeout", "120"]);
          assert.equal(s.code, 0, `host encryption ${on ? "on" : "off"}: ${s.stderr}`);
          const done = Date.now();
          log.push(`${on ? "on" : "off"} ${((done - asked) / 1000).toFixed(1)} s (at ${at()} s)`);
          // While the run goes, host traffic may cross either way; from its end on it is `on`.
          windows.push({ on, from: done, to: 0 });
          await sleep(2000);
        };
        await switchTo(false);
        await switchTo(true);
        await switchTo(false);
        windows.at(-1)!.to = Date.now();
        assert.equal(await epoch(), epochBefore + 8, "5 rotations and 3 runs that switched host encryption");
        // Host encryption off at the end: no host rule or route left.
        const n1 = nodes[0]!;
        assert.doesNotMatch(
          await run("ip", ["netns", "exec", n1.netns, "ip", "rule", "show"]),
          /lookup 5041/,
        );

        const sent = await Promise.all(
          senders.map(async (s) => ({ node: s.node, pod: await s.pod(), host: await s.host() })),
        );
        await sleep(500);
        const received = await Promise.all(
          receivers.map(async (x) => ({ node: x.node, pod: await x.pod(), host: await x.host() })),
        );
        const frames = await stopCapture();

        // Loss, per kind and pair.
        const kinds = {
          ipv4: { sent: 0, lost: 0 },
          ipv6: { sent: 0, lost: 0 },
          host: { sent: 0, lost: 0 },
          host6: { sent: 0, lost: 0 },
        };
        const failures: string[] = [];
        const count = (
          kind: keyof typeof kinds,
          from: string,
          to: string,
          s: SequenceSent | undefined,
          got: Map<string, SequenceCount>,
          source: string,
        ) => {
          assert.ok(s !== undefined, `${from} sent to ${to}`);
          const rcv = got.get(source)?.received ?? 0;
          kinds[kind].sent += s.sent;
          kinds[kind].lost += s.sent - rcv;
          if (rcv !== s.sent || s.errors > 0)
            failures.push(
              `${kind} ${from}->${to}: ${s.sent - rcv} of ${s.sent} lost (${s.errors} send errors)`,
            );
        };
        for (const s of sent)
          for (const x of received) {
            if (x.node === s.node) continue;
            const src = ipsOf(s.node.pod);
            const dst = ipsOf(x.node.pod);
            count("ipv4", s.node.name, x.node.name, s.pod.get(dst.v4), x.pod, src.v4);
            count("ipv6", s.node.name, x.node.name, s.pod.get(dst.v6), x.pod, src.v6);
            count(
              "host",
              s.node.name,
              x.node.name,
              s.host.get(x.node.underlayIPv4),
              x.host,
              s.node.underlayIPv4,
            );
            count(
              "host6",
              s.node.name,
              x.node.name,
              s.host.get(x.node.underlayIPv6),
              x.host,
              s.node.underlayIPv6,
            );
          }

        // Plaintext on the underlay.
        const withMarker = (m: string) => frames.filter((f) => f.data.includes(m));
        const podPlain = withMarker(podMarker).length;
        const hostPlain = withMarker(hostMarker);
        const inWindows = (on: boolean) =>
          hostPlain.filter((f) => windows.some((w) => w.on === on && f.at >= w.from && f.at < w.to)).length;
        const summary =
          `${mode}: ${Object.entries(kinds)
            .map(([k, v]) => `${k} ${v.sent} sent ${v.lost} lost`)
            .join(", ")}; ` +
          `${log.join(", ")}; ${frames.length} frames captured: ${podPlain} with the pod marker, ` +
          `${inWindows(true)} with the host marker while on, ${inWindows(false)} while off`;
        process.stdout.write(`# ${summary}\n`);
        assert.deepEqual(failures, [], summary);
        assert.equal(podPlain, 0, "pod traffic crossed in plaintext");
        assert.equal(inWindows(true), 0, "host traffic crossed in plaintext while host encryption was on");
        assert.ok(
          inWindows(false) > 100,
          `host traffic crossed in plaintext while off: ${inWindows(false)} frames`,
        );
      });
    },
  );
}
