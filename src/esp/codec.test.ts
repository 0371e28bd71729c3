import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decapsulate, encapsulate, espOverhead, NEXT_HEADER_NONE } from "./codec.js";
import { gcmSeal } from "./gcm.js";
import { IPPROTO_UDP, ipv4Packet, ipv6Packet } from "./ip.js";
import { InboundSa, OutboundSa, type SaParams } from "./sa.js";
import { SaDatabase } from "./sadb.js";

const key = Buffer.from("000102030405060708090a0b0c0d0e0f", "hex");
const salt = Buffer.from("a0a1a2a3", "hex");
const base: SaParams = { spi: 0x1000_0101, keyId: 1, key, salt, peer: "node-b", createdAt: 0 };

function pair(extra: Partial<SaParams> & { rekeyThreshold?: number; replayWindow?: number } = {}) {
  const out = new OutboundSa({ ...base, ...extra });
  const inb = new InboundSa({ ...base, peer: "node-a", ...extra });
  const db = new SaDatabase();
  db.installInbound(inb);
  return { out, inb, db };
}

function inner4(payloadLength: number): Buffer {
  const payload = Buffer.alloc(payloadLength, 0x61);
  return ipv4Packet("10.0.1.2", "10.0.2.3", IPPROTO_UDP, payload, 7);
}

function seal(out: OutboundSa, inner: Buffer): Buffer {
  const r = encapsulate(out, inner, 1);
  assert.ok(r.ok);
  return r.packet;
}

describe("ESP codec (RFC 4303 tunnel mode, RFC 4106)", () => {
  it("round-trips IPv4 and IPv6 inner packets of every alignment", () => {
    const { out, db } = pair();
    for (let n = 0; n < 8; n++) {
      for (const inner of [inner4(n), ipv6Packet("fd00::1", "fd00::2", IPPROTO_UDP, Buffer.alloc(n, 7))]) {
        const r = encapsulate(out, inner, 5);
        assert.ok(r.ok);
        assert.equal(r.packet.length, inner.length + espOverhead(inner.length));
        assert.equal((r.packet.length - 16) % 4, 0, "ciphertext + ICV ends on 4 bytes");
        const d = decapsulate(db, r.packet, 6);
        assert.ok(d.ok, d.ok ? "" : d.reason);
        assert.deepEqual(d.inner, inner);
        assert.equal(d.nextHeader, inner[0]! >> 4 === 4 ? 4 : 41);
        assert.equal(d.seq, r.seq);
      }
    }
    assert.equal(out.packets, 16);
    assert.equal(db.inboundCandidates(base.spi)[0]!.packets, 16);
  });

  it("writes SPI, sequence number from 1, IV = 64-bit sequence, padding 1,2,3 and next header", () => {
    const { out } = pair();
    const inner = inner4(1); // 29 bytes: 1 padding byte
    const first = seal(out, inner);
    const second = seal(out, inner);
    assert.equal(first.readUInt32BE(0), base.spi);
    assert.equal(first.readUInt32BE(4), 1);
    assert.equal(second.readUInt32BE(4), 2);
    assert.equal(first.subarray(8, 16).toString("hex"), "0000000000000001");
    // Re-derive the ciphertext independently: plaintext = inner || 01 || padlen 1 || NH 4.
    const pt = Buffer.concat([inner, Buffer.from([1, 1, 4])]);
    const aad = first.subarray(0, 8);
    const expect = gcmSeal(key, salt, first.subarray(8, 16), aad, pt);
    assert.deepEqual(first.subarray(16), expect);
  });

  it("drops any single flipped bit in header, IV, ciphertext or ICV as auth-failed (or unknown SPI)", () => {
    const { out, db } = pair();
    const packet = seal(out, inner4(10));
    let auth = 0;
    let spi = 0;
    for (let i = 0; i < packet.length; i++) {
      const bad = Buffer.from(packet);
      bad[i]! ^= 0x04;
      const d = decapsulate(db, bad, 2);
      assert.equal(d.ok, false);
      if (!d.ok) {
        if (i < 4) assert.equal(d.reason, "unknown-spi");
        else assert.equal(d.reason, "auth-failed", `byte ${i}`);
        if (d.reason === "auth-failed") auth++;
        else spi++;
      }
    }
    assert.equal(db.drops.get("auth-failed"), auth);
    assert.equal(db.drops.get("unknown-spi"), spi);
    assert.equal(db.inboundCandidates(base.spi)[0]!.authFailures, auth);
    // The untouched packet still verifies: failures did not move the window.
    assert.ok(decapsulate(db, packet, 3).ok);
  });

  it("drops replays, counted, and accepts reordering inside the window", () => {
    const { out, db, inb } = pair({ replayWindow: 64 });
    const packets = Array.from({ length: 80 }, () => seal(out, inner4(3)));
    assert.ok(decapsulate(db, packets[79]!, 1).ok);
    const again = decapsulate(db, packets[79]!, 1);
    assert.deepEqual(again, { ok: false, reason: "replay", spi: base.spi });
    assert.ok(decapsulate(db, packets[30]!, 1).ok, "seq 31 is inside [17, 80]");
    assert.equal(decapsulate(db, packets[10]!, 1).ok, false, "seq 11 is below the window");
    assert.equal(db.drops.get("replay"), 2);
    assert.equal(inb.replayDrops, 2);
  });

  it("a replayed packet with a forged ICV is dropped as replay before any decryption", () => {
    const { out, db } = pair();
    const p = seal(out, inner4(3));
    assert.ok(decapsulate(db, p, 1).ok);
    const forged = Buffer.from(p);
    forged[forged.length - 1]! ^= 1;
    const d = decapsulate(db, forged, 1);
    assert.equal(d.ok ? "" : d.reason, "replay");
  });

  it("drops unknown SPIs and too-short or misaligned packets without throwing", () => {
    const { out, db } = pair();
    const good = seal(out, inner4(4));
    const other = Buffer.from(good);
    other.writeUInt32BE(0x2000_0101, 0);
    const cases: Array<[Buffer, string]> = [
      [Buffer.alloc(0), "malformed"],
      [Buffer.alloc(15), "malformed"],
      [other, "unknown-spi"],
      [good.subarray(0, 16 + 16 + 1), "malformed"],
      [Buffer.concat([good, Buffer.alloc(1)]), "malformed"],
      [Buffer.concat([good, Buffer.alloc(4)]), "auth-failed"],
      [good.subarray(0, 24), "malformed"],
    ];
    for (const [p, reason] of cases) {
      const d = decapsulate(db, p, 1);
      assert.equal(d.ok ? "ok" : d.reason, reason, `length ${p.length}`);
    }
  });

  /** Seals an arbitrary ESP plaintext (trailer included) with the SA's key, sequence `seq`. */
  function craft(spi: number, seq: number, plaintext: Buffer): Buffer {
    const header = Buffer.alloc(16);
    header.writeUInt32BE(spi, 0);
    header.writeUInt32BE(seq, 4);
    header.writeUInt32BE(seq, 12);
    return Buffer.concat([
      header,
      gcmSeal(key, salt, header.subarray(8, 16), header.subarray(0, 8), plaintext),
    ]);
  }

  it("authenticated packets with a bad trailer or inner header are counted by reason", () => {
    const { db } = pair();
    const inner = inner4(2); // 22 bytes
    const cases: Array<[Buffer, string]> = [
      [Buffer.concat([inner, Buffer.from([0, 0])]), "malformed"], // next header 0: not IP
      [Buffer.concat([inner, Buffer.from([200, 4])]), "bad-padding"], // pad length past the payload
      [Buffer.concat([inner, Buffer.from([1, 3, 2, 4])]).subarray(2), "bad-padding"], // pad bytes 1, 3
      [Buffer.concat([inner, Buffer.from([0, NEXT_HEADER_NONE])]), "dummy"],
      [Buffer.concat([inner, Buffer.from([0, 17])]), "malformed"], // next header UDP: not tunnel mode
      [Buffer.concat([inner, Buffer.from([0, 41])]), "malformed"], // says IPv6, is IPv4
      [Buffer.concat([Buffer.alloc(14), Buffer.from([0, 4])]), "malformed"], // too short for IPv4
      // An IPv4 header whose total length (22) is more than the 20 bytes carried.
      [Buffer.concat([inner.subarray(0, 20), Buffer.from([1, 2, 2, 4])]), "malformed"],
    ];
    cases.forEach(([pt, reason], i) => {
      assert.equal(pt.length % 4, 0, `case ${i} aligned`);
      const d = decapsulate(db, craft(base.spi, i + 1, pt), 1);
      assert.equal(d.ok ? "ok" : d.reason, reason, `case ${i}`);
    });
    assert.equal(db.drops.get("bad-padding"), 2);
    assert.equal(db.drops.get("dummy"), 1);
    assert.equal(db.drops.get("malformed"), 5);
  });

  it("strips TFC padding after the inner packet (RFC 4303 section 2.7)", () => {
    const { db } = pair();
    const inner = inner4(2);
    const pt = Buffer.concat([inner, Buffer.alloc(6, 0xee), Buffer.from([1, 2, 2, 4])]);
    const d = decapsulate(db, craft(base.spi, 1, pt), 1);
    assert.ok(d.ok);
    assert.deepEqual(d.inner, inner);
  });

  it("refuses non-IP inner packets as malformed without using a sequence number", () => {
    const { out } = pair();
    const r = encapsulate(out, Buffer.alloc(40), 1);
    assert.deepEqual(r, { ok: false, reason: "malformed" });
    assert.equal(out.sequence, 0);
  });

  it("signals rekey-soon at the threshold and stops hard at 2^32 - 1", () => {
    const { out, db } = pair({ rekeyThreshold: 10 });
    for (let i = 1; i <= 9; i++) assert.equal(encapsulate(out, inner4(1), 1).ok && out.rekeySoon, false);
    const tenth = encapsulate(out, inner4(1), 1);
    assert.ok(tenth.ok && tenth.rekeySoon);
    out.skipTo(0xffff_fffe);
    const last = encapsulate(out, inner4(1), 1);
    assert.ok(last.ok);
    assert.equal(last.seq, 0xffff_ffff);
    assert.ok(decapsulate(db, last.packet, 1).ok);
    assert.deepEqual(encapsulate(out, inner4(1), 1), { ok: false, reason: "seq-exhausted" });
    assert.equal(out.exhausted, true);
    assert.equal(out.sequence, 0xffff_ffff, "no wrap to 0");
  });

  it("default rekey threshold is 3/4 of the 32-bit space", () => {
    const { out } = pair();
    assert.equal(out.rekeyThreshold, Math.floor(0xffff_ffff * 0.75));
    out.skipTo(out.rekeyThreshold - 1);
    assert.equal(out.rekeySoon, false);
    assert.ok(encapsulate(out, inner4(0), 1).ok);
    assert.equal(out.rekeySoon, true);
  });

  it("with ESN authenticates the high half and follows it across 2^32", () => {
    const { out, db, inb } = pair({ esn: true, replayWindow: 128 });
    out.skipTo(0xffff_fff0);
    const packets = Array.from({ length: 40 }, () => seal(out, inner4(5)));
    // Deliver with some reordering around the 2^32 boundary.
    const order = [...Array(40).keys()].sort((a, b) => (a % 5) - (b % 5) || a - b);
    for (const i of order.slice(0, 8)) assert.ok(decapsulate(db, packets[i]!, 1).ok, `packet ${i}`);
    for (let i = 0; i < 40; i++) {
      const d = decapsulate(db, packets[i]!, 1);
      if (d.ok) assert.equal(d.seq, 0xffff_fff0 + i + 1);
    }
    assert.equal(inb.replay.highest, 0xffff_fff0 + 40);
    assert.equal(inb.packets, 40);
    // The wire carries only the low half; the IV carries the full 64 bits.
    assert.equal(packets[39]!.readUInt32BE(4), 0xffff_fff0 + 40 - 2 ** 32);
    assert.equal(packets[39]!.readUInt32BE(8), 1);
    // Without ESN the receiver computes a different AAD: authentication fails.
    const plain = pair({ esn: false });
    assert.equal(decapsulate(plain.db, packets[39]!, 1).ok, false);
  });
});
