import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DesiredGeneration, DesiredNodeState } from "../../../src/dataplane/types.js";
import { ManualClock } from "../../../src/clock.js";
import { FakeDataplane, FakeFabric, fakeErrno } from "./backend.js";
import { MemoryEpochKeys } from "./keys.js";

function gen(epoch: number, peers: Array<[string, string]>): DesiredGeneration {
  const slot = (epoch % 2) as 0 | 1;
  return {
    epoch,
    mode: "wireguard",
    slot,
    ifname: `podcrypt${slot}`,
    listenPort: 51820 + slot,
    peers: peers.map(([node, publicKey], i) => ({
      node,
      publicKey,
      endpoint: { address: `192.0.2.${i + 2}`, port: 51820 + slot },
      allowedIps: [`10.${i + 2}.0.0/24`],
    })),
  };
}

function state(gens: DesiredGeneration[], dev = "podcrypt1"): DesiredNodeState {
  return {
    generations: gens,
    routes: [
      { dst: "10.2.0.0/24", kind: "tunnel", dev },
      { dst: "10.3.0.0/24", kind: "blackhole" },
    ],
    strict: {
      dropOutbound: true,
      dropInbound: true,
      underlayIf: "eth0",
      localPodCidrs: ["10.1.0.0/24"],
      remotePodCidrs: ["10.2.0.0/24", "10.3.0.0/24"],
    },
    mtu: 1420,
  };
}

describe("FakeDataplane", () => {
  it("installs generations, peers, routes and strict state; a repeated pass is a no-op", async () => {
    const keys = new MemoryEpochKeys();
    const pub = await keys.ensure(1);
    const fake = new FakeDataplane();
    const desired = state([gen(1, [["b", "B1"]])]);
    await fake.reconcile(desired, (e) => keys.privateKey(e));
    assert.deepEqual(fake.epochs(), [1]);
    assert.equal(fake.generation(1)!.publicKey, pub, "generation keyed with the node's own key");
    assert.ok(fake.hasPeer("b", 1, "B1"));
    assert.deepEqual(fake.route("10.3.0.0/24"), { dst: "10.3.0.0/24", kind: "blackhole" });
    assert.equal(fake.strict?.dropOutbound, true);
    assert.equal(fake.mtu, 1420);
    const changes = { ...fake.stats };
    await fake.reconcile(desired, (e) => keys.privateKey(e));
    assert.equal(fake.stats.noops, changes.noops + 1);
    assert.equal(fake.stats.peersSet, changes.peersSet);
  });

  it("make before break: a rotation adds the new generation, then prunes the old one", async () => {
    const keys = new MemoryEpochKeys();
    await keys.ensure(1);
    await keys.ensure(2);
    const fake = new FakeDataplane();
    const pk = (e: number): Buffer => keys.privateKey(e);
    await fake.reconcile(state([gen(1, [["b", "B1"]])]), pk);
    await fake.reconcile(state([gen(1, [["b", "B1"]]), gen(2, [["b", "B2"]])], "podcrypt0"), pk);
    assert.deepEqual(fake.epochs(), [1, 2]);
    assert.deepEqual(fake.route("10.2.0.0/24"), { dst: "10.2.0.0/24", kind: "tunnel", dev: "podcrypt0" });
    await fake.reconcile(state([gen(2, [["b", "B2"]])], "podcrypt0"), pk);
    assert.deepEqual(fake.epochs(), [2]);
    assert.deepEqual(fake.installHistory, [1, 2]);
    assert.equal(fake.stats.generationsRemoved, 1);
  });

  it("a peer removed from the desired state is removed; a changed key is replaced", async () => {
    const keys = new MemoryEpochKeys();
    await keys.ensure(1);
    const fake = new FakeDataplane();
    const pk = (e: number): Buffer => keys.privateKey(e);
    await fake.reconcile(
      state([
        gen(1, [
          ["b", "B1"],
          ["c", "C1"],
        ]),
      ]),
      pk,
    );
    await fake.reconcile(state([gen(1, [["b", "B1x"]])]), pk);
    assert.ok(fake.hasPeer("b", 1, "B1x"));
    assert.equal(fake.hasPeer("c"), false);
  });

  it("failNext fails one pass at the named step, leaving earlier steps applied; the next pass resyncs fully", async () => {
    const keys = new MemoryEpochKeys();
    await keys.ensure(1);
    const fake = new FakeDataplane();
    const pk = (e: number): Buffer => keys.privateKey(e);
    fake.failNext(fakeErrno("ENOBUFS"), "routes");
    await assert.rejects(fake.reconcile(state([gen(1, [["b", "B1"]])]), pk), { code: "ENOBUFS" });
    assert.ok(fake.hasPeer("b", 1), "peers step ran before the fault");
    assert.equal(fake.routes().length, 0, "routes step did not");
    assert.equal(fake.stats.failures, 1);
    await fake.reconcile(state([gen(1, [["b", "B1"]])]), pk);
    assert.equal(fake.routes().length, 2);
    assert.equal(fake.stats.fullResyncs, 1);
  });

  it("failAlways wedges every pass until recover()", async () => {
    const keys = new MemoryEpochKeys();
    await keys.ensure(1);
    const fake = new FakeDataplane();
    const pk = (e: number): Buffer => keys.privateKey(e);
    fake.failAlways(fakeErrno("ETIMEDOUT"));
    for (let i = 0; i < 3; i++)
      await assert.rejects(fake.reconcile(state([gen(1, [])]), pk), { code: "ETIMEDOUT" });
    assert.deepEqual(fake.epochs(), []);
    fake.recover();
    await fake.reconcile(state([gen(1, [])]), pk);
    assert.deepEqual(fake.epochs(), [1]);
  });

  it("a missing private key fails the pass (no generation without the node's key)", async () => {
    const fake = new FakeDataplane();
    const keys = new MemoryEpochKeys();
    await assert.rejects(
      fake.reconcile(state([gen(3, [])]), (e) => keys.privateKey(e)),
      /no key pair for epoch 3/,
    );
    assert.deepEqual(fake.epochs(), []);
  });

  it("refuses a generation whose slot interface still holds another epoch (EEXIST)", async () => {
    const keys = new MemoryEpochKeys();
    await keys.ensure(1);
    await keys.ensure(3);
    const fake = new FakeDataplane();
    const pk = (e: number): Buffer => keys.privateKey(e);
    await fake.reconcile(state([gen(1, [])]), pk);
    await assert.rejects(fake.reconcile(state([gen(1, []), gen(3, [])]), pk), { code: "EEXIST" });
  });

  it("close keeps what is installed; reopen sees it, a closed handle refuses work", async () => {
    const keys = new MemoryEpochKeys();
    await keys.ensure(1);
    const fake = new FakeDataplane();
    await fake.reconcile(state([gen(1, [["b", "B1"]])]), (e) => keys.privateKey(e));
    await fake.close();
    await assert.rejects(fake.observe(), { code: "ECLOSED" });
    const again = fake.reopen();
    assert.ok(again.hasPeer("b", 1, "B1"));
    assert.deepEqual(
      (await again.observe()).map((p) => [p.node, p.epoch, p.publicKey]),
      [["b", 1, "B1"]],
    );
  });

  it("MemoryEpochKeys keeps a key per epoch and retains only what is asked", async () => {
    const keys = new MemoryEpochKeys();
    const a = await keys.ensure(1);
    assert.equal(await keys.ensure(1), a);
    await keys.ensure(2);
    await keys.retain([2]);
    assert.deepEqual(keys.epochs(), [2]);
    assert.deepEqual(keys.retired, [1]);
    assert.throws(() => keys.privateKey(1), /no key pair/);
  });

  it("on a fabric, a session exists only once both ends hold each other with the keys in use", async () => {
    const clock = new ManualClock();
    const fabric = new FakeFabric();
    const [ka, kb] = [new MemoryEpochKeys(), new MemoryEpochKeys()];
    const [pa, pb] = [await ka.ensure(2), await kb.ensure(2)];
    const a = new FakeDataplane({ fabric: { node: "a", network: fabric }, clock });
    const b = new FakeDataplane({ fabric: { node: "b", network: fabric }, clock });
    await a.reconcile(state([gen(2, [["b", pb]])], "podcrypt0"), (e) => ka.privateKey(e));
    const none = await a.observe();
    assert.equal(none[0]?.latestHandshake, undefined, "b has no generation yet");
    // b holds a, but under a wrong key: still no session.
    await b.reconcile(state([gen(2, [["a", "WRONG"]])], "podcrypt0"), (e) => kb.privateKey(e));
    assert.equal((await a.observe())[0]?.latestHandshake, undefined);
    await b.reconcile(state([gen(2, [["a", pa]])], "podcrypt0"), (e) => kb.privateKey(e));
    clock.advance(1000);
    const up = clock.wallNow();
    assert.equal((await a.observe())[0]?.latestHandshake, up);
    assert.equal((await b.observe())[0]?.latestHandshake, up);
    clock.advance(1000);
    assert.equal((await a.observe())[0]?.latestHandshake, up, "the first handshake time is kept");
    // A reopened handle (restarted agent) still sees the session; a retired generation loses it.
    assert.equal((await a.reopen().observe())[0]?.latestHandshake, up);
    await a.reconcile(state([]), (e) => ka.privateKey(e));
    assert.deepEqual(await a.observe(), []);
  });

  it("without a fabric every configured WireGuard peer answers at once; ESP has no handshakes", async () => {
    const keys = new MemoryEpochKeys();
    await keys.ensure(1);
    const fake = new FakeDataplane();
    await fake.reconcile(state([gen(1, [["b", "B1"]])]), (e) => keys.privateKey(e));
    assert.equal(typeof (await fake.observe())[0]?.latestHandshake, "number");
    const esp = new FakeDataplane();
    await esp.reconcile(state([{ ...gen(1, [["b", "B1"]]), mode: "ipsec" }]), (e) => keys.privateKey(e));
    assert.equal((await esp.observe())[0]?.latestHandshake, undefined);
  });
});
