/**
 * The kernel backends' reconcilers against the real kernel (test VM only): a tunnel comes up from
 * desired state alone, a second pass changes nothing, and what is deleted behind their back is
 * restored by the next pass. The scale case programs 500 peers each way and reports the cost.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import type { WgKernelDesired } from "../../src/dataplane/wireguard-kernel/types.js";
import { WireguardKernelReconciler } from "../../src/dataplane/wireguard-kernel/reconciler.js";
import { DEFAULT_OWNED_REQIDS, XfrmReconciler } from "../../src/dataplane/xfrm/reconciler.js";
import type { XfrmDesired } from "../../src/dataplane/xfrm/types.js";
import { ProcessKernelCommands } from "../../src/platform/netlink/kernel-commands.js";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../helpers/netns.js";
import { holdEspInUdpSocket, xfrmStateCounters } from "./kernel-helpers.js";
import { vmOnly } from "./vm-env.js";

// Generous: every process inside an emulated VM on a busy 2-core host can take seconds.
const kernel = new ProcessKernelCommands({ timeoutMs: 120_000 });

function wgKeyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const b64 = (jwkField: string | undefined): string =>
    Buffer.from(jwkField!, "base64url").toString("base64");
  return {
    privateKey: b64(privateKey.export({ format: "jwk" }).d),
    publicKey: b64(publicKey.export({ format: "jwk" }).x),
  };
}

describe("kernel WireGuard reconciler", () => {
  it("brings a tunnel up, is idempotent, and repairs what was removed", { skip: vmOnly }, async () => {
    const lab = new NetnsLab();
    const a = await lab.netns("rwa");
    const b = await lab.netns("rwb");
    await lab.veth(a, "eth0", b, "eth0", ["10.95.0.1/24"], ["10.95.0.2/24"]);
    const ka = wgKeyPair();
    const kb = wgKeyPair();
    const desired = (me: 1 | 2): WgKernelDesired => {
      const peer = me === 1 ? 2 : 1;
      return {
        interfaces: [
          {
            ifname: "podcrypt0",
            privateKey: (me === 1 ? ka : kb).privateKey,
            listenPort: 51820,
            mtu: 1420,
            addresses: [`10.94.0.${me}/32`],
            routes: [`10.94.0.${peer}/32`],
            peers: [
              {
                publicKey: (me === 1 ? kb : ka).publicKey,
                endpoint: { address: `10.95.0.${peer}`, port: 51820 },
                allowedIps: [`10.94.0.${peer}/32`],
                persistentKeepalive: 25,
              },
            ],
          },
        ],
      };
    };
    const ra = new WireguardKernelReconciler(kernel, { netns: a });
    const rb = new WireguardKernelReconciler(kernel, { netns: b });
    assert.equal((await ra.reconcile(desired(1))).changed, true);
    assert.equal((await rb.reconcile(desired(2))).changed, true);
    const second = await ra.reconcile(desired(1));
    assert.deepEqual(second.plan, { ipLines: [], syncconf: [] }, "second pass must change nothing");
    assert.equal(ra.inSync, true);
    await runIn(a, "ping", ["-c", "2", "-i", "0.2", "-W", "5", "10.94.0.2"]);

    // Behind its back: the peer, the route and the MTU.
    await runIn(a, "wg", ["set", "podcrypt0", "peer", kb.publicKey, "remove"]);
    await runIn(a, "ip", ["route", "del", "10.94.0.2/32"]);
    await runIn(a, "ip", ["link", "set", "podcrypt0", "mtu", "1300"]);
    const repair = await ra.reconcile(desired(1));
    assert.deepEqual(
      repair.plan.syncconf.map((s) => s.ifname),
      ["podcrypt0"],
    );
    assert.ok(repair.plan.ipLines.some((l) => l.startsWith("route replace 10.94.0.2/32")));
    assert.ok(repair.plan.ipLines.includes("link set dev podcrypt0 mtu 1420"));
    assert.equal((await ra.reconcile(desired(1))).changed, false);
    await runIn(a, "ping", ["-c", "2", "-i", "0.2", "-W", "5", "10.94.0.2"]);
    const snap = await ra.read();
    assert.equal(snap.devices.get("podcrypt0")?.peers[0]?.publicKey, kb.publicKey);
    assert.ok((snap.devices.get("podcrypt0")?.peers[0]?.txBytes ?? 0) > 0);

    // Desired empty: the backend removes its interface (and with it its routes).
    await ra.reconcile({ interfaces: [] });
    assert.equal((await ra.read()).links.size, 0);
    await lab.cleanup();
  });
});

describe("kernel XFRM reconciler", () => {
  it(
    "brings an ESP-in-UDP tunnel up, is idempotent, repairs, and leaves foreign SAs alone",
    { skip: vmOnly },
    async () => {
      const lab = new NetnsLab();
      const a = await lab.netns("rxa");
      const b = await lab.netns("rxb");
      await lab.veth(a, "eth0", b, "eth0", ["10.93.0.1/24"], ["10.93.0.2/24"]);
      const reqid = DEFAULT_OWNED_REQIDS.min + 1;
      const keys = { "1": randomBytes(20), "2": randomBytes(20) };
      const desired = (me: 1 | 2): XfrmDesired => {
        const peer = me === 1 ? 2 : 1;
        const sa = (from: 1 | 2, to: 1 | 2) => ({
          src: `10.93.0.${from}`,
          dst: `10.93.0.${to}`,
          spi: 0x1000 + from,
          reqid,
          key: keys[`${from}`],
          encap: { sport: 4500, dport: 4500 },
        });
        const tmplIn = { src: `10.93.0.${peer}`, dst: `10.93.0.${me}`, reqid };
        return {
          states: [sa(me, peer), sa(peer, me)],
          policies: [
            {
              dir: "out",
              src: `10.92.${me}.0/24`,
              dst: `10.92.${peer}.0/24`,
              tmpl: { src: `10.93.0.${me}`, dst: `10.93.0.${peer}`, reqid },
            },
            { dir: "in", src: `10.92.${peer}.0/24`, dst: `10.92.${me}.0/24`, tmpl: tmplIn },
            { dir: "fwd", src: `10.92.${peer}.0/24`, dst: `10.92.${me}.0/24`, tmpl: tmplIn },
          ],
        };
      };
      for (const [ns, me] of [
        [a, 1],
        [b, 2],
      ] as const) {
        const peer = me === 1 ? 2 : 1;
        await runIn(ns, "ip", ["link", "add", "pod0", "type", "dummy"]);
        await runIn(ns, "ip", ["addr", "add", `10.92.${me}.1/24`, "dev", "pod0"]);
        await runIn(ns, "ip", ["link", "set", "pod0", "up"]);
        await runIn(ns, "ip", [
          "route",
          "add",
          `10.92.${peer}.0/24`,
          "via",
          `10.93.0.${peer}`,
          "src",
          `10.92.${me}.1`,
        ]);
        await holdEspInUdpSocket(lab, ns, 4500);
      }
      // A state someone else owns (reqid outside podcrypt's range) must survive every pass.
      await runIn(a, "ip", [
        ...["xfrm", "state", "add", "src", "10.93.0.1", "dst", "10.93.0.9", "proto", "esp", "spi", "0x777"],
        ...[
          "reqid",
          "5",
          "mode",
          "tunnel",
          "aead",
          "rfc4106(gcm(aes))",
          "0x" + randomBytes(20).toString("hex"),
          "128",
        ],
      ]);
      const ra = new XfrmReconciler(kernel, { netns: a });
      const rb = new XfrmReconciler(kernel, { netns: b });
      assert.deepEqual(await ra.reconcile(desired(1)), { changed: true, lines: 5 });
      assert.equal((await rb.reconcile(desired(2))).changed, true);
      assert.deepEqual(await ra.reconcile(desired(1)), { changed: false, lines: 0 });
      await runIn(a, "ping", ["-c", "2", "-i", "0.2", "-W", "5", "-I", "10.92.1.1", "10.92.2.1"]);
      assert.ok(((await xfrmStateCounters(a)).get("0x00001001")?.packets ?? 0) >= 2);

      await runIn(a, "ip", [
        "xfrm",
        "state",
        "delete",
        "src",
        "10.93.0.2",
        "dst",
        "10.93.0.1",
        "proto",
        "esp",
        "spi",
        "0x1002",
      ]);
      await runIn(a, "ip", [
        "xfrm",
        "policy",
        "delete",
        "src",
        "10.92.1.0/24",
        "dst",
        "10.92.2.0/24",
        "dir",
        "out",
      ]);
      assert.deepEqual(await ra.reconcile(desired(1)), { changed: true, lines: 2 });
      assert.equal((await ra.reconcile(desired(1))).changed, false);
      await runIn(a, "ping", ["-c", "2", "-i", "0.2", "-W", "5", "-I", "10.92.1.1", "10.92.2.1"]);

      await ra.reconcile({ states: [], policies: [] });
      const left = await ra.read();
      assert.deepEqual(
        left.states.map((s) => s.spi),
        [0x777],
      );
      assert.deepEqual(left.policies, []);
      await lab.cleanup();
    },
  );
});

describe("kernel backends at scale", () => {
  const count = Number(process.env.PODCRYPT_VM_SCALE_PEERS ?? 500);
  it(
    `programs ${count} WireGuard peers and ${count} peers' SAs and policies`,
    { skip: vmOnly },
    async (t) => {
      const lab = new NetnsLab();
      const ns = await lab.netns("scale");
      const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
        const cpu = process.cpuUsage();
        const start = performance.now();
        const result = await fn();
        const used = process.cpuUsage(cpu);
        t.diagnostic(
          `${what}: ${(performance.now() - start).toFixed(0)} ms wall, node ${((used.user + used.system) / 1000).toFixed(0)} ms CPU`,
        );
        return result;
      };
      const peers = Array.from({ length: count }, (_, i) => ({
        publicKey: wgKeyPair().publicKey,
        endpoint: { address: `10.${1 + (i >> 8)}.${i & 255}.1`, port: 51820 },
        allowedIps: [`10.${100 + (i >> 8)}.${i & 255}.0/24`],
        persistentKeepalive: 25,
      }));
      const wg: WgKernelDesired = {
        interfaces: [
          {
            ifname: "podcrypt0",
            privateKey: wgKeyPair().privateKey,
            listenPort: 51820,
            mtu: 1420,
            addresses: ["10.90.0.1/32"],
            routes: peers.map((p) => p.allowedIps[0]!),
            peers,
          },
        ],
      };
      const rw = new WireguardKernelReconciler(kernel, { netns: ns });
      assert.equal(
        (await timed(`WireGuard ${count} peers + routes, first pass`, () => rw.reconcile(wg))).changed,
        true,
      );
      assert.equal((await timed("WireGuard second pass (no change)", () => rw.reconcile(wg))).changed, false);
      assert.equal((await rw.read()).devices.get("podcrypt0")?.peers.length, count);

      const reqid = DEFAULT_OWNED_REQIDS.min + 2;
      const key = randomBytes(20);
      const xfrm: XfrmDesired = { states: [], policies: [] };
      for (let i = 0; i < count; i++) {
        const remote = `10.${1 + (i >> 8)}.${i & 255}.1`;
        const pods = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
        const encap = { sport: 4500, dport: 4500 };
        xfrm.states.push({ src: "10.255.0.1", dst: remote, spi: 0x10000 + i, reqid, key, encap });
        xfrm.states.push({ src: remote, dst: "10.255.0.1", spi: 0x20000 + i, reqid, key, encap });
        const tin = { src: remote, dst: "10.255.0.1", reqid };
        xfrm.policies.push({
          dir: "out",
          src: "10.90.0.0/24",
          dst: pods,
          tmpl: { src: "10.255.0.1", dst: remote, reqid },
        });
        xfrm.policies.push({ dir: "in", src: pods, dst: "10.90.0.0/24", tmpl: tin });
        xfrm.policies.push({ dir: "fwd", src: pods, dst: "10.90.0.0/24", tmpl: tin });
      }
      const rx = new XfrmReconciler(kernel, { netns: ns });
      const first = await timed(`XFRM ${count * 2} SAs + ${count * 3} policies, first pass`, () =>
        rx.reconcile(xfrm),
      );
      assert.equal(first.lines, count * 5);
      assert.equal((await timed("XFRM second pass (no change)", () => rx.reconcile(xfrm))).changed, false);
      await lab.cleanup();
    },
  );
});
