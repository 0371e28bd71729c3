// test-tier: vm (the kernel data planes, inside the qemu VM: test/vm/run.sh)
/**
 * The kernel backends (GenerationBackends of the composite) against the real kernel, test VM only:
 * two namespaces get a tunnel from desired generations alone, a second pass changes nothing, what
 * is deleted or altered behind the backend's back is restored by the next pass, a rotation keeps
 * the old generation until it is retired, and foreign state survives every pass. Routes belong to
 * the composite in the agent; here the test installs them itself. The scale case programs 500
 * peers each way through the same backends and reports the cost as diagnostics.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { GenerationContext } from "../../src/dataplane/composite/types.js";
import type { DesiredGeneration } from "../../src/dataplane/types.js";
import { espSet, espSocketPath } from "../../src/dataplane/esp-userspace/control.js";
import { peerSas } from "../../src/keys/sas.js";
import { KernelWireguardBackend } from "../../src/dataplane/wireguard-kernel/backend.js";
import { KernelXfrmBackend } from "../../src/dataplane/xfrm/backend.js";
import type { EncapHolderPort } from "../../src/dataplane/xfrm/encap.js";
import { keyIdForEpoch, spiFor } from "../../src/keys/derive.js";
import { generateKeyPair } from "../../src/keys/x25519.js";
import { createLogger } from "../../src/log/logger.js";
import { ProcessKernelCommands } from "../../src/platform/netlink/kernel-commands.js";
import { runIn } from "../../src/platform/netns/netns.js";
import { startEspDaemon } from "../support/esp-lab.js";
import { startDaemon, wgSet } from "../support/wireguard-lab.js";
import { NetnsLab } from "../support/netns.js";
import { holdEspInUdpSocket, xfrmStateCounters } from "./kernel-helpers.js";
import { vmOnly } from "./vm-env.js";

// Generous: every process inside an emulated VM on a busy 2-core host can take seconds.
const kernel = new ProcessKernelCommands({ timeoutMs: 120_000 });
const logger = createLogger("vm-test", { level: "warn" });
const rnd = (n: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(Math.random() * 256);
  return b;
};

interface Side {
  name: string;
  ns: string;
  address: string;
  pods: string;
  podIp: string;
  /** The IPv6 pod CIDR and address: one tunnel carries both families. */
  pods6: string;
  podIp6: string;
  keys: Map<number, ReturnType<typeof generateKeyPair>>;
  /** The SA instance the side's data plane holds, once it runs (what its agent would publish). */
  instance?: string;
}

function generation(mode: "wireguard" | "ipsec", self: Side, peer: Side, epoch: number): DesiredGeneration {
  const slot = (epoch % 2) as 0 | 1;
  return {
    epoch,
    mode,
    slot,
    ifname: `pct${slot}`,
    listenPort: 51820 + slot,
    peers: [
      {
        node: peer.name,
        publicKey: peer.keys.get(epoch)!.publicKey.toString("base64"),
        ...(peer.instance === undefined ? {} : { saInstance: peer.instance }),
        endpoint: { address: peer.address, port: 51820 + slot },
        allowedIps: [peer.pods, peer.pods6],
      },
    ],
  };
}

const ctxOf = (s: Side): GenerationContext => ({
  routes: [],
  mtu: 1400,
  privateKey: (e) => s.keys.get(e)!.privateKey,
});

/** Two namespaces on a veth, each with a "pod" address on a dummy link. */
async function twoNodes(lab: NetnsLab, tag: string): Promise<[Side, Side]> {
  const sides: Side[] = [];
  for (const i of [1, 2]) {
    const ns = await lab.netns(`${tag}${i}`);
    sides.push({
      name: `node-${i}`,
      ns,
      address: `10.93.0.${i}`,
      pods: `10.92.${i}.0/24`,
      podIp: `10.92.${i}.1`,
      pods6: `fd92:${i}::/64`,
      podIp6: `fd92:${i}::1`,
      keys: new Map([1, 2].map((e) => [e, generateKeyPair(rnd)])),
    });
  }
  const [a, b] = sides as [Side, Side];
  await lab.veth(a.ns, "eth0", b.ns, "eth0", [`${a.address}/24`], [`${b.address}/24`]);
  for (const s of sides)
    await kernel.ipBatch(s.ns, [
      "link add pod0 type dummy",
      `addr add ${s.podIp}/24 dev pod0`,
      `addr add ${s.podIp6}/64 dev pod0 nodad`,
      "link set pod0 up",
    ]);
  return [a, b];
}

/** Routes the peer's pods into `dev` (the composite's job in the agent). */
const route = (s: Side, peer: Side, dev: string): Promise<string> =>
  kernel.ip(s.ns, ["route", "replace", peer.pods, "dev", dev, "src", s.podIp]);

const ping = (s: Side, peer: Side): Promise<string> =>
  runIn(s.ns, "ping", ["-c", "2", "-i", "0.2", "-W", "5", "-I", s.podIp, peer.podIp]);

/** IPv6 pods through the same tunnel, both ways (over the IPv4 underlay). */
async function ping6Both(a: Side, b: Side, dev: string): Promise<void> {
  for (const [s, peer] of [
    [a, b],
    [b, a],
  ] as const)
    await kernel.ip(s.ns, ["-6", "route", "replace", peer.pods6, "dev", dev, "src", s.podIp6]);
  await runIn(a.ns, "ping", ["-6", "-c", "2", "-i", "0.2", "-W", "5", "-I", a.podIp6, b.podIp6]);
}

describe("kernel WireGuard backend", () => {
  it("brings a generation up, is idempotent, repairs, rotates and retires", { skip: vmOnly }, async () => {
    const lab = new NetnsLab();
    try {
      const [a, b] = await twoNodes(lab, "rw");
      // Strict reverse-path filtering, as some distributions set it: the backend's loose setting on
      // its interfaces must win, and (with its host address) accept a rotation's asymmetric routes.
      const sysctl = (s: Side) => (path: readonly string[], value: string) =>
        runIn(s.ns, "sysctl", ["-qw", `${path.join(".")}=${value}`]).then(() => undefined);
      for (const s of [a, b]) await sysctl(s)(["net", "ipv4", "conf", "all", "rp_filter"], "1");
      const backend = (s: Side) =>
        new KernelWireguardBackend({ logger, ifPrefix: "pct", kernel, netns: s.ns, sysctl: sysctl(s) });
      const ba = backend(a);
      const bb = backend(b);
      await ba.applyGenerations([generation("wireguard", a, b, 1)], ctxOf(a));
      await bb.applyGenerations([generation("wireguard", b, a, 1)], ctxOf(b));
      await route(a, b, "pct1");
      await route(b, a, "pct1");
      await ping(a, b);
      await ping6Both(a, b, "pct1");
      const rows = await ba.observe();
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.publicKey, b.keys.get(1)!.publicKey.toString("base64"));
      assert.ok((rows[0]?.latestHandshake ?? 0) > Date.now() - 600_000, "handshake recorded, in ms");
      assert.ok((rows[0]?.txBytes ?? 0) > 0);

      // Behind its back: the peer and the MTU. The next pass restores both, the one after does nothing.
      await runIn(a.ns, "wg", ["set", "pct1", "peer", b.keys.get(1)!.publicKey.toString("base64"), "remove"]);
      await kernel.ip(a.ns, ["link", "set", "pct1", "mtu", "1300"]);
      await ba.applyGenerations([generation("wireguard", a, b, 1)], ctxOf(a));
      const snap = (await kernel.wg(a.ns, ["show", "pct1", "dump"])).trim().split("\n");
      assert.equal(snap.length, 2, "interface line and the restored peer");
      assert.match(await kernel.ip(a.ns, ["link", "show", "pct1"]), /mtu 1400/);
      await ping(a, b);

      // Rotation: generation 2 beside 1, traffic moved, then 1 retired.
      for (const [s, p, bk] of [
        [a, b, ba],
        [b, a, bb],
      ] as const)
        await bk.applyGenerations([generation("wireguard", s, p, 2)], ctxOf(s));
      // One end switches first: a's pings reach b on pct0 while b routes back through pct1, and b's
      // replies reach a on pct1 while a routes to b through pct0. Both are delivered (RPF_ADDRESS).
      await route(a, b, "pct0");
      await ping(a, b);
      await route(b, a, "pct0");
      await ping(a, b);
      await ba.retireGenerations([generation("wireguard", a, b, 2)], ctxOf(a));
      const links = await kernel.ip(a.ns, ["-br", "link", "show", "type", "wireguard"]);
      assert.match(links, /^pct0\b/m);
      assert.doesNotMatch(links, /^pct1\b/m);
      await ping(a, b);
    } finally {
      await lab.cleanup();
    }
  });
});

/** The ESP-in-UDP socket of a namespace, held by Debian's python3 for the test's lifetime. */
function labHolder(lab: NetnsLab, ns: string): EncapHolderPort {
  let held = false;
  return {
    ensure: async () => {
      if (!held) await holdEspInUdpSocket(lab, ns, 4500);
      held = true;
    },
    stop: async () => undefined,
  };
}

describe("kernel XFRM backend", () => {
  it(
    "brings an ESP-in-UDP generation up on XFRM interfaces, is idempotent, repairs, rotates, leaves foreign SAs alone",
    { skip: vmOnly },
    async () => {
      const lab = new NetnsLab();
      try {
        const [a, b] = await twoNodes(lab, "rx");
        const backend = (s: Side) =>
          new KernelXfrmBackend({
            logger,
            node: s.name,
            localAddress: s.address,
            underlayIf: "eth0",
            ifPrefix: "pct",
            kernel,
            netns: s.ns,
            encap: labHolder(lab, s.ns),
          });
        const ba = backend(a);
        const bb = backend(b);
        // A state someone else owns (reqid outside podcrypt's range) must survive every pass.
        await kernel.ipBatch(a.ns, [
          `xfrm state add src ${a.address} dst 10.93.0.9 proto esp spi 0x777 reqid 5 mode tunnel aead rfc4106(gcm(aes)) 0x${"11".repeat(20)} 128`,
        ]);
        // As agents do: each installs SAs toward the other once it has published its SA instance.
        await ba.applyGenerations([generation("ipsec", a, b, 1)], ctxOf(a));
        a.instance = ba.saInstance();
        await bb.applyGenerations([generation("ipsec", b, a, 1)], ctxOf(b));
        b.instance = bb.saInstance();
        await ba.applyGenerations([generation("ipsec", a, b, 1)], ctxOf(a));
        assert.equal(ba.saInstance(), a.instance, "the kernel kept the states: the same instance");
        const ia = a.instance!;
        const ib = b.instance!;
        await route(a, b, "pct1");
        await route(b, a, "pct1");
        await ping(a, b);
        // IPv6 pods through the IPv4 tunnel: only SAs without a selector family (af-unspec) carry them.
        await ping6Both(a, b, "pct1");
        const outSpi = `0x${spiFor(keyIdForEpoch(1), a.name, b.name, ia, ib).toString(16).padStart(8, "0")}`;
        assert.ok(((await xfrmStateCounters(a.ns)).get(outSpi)?.packets ?? 0) >= 2, "sent through the SA");
        const [row] = await ba.observe();
        assert.equal(row?.spiOut, outSpi);
        assert.ok((row?.rxPackets ?? 0) >= 2 && (row?.txPackets ?? 0) >= 2, JSON.stringify(row));

        // Behind its back: an SA, a policy and the interface (and with it the route).
        await kernel.ipBatch(a.ns, [
          `xfrm state delete src ${b.address} dst ${a.address} proto esp spi 0x${spiFor(keyIdForEpoch(1), b.name, a.name, ib, ia).toString(16)}`,
          `xfrm policy delete src 0.0.0.0/0 dst ${b.pods} dir out if_id 0x50430011`,
          "link del dev pct1",
        ]);
        await ba.applyGenerations([generation("ipsec", a, b, 1)], ctxOf(a));
        await route(a, b, "pct1");
        await ping(a, b);

        // Rotation: generation 2 beside 1, traffic moved, then 1 retired.
        for (const [s, p, bk] of [
          [a, b, ba],
          [b, a, bb],
        ] as const)
          await bk.applyGenerations([generation("ipsec", s, p, 2)], ctxOf(s));
        await route(a, b, "pct0");
        await route(b, a, "pct0");
        await ping(a, b);
        await ba.retireGenerations([generation("ipsec", a, b, 2)], ctxOf(a));
        await bb.retireGenerations([generation("ipsec", b, a, 2)], ctxOf(b));
        await ping(a, b);
        const spis = [...(await xfrmStateCounters(a.ns)).keys()].sort();
        assert.deepEqual(
          spis,
          [
            "0x00000777",
            ...[spiFor(2, a.name, b.name, ia, ib), spiFor(2, b.name, a.name, ib, ia)]
              .map((s) => `0x${s.toString(16).padStart(8, "0")}`)
              .sort(),
          ].sort(),
        );

        await ba.retireGenerations([], ctxOf(a));
        assert.deepEqual([...(await xfrmStateCounters(a.ns)).keys()], ["0x00000777"]);
        assert.equal((await kernel.ip(a.ns, ["xfrm", "policy", "list"])).trim(), "");
      } finally {
        await lab.cleanup();
      }
    },
  );
});

describe("kernel WireGuard ↔ podcrypt userspace WireGuard", () => {
  it(
    "the kernel backend's generation and `podcrypt wireguard` carry pings both ways, each side counting",
    { skip: vmOnly },
    async () => {
      const lab = new NetnsLab();
      try {
        const [a, b] = await twoNodes(lab, "iw");
        // a: kernel WireGuard, as an agent with `dataplane: kernel` programs it.
        const ba = new KernelWireguardBackend({ logger, ifPrefix: "pct", kernel, netns: a.ns });
        await ba.applyGenerations([generation("wireguard", a, b, 1)], ctxOf(a));
        await route(a, b, "pct1");
        // b: podcrypt's userspace daemon, configured with `wg` as a userspace node's agent would.
        const ifname = `pcw${lab.id}`.slice(0, 15);
        await startDaemon((...x) => lab.spawn(...x), "podcrypt", b.ns, ifname);
        await wgSet(
          b.ns,
          ifname,
          [
            "listen-port",
            "51821",
            "peer",
            a.keys.get(1)!.publicKey.toString("base64"),
            "allowed-ips",
            a.pods,
            "endpoint",
            `${a.address}:51821`,
          ],
          b.keys.get(1)!.privateKey.toString("base64"),
        );
        await kernel.ipBatch(b.ns, [`link set dev ${ifname} up mtu 1400`]);
        await route(b, a, ifname);

        await ping(a, b);
        await ping(b, a);
        const [kernelPeer] = await ba.observe();
        assert.ok((kernelPeer?.latestHandshake ?? 0) > 0, `kernel handshake: ${JSON.stringify(kernelPeer)}`);
        assert.ok(
          (kernelPeer?.rxBytes ?? 0) > 0 && (kernelPeer?.txBytes ?? 0) > 0,
          JSON.stringify(kernelPeer),
        );
        const transfer = (await runIn(b.ns, "wg", ["show", ifname, "transfer"])).trim().split(/\s+/);
        assert.ok(
          Number(transfer[1]) > 0 && Number(transfer[2]) > 0,
          `podcrypt transfer: ${transfer.join(" ")}`,
        );
      } finally {
        await lab.cleanup(300);
      }
    },
  );
});

describe("kernel XFRM ↔ podcrypt userspace ESP (interop)", () => {
  it(
    "a kernel XFRM node and a userspace ESP node with the agents' derived SAs carry pings both ways",
    { skip: vmOnly },
    async () => {
      const lab = new NetnsLab();
      const socketDir = mkdtempSync(join(tmpdir(), "podcrypt-vm-esp-"));
      try {
        const [a, b] = await twoNodes(lab, "ix");
        // a: the kernel backend, as an agent with `dataplane: kernel` programs it.
        const ba = new KernelXfrmBackend({
          logger,
          node: a.name,
          localAddress: a.address,
          underlayIf: "eth0",
          ifPrefix: "pct",
          kernel,
          netns: a.ns,
          encap: labHolder(lab, a.ns),
        });
        b.instance = "b0".repeat(16);
        await ba.applyGenerations([generation("ipsec", a, b, 1)], ctxOf(a));
        a.instance = ba.saInstance();
        await route(a, b, "pct1");
        // b: `podcrypt esp`, given the SAs an agent derives for the pair (src/keys/sas.ts).
        const ifname = `pce${lab.id}`.slice(0, 15);
        const { stderr } = await startEspDaemon((...x) => lab.spawn(...x), b.ns, ifname, socketDir);
        const socket = espSocketPath(ifname, socketDir);
        await kernel.ipBatch(b.ns, [`link set dev ${ifname} up mtu 1400`]);
        await espSet(socket, {
          local: { name: b.name, address: b.address },
          peers: [{ name: a.name, endpoint: { address: a.address, port: 4500 }, allowedIps: [a.pods] }],
        });
        const sas = peerSas({
          self: b.name,
          peer: a.name,
          epoch: 1,
          privateKey: b.keys.get(1)!.privateKey,
          peerPublicKey: a.keys.get(1)!.publicKey,
          selfInstance: b.instance,
          peerInstance: a.instance!,
        });
        await espSet(socket, { sas, activate: [{ peer: a.name, keyId: sas[1].keyId }] });
        await route(b, a, ifname);

        await ping(a, b).catch((e: unknown) =>
          assert.fail(`kernel → userspace: ${String(e)}\n${stderr.join("")}`),
        );
        await ping(b, a).catch((e: unknown) =>
          assert.fail(`userspace → kernel: ${String(e)}\n${stderr.join("")}`),
        );
        // The kernel counts only what it encrypted, and what it authenticated and decrypted.
        const spi = (from: Side, to: Side): string =>
          `0x${spiFor(keyIdForEpoch(1), from.name, to.name, from.instance!, to.instance!).toString(16).padStart(8, "0")}`;
        const counters = await xfrmStateCounters(a.ns);
        assert.ok(
          (counters.get(spi(a, b))?.packets ?? 0) >= 4,
          `kernel sent: ${JSON.stringify([...counters])}`,
        );
        assert.ok(
          (counters.get(spi(b, a))?.packets ?? 0) >= 4,
          `kernel accepted the userspace ESP: ${JSON.stringify([...counters])}`,
        );
      } finally {
        await lab.cleanup();
        rmSync(socketDir, { recursive: true, force: true });
      }
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
      try {
        const ns = await lab.netns("scale");
        await kernel.ipBatch(ns, [
          "link add eth0 type dummy",
          "addr add 10.255.0.1/16 dev eth0",
          "link set eth0 up",
        ]);
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
        const self = generateKeyPair(rnd);
        const gen = (mode: "wireguard" | "ipsec"): DesiredGeneration => ({
          epoch: 1,
          mode,
          slot: 1,
          ifname: "pct1",
          listenPort: 51821,
          peers: Array.from({ length: count }, (_, i) => ({
            node: `node-${i}`,
            publicKey: generateKeyPair(rnd).publicKey.toString("base64"),
            saInstance: (i & 255).toString(16).padStart(2, "0").repeat(16),
            endpoint: { address: `10.255.${1 + (i >> 8)}.${i & 255}`, port: 51821 },
            allowedIps: [`10.${100 + (i >> 8)}.${i & 255}.0/24`],
          })),
        });
        const ctx: GenerationContext = { routes: [], mtu: 1400, privateKey: () => self.privateKey };
        const wg = new KernelWireguardBackend({ logger, ifPrefix: "pct", kernel, netns: ns });
        const wgGen = gen("wireguard");
        await timed(`WireGuard ${count} peers, first pass`, () => wg.applyGenerations([wgGen], ctx));
        await timed("WireGuard second pass (no change)", () => wg.applyGenerations([wgGen], ctx));
        assert.equal((await kernel.wg(ns, ["show", "pct1", "peers"])).trim().split("\n").length, count);
        await wg.retireGenerations([], ctx);

        const xfrm = new KernelXfrmBackend({
          logger,
          node: "node-self",
          localAddress: "10.255.0.1",
          underlayIf: "eth0",
          ifPrefix: "pct",
          kernel,
          netns: ns,
          encap: labHolder(lab, ns),
        });
        const xGen = gen("ipsec");
        await timed(`XFRM ${count * 2} SAs + ${count * 3} policies, first pass`, () =>
          xfrm.applyGenerations([xGen], ctx),
        );
        await timed("XFRM second pass (no change)", () => xfrm.applyGenerations([xGen], ctx));
        const states = await kernel.ip(ns, ["xfrm", "state", "count"]);
        assert.match(states, new RegExp(`\\b${count * 2 + 0}\\b`), states);
      } finally {
        await lab.cleanup();
      }
    },
  );
});
