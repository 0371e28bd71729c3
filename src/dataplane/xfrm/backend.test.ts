import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { formatSpi } from "../../esp/sa.js";
import { keyIdForEpoch, spiFor } from "../../keys/derive.js";
import { generateKeyPair } from "../../keys/x25519.js";
import { createLogger } from "../../log/logger.js";
import { FakeKernel } from "../../../test/support/fake-kernel.js";
import type { GenerationContext } from "../composite/types.js";
import { peerSas } from "../../keys/sas.js";
import type { DesiredGeneration } from "../types.js";
import { KernelXfrmBackend } from "./backend.js";
import type { EncapHolderPort } from "./encap.js";
import { ifIdForSlot, reqidForEpoch } from "./generations.js";

const logger = createLogger("test", { level: "silent" });
let seed = 1;
const random = (n: number): Buffer => Buffer.alloc(n, seed++);

/** A stateful holder: running or not, with the number of starts. */
class FakeHolder implements EncapHolderPort {
  running = false;
  starts = 0;
  async ensure(): Promise<void> {
    if (!this.running) this.starts++;
    this.running = true;
  }
  async stop(): Promise<void> {
    this.running = false;
  }
}

interface Node {
  name: string;
  address: string;
  /** The SA instance the node published (src/keys/derive.ts). */
  instance: string;
  keys: Map<number, ReturnType<typeof generateKeyPair>>;
}

function node(name: string, address: string, epochs: number[]): Node {
  return {
    name,
    address,
    instance: randomBytes(16).toString("hex"),
    keys: new Map(epochs.map((e) => [e, generateKeyPair(random)])),
  };
}

function gen(self: Node, peers: Node[], epoch: number): DesiredGeneration {
  const slot = (epoch % 2) as 0 | 1;
  return {
    epoch,
    mode: "ipsec",
    slot,
    ifname: `pc1w${slot}`,
    listenPort: 51820 + slot,
    peers: peers.map((p, i) => ({
      node: p.name,
      publicKey: p.keys.get(epoch)!.publicKey.toString("base64"),
      saInstance: p.instance,
      endpoint: { address: p.address, port: 51820 + slot },
      allowedIps: [`10.244.${i + 2}.0/24`],
    })),
  };
}

function setup(self: Node, kernel = new FakeKernel(), published?: string) {
  const holder = new FakeHolder();
  const sysctls: string[] = [];
  const backend = new KernelXfrmBackend({
    logger,
    node: self.name,
    localAddress: self.address,
    underlayIf: "eth0",
    ifPrefix: "pc1w",
    kernel,
    encap: holder,
    sysctl: async (path, value) => {
      sysctls.push(`${path.join(".")}=${value}`);
    },
  });
  const ctx: GenerationContext = {
    routes: [],
    mtu: 1400,
    privateKey: (e) => self.keys.get(e)!.privateKey,
    ...(published === undefined ? {} : { saInstance: published }),
  };
  return { kernel, holder, backend, ctx, sysctls };
}

const a = node("node-1", "172.30.0.11", [1, 2]);
const b = node("node-2", "172.30.0.12", [1, 2]);
const c = node("node-3", "172.30.0.13", [1, 2]);

describe("KernelXfrmBackend", () => {
  it("installs one XFRM interface, SA pair and policies per peer, keyed as the userspace data plane", async () => {
    const { kernel, holder, backend, ctx, sysctls } = setup(a);
    const g = gen(a, [b, c], 1);
    const carriers = await backend.applyGenerations([g], ctx);
    assert.deepEqual([...carriers], [["pc1w1", "pc1w1"]]);
    assert.equal(holder.running, true);
    assert.deepEqual(kernel.links.get("pc1w1"), {
      ifname: "pc1w1",
      kind: "xfrm",
      mtu: 1400,
      up: true,
      ifId: ifIdForSlot(1),
      dev: "eth0",
    });
    assert.deepEqual(sysctls, ["net.ipv4.conf.pc1w1.rp_filter=2"]);
    assert.equal(kernel.states.size, 4);
    assert.equal(kernel.policies.size, 6);
    // node-2's userspace ESP data plane would install these SAs for node-1: same SPIs, same keys.
    const [bIn, bOut] = peerSas({
      self: b.name,
      peer: a.name,
      epoch: 1,
      privateKey: b.keys.get(1)!.privateKey,
      peerPublicKey: a.keys.get(1)!.publicKey,
      selfInstance: b.instance,
      peerInstance: backend.saInstance()!,
    });
    const out = kernel.states.get(`${b.address}|${bIn.spi}`)!;
    assert.equal(out.src, a.address);
    assert.equal(out.spi, spiFor(keyIdForEpoch(1), a.name, b.name, backend.saInstance()!, b.instance));
    assert.equal(out.aead.keyHex, bIn.key + bIn.salt, "a's outbound key is b's inbound key");
    assert.deepEqual(out.encap, { sport: 4500, dport: 4500 });
    assert.equal(out.reqid, reqidForEpoch(1));
    const inb = kernel.states.get(`${a.address}|${bOut.spi}`)!;
    assert.equal(inb.aead.keyHex, bOut.key + bOut.salt, "a's inbound key is b's outbound key");
    assert.equal(inb.replayWindow, 1024);
    const dirs = [...kernel.policies.values()]
      .filter((p) => p.tmpl.dst === b.address || p.tmpl.src === b.address)
      .map((p) => `${p.dir} ${p.src} ${p.dst} ${p.ifId === ifIdForSlot(1)}`)
      .sort();
    assert.deepEqual(dirs, [
      "fwd 10.244.2.0/24 0.0.0.0/0 true",
      "in 10.244.2.0/24 0.0.0.0/0 true",
      "out 0.0.0.0/0 10.244.2.0/24 true",
    ]);
  });

  it("changes nothing on a second pass, with two processes to read it", async () => {
    const { kernel, backend, ctx } = setup(a);
    await backend.applyGenerations([gen(a, [b, c], 1)], ctx);
    const before = { ...kernel.calls };
    await backend.applyGenerations([gen(a, [b, c], 1)], ctx);
    await backend.retireGenerations([gen(a, [b, c], 1)], ctx);
    assert.equal(kernel.calls.ipBatch, before.ipBatch, "no writes");
    assert.equal(kernel.calls.ip - before.ip, 2, "apply and retire plan from one read");
    // A retire not right after an apply that changed nothing reads for itself.
    await backend.retireGenerations([gen(a, [b, c], 1)], ctx);
    assert.equal(kernel.calls.ip - before.ip, 4, "a read of its own");
  });

  it("repairs what was deleted or altered behind its back and leaves foreign state alone", async () => {
    const { kernel, holder, backend, ctx } = setup(a);
    const g = gen(a, [b], 1);
    await backend.applyGenerations([g], ctx);
    await kernel.ipBatch(undefined, [
      "xfrm state add src 172.30.0.11 dst 172.30.0.99 proto esp spi 0x777 reqid 5 mode tunnel aead rfc4106(gcm(aes)) 0x" +
        "00".repeat(20) +
        " 128",
    ]);
    const [first] = [...kernel.states.values()].filter((s) => s.reqid === reqidForEpoch(1));
    kernel.states.delete(`${first!.dst}|${first!.spi}`);
    kernel.policies.clear();
    kernel.links.get("pc1w1")!.up = false;
    kernel.links.get("pc1w1")!.mtu = 1300;
    holder.running = false;
    await backend.applyGenerations([g], ctx);
    assert.equal(holder.running, true);
    assert.equal(holder.starts, 2);
    assert.equal(kernel.states.size, 3);
    assert.equal(kernel.policies.size, 3);
    assert.equal(kernel.links.get("pc1w1")?.up, true);
    assert.equal(kernel.links.get("pc1w1")?.mtu, 1400);
    // A changed key is replaced (keys cannot change in place).
    const out = [...kernel.states.values()].find((s) => s.dst === b.address)!;
    out.aead.keyHex = "ff".repeat(20);
    await backend.applyGenerations([g], ctx);
    assert.notEqual(
      [...kernel.states.values()].find((s) => s.dst === b.address)!.aead.keyHex,
      "ff".repeat(20),
    );
    await backend.retireGenerations([], ctx);
    assert.deepEqual(
      [...kernel.states.values()].map((s) => s.spi),
      [0x777],
    );
    assert.equal(kernel.policies.size, 0);
    assert.equal(kernel.links.has("pc1w1"), false);
    assert.equal(holder.running, false, "no ipsec generation left: the holder goes");
  });

  it("converges after a batch that failed half-way", async () => {
    const { kernel, backend, ctx } = setup(a);
    kernel.failNext("ipBatch", "No buffer space available", 5);
    await assert.rejects(backend.applyGenerations([gen(a, [b, c], 1)], ctx), /kernel XFRM reconcile failed/);
    assert.ok(kernel.states.size > 0 && kernel.policies.size < 6, "the first lines stayed applied");
    await backend.applyGenerations([gen(a, [b, c], 1)], ctx);
    assert.equal(kernel.states.size, 4);
    assert.equal(kernel.policies.size, 6);
  });

  it("keeps the old generation until retire during a rotation, then removes only it", async () => {
    const { kernel, backend, ctx } = setup(a);
    await backend.applyGenerations([gen(a, [b], 1)], ctx);
    await backend.applyGenerations([gen(a, [b], 1), gen(a, [b], 2)], ctx);
    // The composite may install only the new generation first: the old one must survive that.
    await backend.applyGenerations([gen(a, [b], 2)], ctx);
    assert.equal(kernel.states.size, 4);
    assert.deepEqual([...kernel.links.keys()].filter((n) => n.startsWith("pc1w")).sort(), ["pc1w0", "pc1w1"]);
    await backend.retireGenerations([gen(a, [b], 2)], ctx);
    assert.deepEqual(
      [...kernel.links.keys()].filter((n) => n.startsWith("pc1w")),
      ["pc1w0"],
    );
    assert.deepEqual([...new Set([...kernel.states.values()].map((s) => s.ifId))], [ifIdForSlot(0)]);
    assert.ok([...kernel.policies.values()].every((p) => p.ifId === ifIdForSlot(0)));
  });

  it("SA instance: kept across an agent restart while the kernel holds its outbound states, new after a flush or reboot", async () => {
    const kernel = new FakeKernel();
    const first = setup(a, kernel);
    await first.backend.applyGenerations([gen(a, [b, c], 1)], first.ctx);
    const published = first.backend.saInstance()!;
    const spis = () => [...kernel.states.values()].map((s) => s.spi).sort();
    const before = spis();
    // Agent restart: a new backend, the instance read back from the node's record.
    const restarted = setup(a, kernel, published);
    await restarted.backend.applyGenerations([gen(a, [b, c], 1)], restarted.ctx);
    assert.equal(restarted.backend.saInstance(), published);
    assert.deepEqual(spis(), before, "states untouched: their sequence numbers go on");
    // One outbound state lost behind the agent's back (an expiry): a new instance, all new SPIs.
    const outB = [...kernel.states.values()].find((s) => s.src === a.address && s.dst === b.address)!;
    kernel.states.delete(`${outB.dst}|${outB.spi}`);
    await restarted.backend.applyGenerations([gen(a, [b, c], 1)], restarted.ctx);
    const second = restarted.backend.saInstance()!;
    assert.notEqual(second, published);
    const installed = [...kernel.states.values()].filter((s) => s.src === a.address).map((s) => s.spi);
    assert.ok(installed.includes(spiFor(1, a.name, b.name, second, b.instance)));
    assert.ok(installed.includes(spiFor(1, a.name, c.name, second, c.instance)));
    // Reboot: no XFRM state at all, the record still names the last instance.
    const rebooted = setup(a, new FakeKernel(), second);
    await rebooted.backend.applyGenerations([gen(a, [b, c], 1)], rebooted.ctx);
    assert.notEqual(rebooted.backend.saInstance(), second);
    // A flush seen by the running backend.
    const flushedFrom = rebooted.backend.saInstance();
    rebooted.kernel.states.clear();
    await rebooted.backend.applyGenerations([gen(a, [b, c], 1)], rebooted.ctx);
    assert.notEqual(rebooted.backend.saInstance(), flushedFrom);
  });

  it("a peer that leaves keeps its outbound state until retire; re-added, the same state goes on", async () => {
    const { kernel, backend, ctx } = setup(a);
    await backend.applyGenerations([gen(a, [b, c], 1)], ctx);
    const instance = backend.saInstance()!;
    const outC = spiFor(1, a.name, c.name, instance, c.instance);
    kernel.xfrmTraffic(outC, 1000, 10);
    await backend.applyGenerations([gen(a, [b], 1)], ctx);
    await backend.retireGenerations([gen(a, [b], 1)], ctx);
    assert.equal(kernel.states.get(`${c.address}|${outC}`)?.packets, 10, "kept, counters and all");
    assert.equal(
      kernel.states.get(`${a.address}|${spiFor(1, c.name, a.name, c.instance, instance)}`),
      undefined,
    );
    await backend.applyGenerations([gen(a, [b, c], 1)], ctx);
    assert.equal(backend.saInstance(), instance);
    assert.equal(kernel.states.get(`${c.address}|${outC}`)?.packets, 10, "the same state, not a new one");
    // Retired with its key generation.
    await backend.applyGenerations([gen(a, [b], 2)], ctx);
    await backend.retireGenerations([gen(a, [b], 2)], ctx);
    assert.equal(kernel.states.get(`${c.address}|${outC}`), undefined);
  });

  it("a peer's new SA instance replaces its outbound state (the old one is not kept beside it)", async () => {
    const { kernel, backend, ctx } = setup(a);
    await backend.applyGenerations([gen(a, [b, c], 1)], ctx);
    const instance = backend.saInstance()!;
    const g = gen(a, [b, c], 1);
    const fresh = "0f".repeat(16);
    g.peers = g.peers.map((p) => (p.node === b.name ? { ...p, saInstance: fresh } : p));
    await backend.applyGenerations([g], ctx);
    await backend.retireGenerations([g], ctx);
    const toB = [...kernel.states.values()].filter((s) => s.src === a.address && s.dst === b.address);
    assert.deepEqual(
      toB.map((s) => s.spi),
      [spiFor(1, a.name, b.name, instance, fresh)],
    );
  });

  it("installs no SA toward a peer that published no SA instance", async () => {
    const { kernel, backend, ctx } = setup(a);
    const g = gen(a, [b, c], 1);
    g.peers = g.peers.map((p) => (p.node === c.name ? { ...p, saInstance: undefined } : p)) as typeof g.peers;
    await backend.applyGenerations([g], ctx);
    assert.ok([...kernel.states.values()].every((s) => s.src !== c.address && s.dst !== c.address));
  });

  it("observes each peer's SA pair with counters, as `ip -s xfrm state` shows them", async () => {
    const { kernel, backend, ctx } = setup(a);
    await backend.applyGenerations([gen(a, [b, c], 1)], ctx);
    const ia = backend.saInstance()!;
    const outSpi = spiFor(keyIdForEpoch(1), a.name, b.name, ia, b.instance);
    const inSpi = spiFor(keyIdForEpoch(1), b.name, a.name, b.instance, ia);
    kernel.xfrmTraffic(outSpi, 1000, 10);
    kernel.xfrmTraffic(inSpi, 500, 5);
    const rows = await backend.observe();
    assert.deepEqual(rows[0], {
      node: "node-2",
      epoch: 1,
      ifname: "pc1w1",
      keyId: 1,
      endpoint: "172.30.0.12:4500",
      spiOut: formatSpi(outSpi),
      spiIn: formatSpi(inSpi),
      txBytes: 1000,
      rxBytes: 500,
      txPackets: 10,
      rxPackets: 5,
    });
    assert.equal(rows[1]?.node, "node-3");
    assert.equal(rows.length, 2);
  });
});
