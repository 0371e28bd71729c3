// test-tier: vm (the kernel data planes, inside the qemu VM: test/vm/run.sh)
/**
 * The kernel itself, configured only with Debian's `wg` and `ip`: proves the VM's WireGuard and
 * XFRM (ESP tunnel mode, rfc4106(gcm(aes)), ESP-in-UDP) work the way podcrypt's kernel backends
 * and its userspace interop rely on. Runs only inside the test VM (test/vm/run.sh).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { run, runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";
import { holdEspInUdpSocket, withKeyFile, xfrmStateCounters } from "./kernel-helpers.js";
import { vmOnly } from "./vm-env.js";

describe("kernel WireGuard (wg + ip)", () => {
  it("carries a ping between two namespaces and records a handshake", { skip: vmOnly }, async () => {
    const lab = new NetnsLab();
    const a = await lab.netns("wga");
    const b = await lab.netns("wgb");
    await lab.veth(a, "eth0", b, "eth0", ["10.99.0.1/24"], ["10.99.0.2/24"]);
    const keyA = (await run("wg", ["genkey"])).trim();
    const keyB = (await run("wg", ["genkey"])).trim();
    const pubA = (await run("wg", ["pubkey"], { input: keyA + "\n" })).trim();
    const pubB = (await run("wg", ["pubkey"], { input: keyB + "\n" })).trim();
    const side = [
      {
        ns: a,
        key: keyA,
        addr: "10.98.0.1/24",
        peer: pubB,
        endpoint: "10.99.0.2:51820",
        peerIp: "10.98.0.2/32",
      },
      {
        ns: b,
        key: keyB,
        addr: "10.98.0.2/24",
        peer: pubA,
        endpoint: "10.99.0.1:51820",
        peerIp: "10.98.0.1/32",
      },
    ];
    for (const s of side) {
      await runIn(s.ns, "ip", ["link", "add", "wg0", "type", "wireguard"]);
      await withKeyFile(s.key, (keyFile) =>
        runIn(s.ns, "wg", [
          ...["set", "wg0", "private-key", keyFile, "listen-port", "51820", "peer", s.peer],
          ...["endpoint", s.endpoint, "allowed-ips", s.peerIp],
        ]),
      );
      await runIn(s.ns, "ip", ["addr", "add", s.addr, "dev", "wg0"]);
      await runIn(s.ns, "ip", ["link", "set", "wg0", "up"]);
    }
    await runIn(a, "ping", ["-c", "3", "-i", "0.2", "-W", "5", "10.98.0.2"]);
    const handshakes = (await runIn(a, "wg", ["show", "wg0", "latest-handshakes"])).trim().split(/\s+/);
    assert.equal(handshakes[0], pubB);
    assert.ok(Number(handshakes[1]) > 0, "no handshake recorded");
    const transfer = (await runIn(b, "wg", ["show", "wg0", "transfer"])).trim().split(/\s+/);
    assert.ok(Number(transfer[1]) > 0 && Number(transfer[2]) > 0, `no transfer: ${transfer.join(" ")}`);
    await lab.cleanup();
  });
});

describe("kernel XFRM (ip xfrm)", () => {
  it(
    "carries a ping through an ESP-in-UDP tunnel with rfc4106(gcm(aes)) and counts it",
    { skip: vmOnly },
    async () => {
      const lab = new NetnsLab();
      const a = await lab.netns("xa");
      const b = await lab.netns("xb");
      await lab.veth(a, "eth0", b, "eth0", ["10.97.0.1/24"], ["10.97.0.2/24"]);
      // Each side: a "pod" address behind it, ESP keys for both directions (128-bit key + 32-bit salt).
      const keyAB = "0x" + randomBytes(20).toString("hex");
      const keyBA = "0x" + randomBytes(20).toString("hex");
      const sides = [
        {
          ns: a,
          me: "10.97.0.1",
          peer: "10.97.0.2",
          pod: "10.96.1.1",
          mine: "10.96.1.0/24",
          theirs: "10.96.2.0/24",
        },
        {
          ns: b,
          me: "10.97.0.2",
          peer: "10.97.0.1",
          pod: "10.96.2.1",
          mine: "10.96.2.0/24",
          theirs: "10.96.1.0/24",
        },
      ];
      const spi = (from: string): string => (from === "10.97.0.1" ? "0x1001" : "0x1002");
      const key = (from: string): string => (from === "10.97.0.1" ? keyAB : keyBA);
      for (const s of sides) {
        await runIn(s.ns, "ip", ["link", "add", "pod0", "type", "dummy"]);
        await runIn(s.ns, "ip", ["addr", "add", `${s.pod}/24`, "dev", "pod0"]);
        await runIn(s.ns, "ip", ["link", "set", "pod0", "up"]);
        await runIn(s.ns, "ip", ["route", "add", s.theirs, "via", s.peer, "src", s.pod]);
        for (const [src, dst] of [
          [s.me, s.peer],
          [s.peer, s.me],
        ] as const) {
          await runIn(s.ns, "ip", [
            "xfrm",
            "state",
            "add",
            "src",
            src,
            "dst",
            dst,
            "proto",
            "esp",
            "spi",
            spi(src),
            "reqid",
            "1",
            "mode",
            "tunnel",
            "aead",
            "rfc4106(gcm(aes))",
            key(src),
            "128",
            "encap",
            "espinudp",
            "4500",
            "4500",
            "0.0.0.0",
          ]);
        }
        const tmpl = (src: string, dst: string): string[] => [
          "tmpl",
          "src",
          src,
          "dst",
          dst,
          "proto",
          "esp",
          "reqid",
          "1",
          "mode",
          "tunnel",
        ];
        await runIn(s.ns, "ip", [
          "xfrm",
          "policy",
          "add",
          "src",
          s.mine,
          "dst",
          s.theirs,
          "dir",
          "out",
          ...tmpl(s.me, s.peer),
        ]);
        for (const dir of ["in", "fwd"])
          await runIn(s.ns, "ip", [
            "xfrm",
            "policy",
            "add",
            "src",
            s.theirs,
            "dst",
            s.mine,
            "dir",
            dir,
            ...tmpl(s.peer, s.me),
          ]);
        // The kernel decapsulates ESP-in-UDP only on a UDP socket marked UDP_ENCAP_ESPINUDP.
        await holdEspInUdpSocket(lab, s.ns, 4500);
      }
      const before = await xfrmStateCounters(a);
      await runIn(a, "ping", ["-c", "3", "-i", "0.2", "-W", "5", "-I", "10.96.1.1", "10.96.2.1"]);
      const after = await xfrmStateCounters(a);
      const out = after.get("0x00001001");
      const inbound = after.get("0x00001002");
      assert.ok(out && inbound, `states missing: ${[...after.keys()].join(",")}`);
      assert.ok(out.packets >= 3 + (before.get("0x00001001")?.packets ?? 0), `out packets ${out.packets}`);
      assert.ok(inbound.packets >= 3, `in packets ${inbound.packets}`);
      assert.ok(out.bytes > 0 && inbound.bytes > 0);
      await lab.cleanup();
    },
  );
});
