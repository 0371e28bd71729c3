import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { generateKeyPair, type NodeKeyPair } from "../../keys/x25519.js";
import type { DesiredGeneration, DesiredRoute } from "../types.js";
import { espIfname } from "./backend.js";
import { planEsp, wantedActive } from "./plan.js";
import { EspState } from "./state.js";

const keys = new Map<string, NodeKeyPair>();
function kp(node: string, epoch: number): NodeKeyPair {
  const k = `${node}/${epoch}`;
  if (!keys.has(k))
    keys.set(
      k,
      generateKeyPair((n) => randomBytes(n)),
    );
  return keys.get(k)!;
}

/** Every node's SA instance (src/keys/derive.ts). */
const instances = new Map(["a", "b", "c"].map((n) => [n, randomBytes(16).toString("hex")]));

function gen(epoch: number, self = "a"): DesiredGeneration {
  const slot = (epoch % 2) as 0 | 1;
  const peers = ["a", "b", "c"].filter((n) => n !== self);
  return {
    epoch,
    mode: "ipsec",
    slot,
    ifname: `pc1w${slot}`,
    listenPort: 51820 + slot,
    peers: peers.map((n, i) => ({
      node: n,
      publicKey: kp(n, epoch).publicKey.toString("base64"),
      saInstance: instances.get(n)!,
      endpoint: { address: `10.0.0.${i + 2}`, port: 51820 + slot },
      allowedIps: [`10.244.${i + 2}.0/24`],
    })),
  };
}

function routesTo(g: DesiredGeneration): DesiredRoute[] {
  return g.peers.flatMap((p) => p.allowedIps.map((dst) => ({ dst, kind: "tunnel" as const, dev: g.ifname })));
}

const meta = { ifname: "pc1we", pid: 1, port: 4500, mtu: 1400, tun: { offload: true, superSegments: 0 } };

/** Plans against a real EspState, applies, and returns the plan (the daemon's logic without I/O). */
function step(
  state: EspState,
  pushed: Map<string, string>,
  gens: DesiredGeneration[],
  routes: DesiredRoute[],
  self = "a",
) {
  const plan = planEsp({
    self,
    instance: instances.get(self)!,
    localAddress: "10.0.0.1",
    generations: gens,
    routes,
    port: 4500,
    privateKey: (e) => kp(self, e).privateKey,
    have: state.status(0, meta),
    pushed,
  });
  if (plan.request !== undefined) state.apply(plan.request, 0);
  return plan;
}

describe("planEsp", () => {
  it("runs prepare -> switch -> retire with both key IDs side by side, then settles", () => {
    const state = new EspState();
    let p = step(state, new Map(), [gen(1)], routesTo(gen(1)));
    assert.equal(p.request?.sas?.length, 4);
    assert.deepEqual(
      state.status(0, meta).peers.map((x) => x.activeKeyId),
      [1, 1],
    );
    // Nothing changed: nothing to send.
    p = step(state, p.pushed, [gen(1)], routesTo(gen(1)));
    assert.equal(p.request, undefined);
    // prepare: epoch 2 installed, routes still on generation 1.
    p = step(state, p.pushed, [gen(1), gen(2)], routesTo(gen(1)));
    assert.equal(p.request?.sas?.length, 4);
    assert.equal(p.request?.activate, undefined);
    assert.deepEqual(state.db.keyIds(), [1, 2]);
    // switch: routes to generation 2 activate key ID 2.
    p = step(state, p.pushed, [gen(1), gen(2)], routesTo(gen(2)));
    assert.deepEqual(p.request?.activate, [
      { peer: "b", keyId: 2 },
      { peer: "c", keyId: 2 },
    ]);
    assert.equal(p.request?.sas, undefined);
    // retire: key ID 1 goes.
    p = step(state, p.pushed, [gen(2)], routesTo(gen(2)));
    assert.deepEqual(p.request?.removeKeyIds, [1]);
    assert.deepEqual(state.db.keyIds(), [2]);
    assert.deepEqual(
      state.status(0, meta).peers.map((x) => x.activeKeyId),
      [2, 2],
    );
    assert.equal(step(state, p.pushed, [gen(2)], routesTo(gen(2))).request, undefined);
  });

  it("derives the same SA on both ends: a's outbound is b's inbound", () => {
    const sa = new EspState();
    const sb = new EspState();
    step(sa, new Map(), [gen(3, "a")], routesTo(gen(3, "a")), "a");
    step(sb, new Map(), [gen(3, "b")], routesTo(gen(3, "b")), "b");
    const out = sa.db.outbound("b")!;
    const inb = sb.db.inboundCandidates(out.spi).find((s) => s.peer === "a");
    assert.ok(inb !== undefined);
    assert.ok(out.key.equals(inb.key) && out.salt.equals(inb.salt));
    assert.equal(out.keyId, 3);
  });

  it("removes peers that left and re-pushes SAs the daemon lost", () => {
    const state = new EspState();
    let p = step(state, new Map(), [gen(1)], routesTo(gen(1)));
    const g = gen(1);
    g.peers = g.peers.filter((x) => x.node !== "c");
    p = step(state, p.pushed, [g], routesTo(g));
    assert.deepEqual(p.request?.removePeers, ["c"]);
    assert.deepEqual(
      state.status(0, meta).peers.map((x) => x.name),
      ["b"],
    );
    // A restarted daemon: empty state, same pushed map.
    const fresh = new EspState();
    p = step(fresh, p.pushed, [g], routesTo(g));
    assert.equal(p.request?.sas?.length, 2);
    assert.equal(fresh.db.outbound("b")?.keyId, 1);
  });

  it("a peer's new SA instance replaces both SAs of the pair, under new SPIs", () => {
    const state = new EspState();
    let p = step(state, new Map(), [gen(1)], routesTo(gen(1)));
    const before = state.status(0, meta).sas.filter((x) => x.peer === "b");
    const g = gen(1);
    g.peers = g.peers.map((x) => (x.node === "b" ? { ...x, saInstance: "0f".repeat(16) } : x));
    p = step(state, p.pushed, [g], routesTo(g));
    assert.deepEqual(
      p.request?.sas?.map((x) => [x.direction, x.peer]),
      [
        ["in", "b"],
        ["out", "b"],
      ],
    );
    const after = state.status(0, meta).sas.filter((x) => x.peer === "b");
    assert.equal(after.length, 2, "the old inbound SA is replaced, not kept beside");
    for (const x of after) assert.ok(!before.some((y) => y.spi === x.spi), `${x.direction} SPI is new`);
    assert.equal(step(state, p.pushed, [g], routesTo(g)).request, undefined);
  });

  it("a peer without an SA instance gets no SA; its instance arriving gets them", () => {
    const state = new EspState();
    const g = gen(1);
    g.peers = g.peers.map((x) =>
      x.node === "c"
        ? { node: x.node, publicKey: x.publicKey, endpoint: x.endpoint, allowedIps: x.allowedIps }
        : x,
    );
    const p = step(
      state,
      new Map(),
      [g],
      routesTo(gen(1)).filter((r) => r.dst !== "10.244.3.0/24"),
    );
    assert.deepEqual([...new Set(p.request?.sas?.map((x) => x.peer))], ["b"]);
    assert.equal(state.db.outboundFor("c", 1), undefined);
    step(state, p.pushed, [gen(1)], routesTo(gen(1)));
    assert.equal(state.db.outbound("c")?.keyId, 1);
  });

  it("a peer removed and re-added within the epoch continues its outbound sequence", () => {
    const state = new EspState();
    let p = step(state, new Map(), [gen(1)], routesTo(gen(1)));
    const out = state.db.outbound("c")!;
    const g = gen(1);
    g.peers = g.peers.filter((x) => x.node !== "c");
    p = step(state, p.pushed, [g], routesTo(g));
    assert.deepEqual(p.request?.removePeers, ["c"]);
    p = step(state, p.pushed, [gen(1)], routesTo(gen(1)));
    assert.equal(state.db.outbound("c"), out, "the SA that sent before, not a new one from sequence 1");
  });

  it("sets its own SA instance in the daemon, which reports it back", () => {
    const state = new EspState();
    step(state, new Map(), [gen(1)], routesTo(gen(1)));
    assert.equal(state.status(0, meta).local.instance, instances.get("a"));
  });

  it("with no route to a peer keeps the current key ID or takes the oldest generation", () => {
    const active = wantedActive([gen(4), gen(5)], [], new Map([["b", 5]]));
    assert.equal(active.get("b"), 5);
    assert.equal(active.get("c"), 4);
  });

  it("names the ESP interface after the generations' prefix", () => {
    assert.equal(espIfname([gen(1)]), "pc1we");
    assert.equal(espIfname([]), "podcrypte");
  });

  it("without prune installs and activates but removes nothing; prune then retires", () => {
    const state = new EspState();
    let p = step(state, new Map(), [gen(1), gen(2)], routesTo(gen(2)));
    const g = gen(2);
    g.peers = g.peers.filter((x) => x.node !== "c");
    const plan = planEsp({
      self: "a",
      instance: instances.get("a")!,
      generations: [g],
      routes: routesTo(g),
      port: 4500,
      privateKey: (e) => kp("a", e).privateKey,
      have: state.status(0, meta),
      pushed: p.pushed,
      prune: false,
    });
    assert.equal(plan.request, undefined, "key ID 1 and peer c stay until retire");
    p = step(state, plan.pushed, [g], routesTo(g));
    assert.deepEqual(p.request?.removeKeyIds, [1]);
    assert.deepEqual(p.request?.removePeers, ["c"]);
    assert.deepEqual(state.db.keyIds(), [2]);
  });
});
