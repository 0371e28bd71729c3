// The native ESP batch (native/esp.cc) against the node:crypto codec of this folder: what one
// seals the other opens, byte for byte, for every ICV length, with and without ESN.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { native } from "../native.js";
import { encapsulate, NEXT_HEADER_IPV4, openTrailer } from "./codec.js";
import type { IcvLength } from "./gcm.js";
import { InboundSa, OutboundSa } from "./sa.js";
import { SaDatabase } from "./sadb.js";
import { receiveDatagram } from "./udp.js";

const SLOT = 2048;

function innerPacket(length: number, fill: number): Buffer {
  const p = Buffer.alloc(length, fill);
  p[0] = 0x45;
  p.writeUInt16BE(length, 2);
  return p;
}

function sas(icvLength: IcvLength, esn: boolean): { out: OutboundSa; inb: InboundSa; db: SaDatabase } {
  const key = randomBytes(16);
  const salt = randomBytes(4);
  const params = { spi: 0x1000 + icvLength, keyId: 1, key, salt, icvLength, esn, createdAt: 0 };
  const out = new OutboundSa({ ...params, peer: "b" });
  const inb = new InboundSa({ ...params, peer: "a" });
  const db = new SaDatabase();
  db.installInbound(inb);
  return { out, inb, db };
}

function keyTable(sa: OutboundSa | InboundSa): { keys: Buffer; info: Uint32Array } {
  return {
    keys: Buffer.concat([sa.key, sa.salt]),
    info: new Uint32Array([sa.spi, sa.icvLength, sa.esn ? 1 : 0]),
  };
}

for (const icv of [8, 12, 16] as const) {
  for (const esn of [false, true]) {
    test(`native seal opens with the codec and the codec's seal opens natively (ICV ${icv}, ESN ${esn})`, () => {
      const { out, db } = sas(icv, esn);
      if (esn) out.skipTo(0x1_0000_0000 - 2); // sequence numbers cross the 32-bit boundary
      const lengths = [20, 21, 22, 23, 84, 1400];
      // Native seal of a batch -> per-packet codec open.
      const arena = Buffer.alloc(SLOT * lengths.length);
      const offsets = new Uint32Array(lengths.map((_, i) => i * SLOT));
      const lens = new Uint32Array(lengths);
      const seqs = new Float64Array(lengths.map(() => out.nextSequence()!));
      lengths.forEach((l, i) => innerPacket(l, i + 1).copy(arena, i * SLOT + 16));
      const { keys, info } = keyTable(out);
      native().espSealBatch(
        arena,
        offsets,
        lens,
        new Uint8Array(lengths.length).fill(NEXT_HEADER_IPV4),
        keys,
        info,
        new Uint32Array(lengths.length),
        seqs,
        lengths.length,
      );
      lengths.forEach((l, i) => {
        const r = receiveDatagram(db, arena.subarray(i * SLOT, i * SLOT + lens[i]!), 0);
        assert.ok(r.ok, `packet ${i}: ${r.ok ? "" : r.reason}`);
        assert.deepEqual(r.inner, innerPacket(l, i + 1));
        assert.equal(r.seq, seqs[i]);
      });

      // Codec seal -> native open, one packet tampered.
      const { out: out2, inb: inb2, db: db2 } = sas(icv, esn);
      const packets = lengths.map((l, i) => {
        const r = encapsulate(out2, innerPacket(l, 0x80 + i), 0);
        assert.ok(r.ok);
        return r.packet;
      });
      packets[2]![packets[2]!.length - 1]! ^= 1;
      const arena2 = Buffer.alloc(SLOT * packets.length);
      packets.forEach((p, i) => p.copy(arena2, i * SLOT));
      const lens2 = new Uint32Array(packets.map((p) => p.length));
      const ok = new Uint8Array(packets.length);
      const t2 = keyTable(inb2);
      const good = native().espOpenBatch(
        arena2,
        offsets,
        lens2,
        t2.keys,
        t2.info,
        new Uint32Array(packets.length),
        new Float64Array(packets.map((p) => inb2.fullSequence(p.readUInt32BE(4)))),
        ok,
        packets.length,
      );
      assert.equal(good, packets.length - 1);
      lengths.forEach((l, i) => {
        if (i === 2) {
          assert.equal(ok[i], 0, "the tampered packet must not verify");
          assert.equal(lens2[i], 0);
          return;
        }
        assert.equal(ok[i], 1);
        const r = openTrailer(db2, inb2, arena2.subarray(i * SLOT + 16, i * SLOT + 16 + lens2[i]!), i + 1, 0);
        assert.ok(r.ok);
        assert.deepEqual(r.inner, innerPacket(l, 0x80 + i));
      });
    });
  }
}

test("native open refuses a packet under another SA's key or with a wrong sequence number in the AAD", () => {
  const a = sas(16, false);
  const b = sas(16, false);
  const r = encapsulate(a.out, innerPacket(84, 7), 0);
  assert.ok(r.ok);
  for (const [sa, seq] of [
    [b.inb, 1],
    [a.inb, 2],
  ] as const) {
    const arena = Buffer.from(r.packet);
    const ok = new Uint8Array(1);
    const t = keyTable(sa);
    const good = native().espOpenBatch(
      arena,
      new Uint32Array([0]),
      new Uint32Array([arena.length]),
      t.keys,
      t.info,
      new Uint32Array([0]),
      new Float64Array([seq]),
      ok,
      1,
    );
    assert.equal(good, 0);
    assert.equal(ok[0], 0);
  }
});
