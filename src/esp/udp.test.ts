import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encapsulate } from "./codec.js";
import { IPPROTO_UDP, ipv4Packet } from "./ip.js";
import { InboundSa, OutboundSa, type SaParams } from "./sa.js";
import { SaDatabase } from "./sadb.js";
import { classifyUdpPayload, receiveDatagram, udpEncapsulate } from "./udp.js";

const p: SaParams = {
  spi: 0x5000_1234,
  keyId: 5,
  key: Buffer.alloc(16, 3),
  salt: Buffer.alloc(4, 4),
  peer: "x",
  createdAt: 0,
};

describe("ESP in UDP (RFC 3948)", () => {
  it("classifies keepalive, non-ESP marker, garbage and ESP", () => {
    const table: Array<[Buffer, string]> = [
      [Buffer.from([0xff]), "nat-keepalive"],
      [Buffer.from([0x00, 0x00, 0x00, 0x00, 0x25, 0x1a]), "ike"],
      [Buffer.alloc(4), "ike"],
      [Buffer.alloc(0), "malformed"],
      [Buffer.from([0xfe]), "malformed"],
      [Buffer.from([0xff, 0xff]), "malformed"],
      [Buffer.from([0, 0, 1, 0, 0, 0, 0]), "malformed"],
      [Buffer.from([0, 0, 1, 0, 0, 0, 0, 1]), "esp"],
    ];
    for (const [b, kind] of table) assert.equal(classifyUdpPayload(b), kind, b.toString("hex"));
  });

  it("receiveDatagram decapsulates ESP and counts the rest", () => {
    const db = new SaDatabase();
    db.installInbound(new InboundSa(p));
    const inner = ipv4Packet("10.1.0.1", "10.2.0.1", IPPROTO_UDP, Buffer.from("x"));
    const e = encapsulate(new OutboundSa(p), inner, 0);
    assert.ok(e.ok);
    const d = receiveDatagram(db, e.packet, 0);
    assert.ok(d.ok);
    assert.deepEqual(d.inner, inner);
    assert.deepEqual(receiveDatagram(db, Buffer.from([0xff]), 0), { ok: false, reason: "nat-keepalive" });
    assert.deepEqual(receiveDatagram(db, Buffer.alloc(40), 0), { ok: false, reason: "ike" });
    assert.deepEqual(receiveDatagram(db, Buffer.from([1, 2, 3]), 0), { ok: false, reason: "malformed" });
    const counts = db.drops.snapshot();
    assert.equal(counts["nat-keepalive"], 1);
    assert.equal(counts.ike, 1);
    assert.equal(counts.malformed, 1);
  });

  it("survives random garbage: never throws, every datagram is delivered or counted once", () => {
    const db = new SaDatabase();
    db.installInbound(new InboundSa(p));
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) & 0xff;
    let delivered = 0;
    const n = 2000;
    for (let i = 0; i < n; i++) {
      const len = rnd() % 80;
      const b = Buffer.from(Array.from({ length: len }, rnd));
      if (i % 3 === 0 && len >= 4) b.writeUInt32BE(p.spi, 0); // aim at the real SA
      if (receiveDatagram(db, b, 0).ok) delivered++;
    }
    const dropped = Object.values(db.drops.snapshot()).reduce((a, b) => a + b, 0);
    assert.equal(delivered, 0);
    assert.equal(dropped, n);
  });

  it("udpEncapsulate writes ports 4500, length and a zero checksum", () => {
    const u = udpEncapsulate(Buffer.alloc(10, 1));
    assert.equal(u.readUInt16BE(0), 4500);
    assert.equal(u.readUInt16BE(2), 4500);
    assert.equal(u.readUInt16BE(4), 18);
    assert.equal(u.readUInt16BE(6), 0);
  });
});
