import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isPodcryptError, isValidationError } from "../../errors/index.js";
import type { EspSaConfig } from "./control.js";
import { EspState } from "./state.js";

const sa = (over: Partial<EspSaConfig> = {}): EspSaConfig => ({
  direction: "out",
  peer: "b",
  keyId: 1,
  spi: 0x1000_0001,
  key: "00".repeat(16),
  salt: "11".repeat(4),
  ...over,
});
const peer = { name: "b", endpoint: { address: "10.0.0.2", port: 4500 }, allowedIps: ["10.244.2.0/24"] };
const meta = { ifname: "e0", pid: 1, port: 4500, mtu: 1400, tun: { offload: true, superSegments: 0 } };

describe("EspState.apply", () => {
  it("installs peers and SAs, activates, and reports without key material", () => {
    const s = new EspState();
    s.apply(
      {
        local: { name: "a", address: "10.0.0.1" },
        peers: [peer],
        sas: [sa(), sa({ direction: "in", spi: 0x1000_0002 })],
        activate: [{ peer: "b", keyId: 1 }],
      },
      0,
    );
    const st = s.status(5000, meta);
    assert.equal(st.peers[0]?.activeKeyId, 1);
    assert.equal(st.sas.length, 2);
    assert.equal(st.sas.find((x) => x.direction === "out")?.active, true);
    assert.equal(st.sas[0]?.ageS, 5);
    assert.ok(!JSON.stringify(st).includes("0".repeat(32)));
    assert.equal(s.routes.lookup(Buffer.from([10, 244, 2, 9]))?.name, "b");
  });

  it("rejects a bad request as a whole and changes nothing (table)", () => {
    const cases: Array<[string, Parameters<EspState["apply"]>[0], (e: unknown) => boolean]> = [
      ["unknown peer", { sas: [sa({ peer: "zz" })] }, isValidationError],
      ["bad endpoint", { peers: [{ ...peer, endpoint: { address: "nope", port: 1 } }] }, isValidationError],
      ["bad CIDR", { peers: [{ ...peer, allowedIps: ["10.0.0.0/99"] }] }, isValidationError],
      [
        "activate without SA",
        { peers: [peer], activate: [{ peer: "b", keyId: 2 }] },
        (e) => isPodcryptError(e, "ENOSA"),
      ],
      [
        "activate a removed key ID",
        { peers: [peer], sas: [], removeKeyIds: [1], activate: [{ peer: "b", keyId: 1 }] },
        (e) => isPodcryptError(e, "ENOSA"),
      ],
    ];
    for (const [name, req, check] of cases) {
      const s = new EspState();
      s.apply({ peers: [{ ...peer, name: "c" }] }, 0);
      if (name === "activate a removed key ID") s.apply({ peers: [peer], sas: [sa()] }, 0);
      const before = JSON.stringify(s.status(0, meta));
      assert.throws(() => s.apply(req, 0), check, name);
      assert.equal(JSON.stringify(s.status(0, meta)), before, name);
    }
  });

  it("rotates: activate 2 and remove 1 in one request; exports outer addresses per direction", () => {
    const s = new EspState();
    s.apply(
      {
        local: { name: "a", address: "10.0.0.1" },
        peers: [peer],
        sas: [sa()],
        activate: [{ peer: "b", keyId: 1 }],
      },
      0,
    );
    s.apply(
      { sas: [sa({ keyId: 2, spi: 0x2000_0001 }), sa({ direction: "in", keyId: 2, spi: 0x2000_0002 })] },
      0,
    );
    s.apply({ activate: [{ peer: "b", keyId: 2 }], removeKeyIds: [1] }, 0);
    assert.equal(s.db.outbound("b")?.keyId, 2);
    assert.deepEqual(s.db.keyIds(), [2]);
    const ex = s.exportSas();
    assert.deepEqual(ex.map((x) => [x.direction, x.src, x.dst]).sort(), [
      ["in", "10.0.0.2", "10.0.0.1"],
      ["out", "10.0.0.1", "10.0.0.2"],
    ]);
  });

  it("removing a peer removes its routes; its SAs stay, not sending, until their key ID retires", () => {
    const s = new EspState();
    s.apply({ peers: [peer], sas: [sa()], activate: [{ peer: "b", keyId: 1 }] }, 0);
    const out = s.db.outbound("b")!;
    s.apply({ removePeers: ["b"] }, 0);
    assert.equal(s.routes.lookup(Buffer.from([10, 244, 2, 9])), undefined);
    assert.equal(s.db.outbound("b"), undefined);
    // Re-added within the epoch: the same SA object (its sequence numbers) sends again.
    s.apply({ peers: [peer], sas: [sa()], activate: [{ peer: "b", keyId: 1 }] }, 0);
    assert.equal(s.db.outbound("b"), out);
    s.apply({ removePeers: ["b"], removeKeyIds: [1] }, 0);
    assert.equal(s.db.all().length, 0);
  });

  it("keeps the SA instance the agent set, and reports it", () => {
    const s = new EspState();
    assert.equal(s.status(0, meta).local.instance, null);
    s.apply({ local: { name: "a", instance: "ab".repeat(16) } }, 0);
    s.apply({ local: { name: "a", address: "10.0.0.1" } }, 0);
    assert.equal(s.status(0, meta).local.instance, "ab".repeat(16));
  });

  it("an inbound SA of the same peer and key ID under a new SPI replaces the old one", () => {
    const s = new EspState();
    s.apply({ peers: [peer], sas: [sa({ direction: "in", spi: 0x1000_0002 })] }, 0);
    s.apply({ sas: [sa({ direction: "in", spi: 0x1000_0003, key: "22".repeat(16) })] }, 0);
    assert.deepEqual(
      s.status(0, meta).sas.map((x) => x.spi),
      ["0x10000003"],
    );
  });
});

describe("EspState.handOver / takeOver (a daemon's planned restart)", () => {
  const configured = (): EspState => {
    const s = new EspState();
    s.apply(
      {
        local: { name: "a", address: "10.0.0.1", instance: "ab".repeat(16) },
        peers: [peer],
        sas: [sa(), sa({ direction: "in", spi: 0x1000_0002 }), sa({ keyId: 2, spi: 0x2000_0001 })],
        activate: [{ peer: "b", keyId: 1 }],
      },
      0,
    );
    return s;
  };

  it("the successor numbers after the last sequence number used, and the old state can number nothing more", () => {
    const old = configured();
    const out = old.db.outbound("b")!;
    for (let i = 0; i < 5; i++) out.nextSequence();
    const inbound = old.db.inbound("b", 1)!;
    for (const seq of [1, 2, 3, 7]) assert.ok(inbound.replay.update(seq));
    // Over the control socket: JSON.
    const wire = JSON.parse(JSON.stringify(old.handOver(1000))) as unknown;
    // Security invariant: no (key, nonce) pair from two daemons. The old state gave its sequence
    // space away: it cannot number (encrypt) another packet on any outbound SA.
    for (const x of old.db.all()) if (x.direction === "out") assert.equal(x.nextSequence(), undefined);

    const next = new EspState();
    next.takeOver(wire, 50);
    const moved = next.db.outbound("b")!;
    assert.equal(moved.spi, out.spi, "the same SA sends");
    assert.equal(moved.nextSequence(), 6, "numbering goes on after 5, never back");
    assert.equal(next.db.outboundFor("b", 2)?.nextSequence(), 1, "an SA that never sent starts at 1");
    const rin = next.db.inbound("b", 1)!;
    for (const seq of [1, 2, 3, 7]) assert.equal(rin.replay.check(seq), false, `${seq} stays a replay`);
    assert.equal(rin.replay.check(5), true, "5 was never seen");
    assert.equal(next.local.instance, "ab".repeat(16), "the SA instance goes with it");
    assert.equal(next.routes.lookup(Buffer.from([10, 244, 2, 9]))?.name, "b");
    const st = next.status(1050, meta);
    assert.equal(st.sas.find((x) => x.direction === "out" && x.keyId === 1)?.sequence, 6);
    assert.equal(st.sas.find((x) => x.direction === "out" && x.keyId === 1)?.active, true);
    assert.equal(st.sas.find((x) => x.direction === "out" && x.keyId === 2)?.active, false);
  });

  it("refuses bad input, or a state that holds SAs already, and changes nothing", () => {
    const wire = JSON.parse(JSON.stringify(configured().handOver(0))) as {
      sas: Array<Record<string, unknown>>;
    };
    const bad = structuredClone(wire);
    bad.sas[0]!["key"] = "zz";
    const fresh = new EspState();
    assert.throws(() => fresh.takeOver(bad, 0), isValidationError);
    assert.equal(fresh.db.all().length, 0);
    assert.equal(fresh.peers.size, 0);
    const busy = configured();
    assert.throws(
      () => busy.takeOver(wire, 0),
      (e) => isPodcryptError(e, "ESTATE"),
    );
  });
});
