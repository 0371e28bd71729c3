import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { InstalledWgInterface } from "../../platform/netlink/wg-dump.js";
import { normaliseDesired, parseLinks, planWireguard, wgConfig, type WgKernelSnapshot } from "./plan.js";
import type { WgKernelDesired } from "./types.js";

const PRIV = "eA1QK2CR8t0aJbXzXIDYDBkwWVj5WdsrgqTzRvbQgEU=";
const PEER = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PEER2 = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const owns = (n: string): boolean => /^podcrypt[01]$/.test(n);

const desired: WgKernelDesired = {
  interfaces: [
    {
      ifname: "podcrypt0",
      privateKey: PRIV,
      listenPort: 51820,
      mtu: 1420,
      hostAddresses: ["169.254.51.82/32"],
      peers: [
        { publicKey: PEER, endpoint: { address: "10.0.0.2", port: 51820 }, allowedIps: ["10.244.2.7/24"] },
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
      ["eth0", { ifname: "eth0", kind: "veth", mtu: 1500, up: true, hostAddresses: [] }],
      [
        "podcrypt0",
        { ifname: "podcrypt0", kind: "wireguard", mtu: 1420, up: true, hostAddresses: ["169.254.51.82/32"] },
      ],
    ]),
    devices: new Map([["podcrypt0", dev]]),
  };
}

const plan = (snap: WgKernelSnapshot, d: WgKernelDesired = desired, prune = false) =>
  planWireguard(normaliseDesired(d, owns), snap, { owns, prune });

describe("planWireguard", () => {
  it("creates the interface, brings it up, then configures it", () => {
    const p = plan({ links: new Map(), devices: new Map() });
    assert.deepEqual(p.ipLines, [
      "link add dev podcrypt0 type wireguard",
      "link set dev podcrypt0 mtu 1420",
      "addr replace 169.254.51.82/32 dev podcrypt0 scope host",
      "link set dev podcrypt0 up",
    ]);
    assert.deepEqual(
      p.syncconf.map((s) => s.ifname),
      ["podcrypt0"],
    );
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
      "a removed host address",
      (s) => (s.links.get("podcrypt0")!.hostAddresses = []),
      { ip: ["addr replace 169.254.51.82/32 dev podcrypt0 scope host"] },
    ],
    [
      "a leftover of another kind under the name",
      (s) => {
        s.links.set("podcrypt0", {
          ifname: "podcrypt0",
          kind: "tun",
          mtu: 1420,
          up: true,
          hostAddresses: [],
        });
        s.devices.delete("podcrypt0");
      },
      {
        ip: [
          "link del dev podcrypt0",
          "link add dev podcrypt0 type wireguard",
          "link set dev podcrypt0 mtu 1420",
          "addr replace 169.254.51.82/32 dev podcrypt0 scope host",
          "link set dev podcrypt0 up",
        ],
        sync: true,
      },
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

  it("removes an undesired interface of its own only when pruning, and never a foreign one", () => {
    const snap = installedMatching();
    const link = (ifname: string, kind: string) => ({ ifname, kind, mtu: 1420, up: true, hostAddresses: [] });
    snap.links.set("podcrypt1", link("podcrypt1", "wireguard"));
    snap.links.set("wg0", link("wg0", "wireguard"));
    snap.links.set("podcrypte", link("podcrypte", "tun"));
    assert.deepEqual(plan(snap).ipLines, []);
    assert.deepEqual(plan(snap, desired, true).ipLines, ["link del dev podcrypt1"]);
  });

  it("rejects bad desired state naming the field", () => {
    const bad = structuredClone(desired);
    bad.interfaces[0]!.peers[0]!.allowedIps = ["10.0.0.0/40"];
    assert.throws(() => plan(installedMatching(), bad), /interfaces\[0\]\.peers\[0\]\.allowedIps\[0\]/);
    const badName = structuredClone(desired);
    badName.interfaces[0]!.ifname = "wg0";
    assert.throws(() => plan(installedMatching(), badName), /interfaces\[0\]\.ifname/);
    const badAddress = structuredClone(desired);
    badAddress.interfaces[0]!.hostAddresses = ["169.254.51.82/24"];
    assert.throws(
      () => plan(installedMatching(), badAddress),
      /interfaces\[0\]\.hostAddresses\[0\]: 169\.254\.51\.82\/24 is not an IPv4 \/32/,
    );
  });

  it("writes wg(8) configuration", () => {
    const [iface] = normaliseDesired(desired, owns);
    assert.equal(
      wgConfig(iface!),
      `[Interface]\nPrivateKey = ${PRIV}\nListenPort = 51820\nFwMark = off\n\n[Peer]\nPublicKey = ${PEER}\n` +
        "Endpoint = 10.0.0.2:51820\nAllowedIPs = 10.244.2.0/24\nPersistentKeepalive = off\n",
    );
  });

  it("reads links and their host addresses as `ip -j -d addr show` prints them", () => {
    // As iproute2 6.1 prints them (test VM), trimmed to the fields that matter.
    const json =
      '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,' +
      '"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"}]},' +
      '{"ifindex":5,"ifname":"pc1w0","flags":["POINTOPOINT","NOARP","UP","LOWER_UP"],"mtu":1412,' +
      '"linkinfo":{"info_kind":"wireguard"},"addr_info":[' +
      '{"family":"inet","local":"169.254.51.82","prefixlen":32,"scope":"host","label":"pc1w0"},' +
      '{"family":"inet","local":"10.0.0.9","prefixlen":32,"scope":"global","label":"pc1w0"}]}]';
    assert.deepEqual(parseLinks(json).get("pc1w0"), {
      ifname: "pc1w0",
      kind: "wireguard",
      mtu: 1412,
      up: true,
      hostAddresses: ["169.254.51.82/32"],
    });
    assert.equal(parseLinks(json).get("lo")?.kind, "");
  });
});
