import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isPodcryptError } from "../errors/index.js";
import { decapsulate, encapsulate } from "./codec.js";
import { IPPROTO_UDP, ipv4Packet } from "./ip.js";
import { InboundSa, OutboundSa, type SaParams } from "./sa.js";
import { SaDatabase } from "./sadb.js";

const params = (keyId: number, spi: number, peer: string, fill: number): SaParams => ({
  spi,
  keyId,
  key: Buffer.alloc(16, fill),
  salt: Buffer.alloc(4, fill),
  peer,
  createdAt: 0,
});
const inner = ipv4Packet("10.0.0.1", "10.0.0.2", IPPROTO_UDP, Buffer.from("hello"));

describe("SaDatabase", () => {
  it("accepts both key IDs during a rotation and only the new one after retire", () => {
    const sender = new SaDatabase();
    const receiver = new SaDatabase();
    for (const [keyId, spi, fill] of [
      [1, 0x1000_0abc, 1],
      [2, 0x2000_0abc, 2],
    ] as const) {
      sender.installOutbound(new OutboundSa(params(keyId, spi, "b", fill)));
      receiver.installInbound(new InboundSa(params(keyId, spi, "a", fill)));
    }
    sender.activateOutbound("b", 1);
    const old = encapsulate(sender.outbound("b")!, inner, 1);
    sender.activateOutbound("b", 2); // switch
    const cur = encapsulate(sender.outbound("b")!, inner, 1);
    assert.ok(old.ok && cur.ok);
    assert.equal(old.packet.readUInt32BE(0) >>> 28, 1);
    assert.equal(cur.packet.readUInt32BE(0) >>> 28, 2);
    // New arrives before old (reordering across the switch): both accepted.
    const d2 = decapsulate(receiver, cur.packet, 2);
    const d1 = decapsulate(receiver, old.packet, 2);
    assert.ok(d1.ok && d2.ok);
    assert.equal(d1.sa.keyId, 1);
    assert.equal(d2.sa.keyId, 2);
    assert.deepEqual(receiver.keyIds(), [1, 2]);

    assert.equal(receiver.removeKeyId(1), 1);
    assert.equal(sender.removeKeyId(1), 1);
    assert.equal(receiver.removeKeyId(1), 0, "removing what is absent is not an error");
    assert.deepEqual(receiver.keyIds(), [2]);
    const late = encapsulate(new OutboundSa(params(1, 0x1000_0abc, "b", 1)), inner, 3);
    assert.ok(late.ok);
    assert.equal(decapsulate(receiver, late.packet, 3).ok, false);
    assert.equal(receiver.drops.get("unknown-spi"), 1);
    assert.equal(sender.outbound("b")!.keyId, 2);
  });

  it("keeps colliding SPIs of different peers apart by letting the ICV decide", () => {
    const db = new SaDatabase();
    db.installInbound(new InboundSa(params(3, 0x3000_0001, "x", 7)));
    db.installInbound(new InboundSa(params(3, 0x3000_0001, "y", 8)));
    assert.equal(db.inboundCandidates(0x3000_0001).length, 2);
    for (const [peer, fill] of [
      ["x", 7],
      ["y", 8],
    ] as const) {
      const e = encapsulate(new OutboundSa(params(3, 0x3000_0001, "me", fill)), inner, 1);
      assert.ok(e.ok);
      const d = decapsulate(db, e.packet, 1);
      assert.ok(d.ok);
      assert.equal(d.sa.peer, peer);
    }
    const stranger = new OutboundSa(params(3, 0x3000_0001, "me", 9));
    stranger.skipTo(4);
    const forged = encapsulate(stranger, inner, 1);
    assert.ok(forged.ok);
    assert.deepEqual(decapsulate(db, forged.packet, 1), {
      ok: false,
      reason: "auth-failed",
      spi: 0x3000_0001,
    });
  });

  it("re-installing the same SA keeps its counters and replay window; a new key replaces it", () => {
    const db = new SaDatabase();
    const first = new InboundSa(params(1, 0x1000_0002, "p", 1));
    db.installInbound(first);
    const out = new OutboundSa(params(1, 0x1000_0002, "me", 1));
    const e = encapsulate(out, inner, 1);
    assert.ok(e.ok && decapsulate(db, e.packet, 1).ok);
    db.installInbound(new InboundSa(params(1, 0x1000_0002, "p", 1)));
    assert.equal(db.inbound("p", 1), first);
    assert.equal(decapsulate(db, e.packet, 1).ok, false, "still a replay");
    db.installInbound(new InboundSa(params(1, 0x1000_0002, "p", 5)));
    assert.notEqual(db.inbound("p", 1), first);
    assert.equal(db.inboundCandidates(0x1000_0002).length, 1);
  });

  it("reports peers needing an early rekey, removes peers, lists SAs without keys", () => {
    const db = new SaDatabase();
    const sa = new OutboundSa({ ...params(4, 0x4000_0003, "q", 1), rekeyThreshold: 2 });
    db.installOutbound(sa);
    db.installInbound(new InboundSa(params(4, 0x4000_0004, "q", 2)));
    assert.deepEqual(db.rekeyNeeded(), [], "not active yet");
    db.activateOutbound("q", 4);
    encapsulate(sa, inner, 10);
    assert.deepEqual(db.rekeyNeeded(), []);
    encapsulate(sa, inner, 11);
    assert.deepEqual(db.rekeyNeeded(), ["q"]);
    const rows = db.list();
    assert.equal(rows.length, 2);
    const outRow = rows.find((r) => r.direction === "out")!;
    assert.equal(outRow.packets, 2);
    assert.equal(outRow.bytes, 2 * inner.length);
    assert.equal(outRow.lastUsedAt, 11);
    assert.equal(JSON.stringify(rows).includes("0101010101"), false);
    // A peer that leaves keeps its SAs (not sending) until their key ID is retired.
    assert.equal(db.detachPeer("q"), 2);
    assert.equal(db.outbound("q"), undefined);
    assert.equal(db.all().length, 2);
    db.installOutbound(sa);
    db.activateOutbound("q", 4);
    assert.equal(db.outbound("q"), sa, "re-added: the same SA, its sequence numbers go on");
    assert.equal(db.removeKeyId(4), 2);
    assert.deepEqual(db.all(), []);
    assert.throws(
      () => db.activateOutbound("q", 4),
      (e: unknown) => isPodcryptError(e, "ENOSA"),
    );
  });

  it("SA constructors validate SPI (>= 256), key ID, key and salt lengths", () => {
    const ok = params(1, 256, "p", 1);
    assert.doesNotThrow(() => new InboundSa(ok));
    for (const bad of [
      { spi: 255 },
      { spi: 2 ** 32 },
      { keyId: 0 },
      { keyId: 16 },
      { key: Buffer.alloc(15) },
      { salt: Buffer.alloc(5) },
    ]) {
      assert.throws(() => new OutboundSa({ ...ok, ...bad }), /spi|keyId|key|salt/);
    }
  });
});
