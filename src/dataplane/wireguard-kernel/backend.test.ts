import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { generateKeyPair } from "../../keys/x25519.js";
import { createLogger } from "../../log/logger.js";
import { FakeKernel } from "../../../test/support/fake-kernel.js";
import type { GenerationContext } from "../composite/types.js";
import { PEER_KEEPALIVE_S, type DesiredGeneration } from "../types.js";
import { RPF_ADDRESS } from "../node/rpf.js";
import { KernelWireguardBackend } from "./backend.js";

const logger = createLogger("test", { level: "silent" });
let seed = 7;
const random = (n: number): Buffer => Buffer.alloc(n, seed++);
const own = new Map([1, 2].map((e) => [e, generateKeyPair(random)]));
const peerKeys = new Map([1, 2].map((e) => [e, [generateKeyPair(random), generateKeyPair(random)]]));

function gen(epoch: number, peers = 2): DesiredGeneration {
  const slot = (epoch % 2) as 0 | 1;
  return {
    epoch,
    mode: "wireguard",
    slot,
    ifname: `pc1w${slot}`,
    listenPort: 51820 + slot,
    peers: peerKeys
      .get(epoch)!
      .slice(0, peers)
      .map((k, i) => ({
        node: `node-${i + 2}`,
        publicKey: k.publicKey.toString("base64"),
        endpoint: { address: `172.30.0.${12 + i}`, port: 51820 + slot },
        allowedIps: [`10.244.${i + 2}.0/24`],
      })),
  };
}

function setup() {
  const kernel = new FakeKernel();
  const sysctls: string[] = [];
  const backend = new KernelWireguardBackend({
    logger,
    ifPrefix: "pc1w",
    kernel,
    sysctl: async (path, value) => {
      sysctls.push(`${path.join(".")}=${value}`);
    },
  });
  const ctx: GenerationContext = { routes: [], mtu: 1412, privateKey: (e) => own.get(e)!.privateKey };
  return { kernel, backend, ctx, sysctls };
}

describe("KernelWireguardBackend", () => {
  it("creates one interface per generation with the node's key, its peers and keepalives", async () => {
    const { kernel, backend, ctx, sysctls } = setup();
    assert.deepEqual([...(await backend.applyGenerations([gen(1)], ctx))], [["pc1w1", "pc1w1"]]);
    assert.deepEqual(kernel.links.get("pc1w1"), {
      ifname: "pc1w1",
      kind: "wireguard",
      mtu: 1412,
      up: true,
      hostAddresses: [RPF_ADDRESS],
    });
    const dev = kernel.wgDevices.get("pc1w1")!;
    assert.equal(dev.privateKey, own.get(1)!.privateKey.toString("base64"));
    assert.equal(dev.listenPort, 51821);
    assert.deepEqual(
      dev.peers.map((p) => [p.endpoint, p.allowedIps, p.persistentKeepalive]),
      [
        ["172.30.0.12:51821", ["10.244.2.0/24"], PEER_KEEPALIVE_S],
        ["172.30.0.13:51821", ["10.244.3.0/24"], PEER_KEEPALIVE_S],
      ],
    );
    assert.deepEqual(sysctls, ["net.ipv4.conf.pc1w1.rp_filter=2"]);
  });

  it("changes nothing on a second pass, so sessions and counters survive", async () => {
    const { kernel, backend, ctx } = setup();
    await backend.applyGenerations([gen(1)], ctx);
    kernel.wgTraffic("pc1w1", gen(1).peers[0]!.publicKey, 100, 200, 1_700_000_000);
    const before = { ...kernel.calls };
    await backend.applyGenerations([gen(1)], ctx);
    await backend.retireGenerations([gen(1)], ctx);
    assert.equal(kernel.calls.ipBatch, before.ipBatch);
    assert.equal(kernel.calls.wgSyncconf, before.wgSyncconf);
    assert.deepEqual(
      [kernel.calls.ip - before.ip, kernel.calls.wg - before.wg],
      [1, 1],
      "apply and retire plan from one read",
    );
    assert.equal(kernel.wgDevices.get("pc1w1")!.peers[0]!.txBytes, 100);
  });

  it("repairs peers, keys, MTU and state removed behind its back; a leftover of another kind is replaced", async () => {
    const { kernel, backend, ctx } = setup();
    await backend.applyGenerations([gen(1)], ctx);
    const dev = kernel.wgDevices.get("pc1w1")!;
    dev.peers.pop();
    dev.peers[0]!.endpoint = "172.30.0.99:1";
    dev.listenPort = 9;
    kernel.links.get("pc1w1")!.mtu = 1300;
    kernel.links.get("pc1w1")!.hostAddresses = [];
    await backend.applyGenerations([gen(1)], ctx);
    assert.equal(kernel.wgDevices.get("pc1w1")!.peers.length, 2);
    assert.equal(kernel.wgDevices.get("pc1w1")!.peers[0]!.endpoint, "172.30.0.12:51821");
    assert.equal(kernel.wgDevices.get("pc1w1")!.listenPort, 51821);
    assert.equal(kernel.links.get("pc1w1")!.mtu, 1412);
    assert.deepEqual(kernel.links.get("pc1w1")!.hostAddresses, [RPF_ADDRESS]);
    kernel.links.delete("pc1w1");
    kernel.wgDevices.delete("pc1w1");
    kernel.links.set("pc1w1", { ifname: "pc1w1", kind: "tun", mtu: 1420, up: true });
    await backend.applyGenerations([gen(1)], ctx);
    assert.equal(kernel.links.get("pc1w1")?.kind, "wireguard");
    assert.equal(kernel.wgDevices.get("pc1w1")?.peers.length, 2);
  });

  it("resyncs fully after a failed pass", async () => {
    const { kernel, backend, ctx } = setup();
    kernel.failNext("wgSyncconf", "Unable to modify interface: Operation not permitted");
    await assert.rejects(backend.applyGenerations([gen(1)], ctx), /kernel WireGuard reconcile failed/);
    assert.equal(kernel.wgDevices.get("pc1w1")?.peers.length, 0, "the link exists, unconfigured");
    await backend.applyGenerations([gen(1)], ctx);
    assert.equal(kernel.wgDevices.get("pc1w1")?.peers.length, 2);
  });

  it("keeps both generations through a rotation and retires only the old one, never a foreign interface", async () => {
    const { kernel, backend, ctx } = setup();
    await kernel.ipBatch(undefined, ["link add dev wg0 type wireguard"]);
    await backend.applyGenerations([gen(1)], ctx);
    await backend.applyGenerations([gen(2)], ctx);
    assert.ok(kernel.links.has("pc1w1") && kernel.links.has("pc1w0"));
    await backend.retireGenerations([gen(2)], ctx);
    assert.deepEqual([...kernel.wgDevices.keys()].sort(), ["pc1w0", "wg0"]);
    await backend.retireGenerations([], ctx);
    assert.deepEqual([...kernel.wgDevices.keys()], ["wg0"]);
  });

  it("observes per peer: node, epoch, key, endpoint, counters and the latest handshake in ms", async () => {
    const { kernel, backend, ctx } = setup();
    await backend.applyGenerations([gen(1), gen(2, 1)], ctx);
    const key = gen(2).peers[0]!.publicKey;
    kernel.wgTraffic("pc1w0", key, 148, 92, 1_700_000_123);
    const rows = await backend.observe();
    assert.equal(rows.length, 3);
    assert.deepEqual(
      rows.find((r) => r.epoch === 2),
      {
        node: "node-2",
        epoch: 2,
        ifname: "pc1w0",
        publicKey: key,
        endpoint: "172.30.0.12:51820",
        txBytes: 148,
        rxBytes: 92,
        latestHandshake: 1_700_000_123_000,
      },
    );
    assert.ok(rows.filter((r) => r.epoch === 1).every((r) => r.latestHandshake === undefined));
  });
});
