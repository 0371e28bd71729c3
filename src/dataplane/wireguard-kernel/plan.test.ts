import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { InstalledWgInterface } from "../../platform/netlink/wg-dump.js";
import { normaliseDesired, planWireguard, wgConfig, type WgKernelSnapshot } from "./plan.js";
import type { WgKernelDesired } from "./types.js";

const PRIV = "eA1QK2CR8t0aJbXzXIDYDBkwWVj5WdsrgqTzRvbQgEU=";
const PEER = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PEER2 = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

const desired: WgKernelDesired = {
  interfaces: [
    {
      ifname: "podcrypt0",
      privateKey: PRIV,
      listenPort: 51820,
      mtu: 1420,
      addresses: ["10.94.0.1/32"],
      routes: ["10.244.2.7/24"],
      peers: [
        { publicKey: PEER, endpoint: { address: "10.0.0.2", port: 51820 }, allowedIps: ["10.244.2.0/24"] },
      ],
    },
  ],
};

function installedMatching(): WgKernelSnapshot {
  const dev: InstalledWgInterface = {
    ifname: "podcrypt0",
    privateKey: PRIV,
    publicKey: "ignored",
    listenPort: 51820,
    fwmark: 0,
    peers: [
      {
        publicKey: PEER,
        endpoint: "10.0.0.2:51820",
        allowedIps: ["10.244.2.0/24"],
        latestHandshake: 0,
        rxBytes: 5,
        txBytes: 7,
        persistentKeepalive: 0,
      },
    ],
  };
  return {
    links: new Map([
      ["podcrypt0", { ifname: "podcrypt0", mtu: 1420, up: true, addresses: ["10.94.0.1/32"] }],
    ]),
    devices: new Map([["podcrypt0", dev]]),
    routes: [{ dst: "10.244.2.0/24", dev: "podcrypt0", table: 254 }],
  };
}

const plan = (snap: WgKernelSnapshot, d: WgKernelDesired = desired) =>
  planWireguard(normaliseDesired(d, "podcrypt"), snap, "podcrypt", 77);

describe("planWireguard", () => {
  it("creates everything on an empty node", () => {
    const p = plan({ links: new Map(), devices: new Map(), routes: [] });
    assert.deepEqual(p.ipLines, [
      "link add dev podcrypt0 type wireguard",
      "address add 10.94.0.1/32 dev podcrypt0",
      "link set dev podcrypt0 mtu 1420",
      "link set dev podcrypt0 up",
      "route replace 10.244.2.0/24 dev podcrypt0 table 254 proto 77",
    ]);
    assert.equal(p.syncconf.length, 1);
  });

  it("plans nothing when the kernel matches (counters and handshakes are not state)", () => {
    assert.deepEqual(plan(installedMatching()), { ipLines: [], syncconf: [] });
  });

  const drifts: [string, (s: WgKernelSnapshot) => void, Partial<{ ip: string[]; sync: boolean }>][] = [
    ["a removed peer", (s) => (s.devices.get("podcrypt0")!.peers = []), { sync: true }],
    [
      "an extra peer",
      (s) =>
        s.devices
          .get("podcrypt0")!
          .peers.push({ ...s.devices.get("podcrypt0")!.peers[0]!, publicKey: PEER2 }),
      { sync: true },
    ],
    [
      "a changed endpoint",
      (s) => (s.devices.get("podcrypt0")!.peers[0]!.endpoint = "10.0.0.3:51820"),
      { sync: true },
    ],
    [
      "changed allowed IPs",
      (s) => (s.devices.get("podcrypt0")!.peers[0]!.allowedIps = ["10.244.3.0/24"]),
      { sync: true },
    ],
    ["a changed private key", (s) => (s.devices.get("podcrypt0")!.privateKey = PEER2), { sync: true }],
    ["a changed port", (s) => (s.devices.get("podcrypt0")!.listenPort = 1), { sync: true }],
    ["a link set down", (s) => (s.links.get("podcrypt0")!.up = false), { ip: ["link set dev podcrypt0 up"] }],
    [
      "a changed MTU",
      (s) => (s.links.get("podcrypt0")!.mtu = 1300),
      { ip: ["link set dev podcrypt0 mtu 1420"] },
    ],
    [
      "a removed route",
      (s) => (s.routes = []),
      { ip: ["route replace 10.244.2.0/24 dev podcrypt0 table 254 proto 77"] },
    ],
    [
      "a stray route of ours",
      (s) => s.routes.push({ dst: "10.9.0.0/16", dev: "podcrypt0", table: 254 }),
      { ip: ["route del 10.9.0.0/16 table 254 proto 77"] },
    ],
    [
      "an extra address",
      (s) => s.links.get("podcrypt0")!.addresses.push("10.1.1.1/24"),
      { ip: ["address del 10.1.1.1/24 dev podcrypt0"] },
    ],
    [
      "a stale interface of ours",
      (s) => s.links.set("podcrypt1", { ifname: "podcrypt1", mtu: 1420, up: true, addresses: [] }),
      { ip: ["link del dev podcrypt1"] },
    ],
  ];
  for (const [name, drift, want] of drifts) {
    it(`repairs ${name}`, () => {
      const snap = installedMatching();
      drift(snap);
      const p = plan(snap);
      assert.deepEqual(p.ipLines, want.ip ?? []);
      assert.equal(p.syncconf.length, want.sync ? 1 : 0);
    });
  }

  it("leaves interfaces without the prefix alone", () => {
    const snap = installedMatching();
    snap.links.set("wg0", { ifname: "wg0", mtu: 1420, up: true, addresses: [] });
    assert.deepEqual(plan(snap), { ipLines: [], syncconf: [] });
  });

  it("rejects bad desired state naming the field", () => {
    const bad = structuredClone(desired);
    bad.interfaces[0]!.peers[0]!.allowedIps = ["10.0.0.0/40"];
    assert.throws(() => plan(installedMatching(), bad), /interfaces\[0\]\.peers\[0\]\.allowedIps\[0\]/);
    const badName = structuredClone(desired);
    badName.interfaces[0]!.ifname = "wg0";
    assert.throws(() => plan(installedMatching(), badName), /interfaces\[0\]\.ifname/);
  });

  it("writes wg(8) configuration", () => {
    const [iface] = normaliseDesired(desired, "podcrypt");
    assert.equal(
      wgConfig(iface!),
      `[Interface]\nPrivateKey = ${PRIV}\nListenPort = 51820\nFwMark = off\n\n[Peer]\nPublicKey = ${PEER}\n` +
        "Endpoint = 10.0.0.2:51820\nAllowedIPs = 10.244.2.0/24\nPersistentKeepalive = off\n",
    );
  });
});
