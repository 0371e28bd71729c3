// The splitting of TUN offload reads (native/offload.cc, through the addon's tunSplit): TCP
// super-segments cut into MSS-sized packets with headers and checksums as the kernel's own TCP
// segmentation would make them, partial checksums completed, garbage turned into a dropped slot.
// Checksums are verified here with an independent RFC 1071 implementation.
import { test } from "node:test";
import assert from "node:assert/strict";
import { native } from "../../native.js";

const SLOT = 2048;
const HEADROOM = 16;
const CAPACITY = 1500;
const FIN = 0x01;
const PSH = 0x08;
const ACK = 0x10;
const CWR = 0x80;

/** RFC 1071 one's complement sum of 16-bit big-endian words, folded, not complemented. */
function onesSum(...parts: Buffer[]): number {
  const joined = Buffer.concat(parts);
  const b = joined.length % 2 === 0 ? joined : Buffer.concat([joined, Buffer.alloc(1)]);
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += b.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** A checksummed region verifies when its sum, checksum field included, is 0xffff. */
function tcpChecksumOk(ip: Buffer, v6: boolean, l4: number): boolean {
  const seg = ip.subarray(l4);
  const pseudo = v6 ? Buffer.alloc(40) : Buffer.alloc(12);
  if (v6) {
    ip.copy(pseudo, 0, 8, 40);
    pseudo.writeUInt32BE(seg.length, 32);
    pseudo[39] = 6;
  } else {
    ip.copy(pseudo, 0, 12, 20);
    pseudo[9] = 6;
    pseudo.writeUInt16BE(seg.length, 10);
  }
  return onesSum(pseudo, seg) === 0xffff;
}

interface Tcp {
  v6?: boolean;
  payload: number;
  mss: number;
  flags?: number;
  options?: number;
  seq?: number;
  ipId?: number;
}

/** A virtio_net_hdr (gso TCPV4 / TCPV6, partial checksum) and a TCP super-segment with a patterned payload. */
function superSegment(t: Tcp): { read: Buffer; payload: Buffer; l4: number; hdrLen: number } {
  const ipLen = t.v6 ? 40 : 20;
  const tcpLen = 20 + (t.options ?? 0);
  const payload = Buffer.alloc(t.payload);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + 3) & 0xff;
  const pkt = Buffer.alloc(ipLen + tcpLen + t.payload);
  if (t.v6) {
    pkt[0] = 0x60;
    pkt.writeUInt16BE(tcpLen + t.payload, 4);
    pkt[6] = 6;
    pkt[7] = 64;
    Buffer.from("fd000000000000000000000000000001", "hex").copy(pkt, 8);
    Buffer.from("fd000000000000000000000000000002", "hex").copy(pkt, 24);
  } else {
    pkt[0] = 0x45;
    pkt.writeUInt16BE(pkt.length, 2);
    pkt.writeUInt16BE(t.ipId ?? 0x1234, 4);
    pkt[6] = 0x40; // DF
    pkt[8] = 64;
    pkt[9] = 6;
    Buffer.from([10, 66, 0, 1]).copy(pkt, 12);
    Buffer.from([10, 66, 0, 2]).copy(pkt, 16);
  }
  const tcp = ipLen;
  pkt.writeUInt16BE(40000, tcp);
  pkt.writeUInt16BE(5201, tcp + 2);
  pkt.writeUInt32BE(t.seq ?? 0xfffff000, tcp + 4); // wraps within the test's payloads
  pkt.writeUInt32BE(777, tcp + 8);
  pkt[tcp + 12] = (tcpLen / 4) << 4;
  pkt[tcp + 13] = t.flags ?? ACK;
  pkt.writeUInt16BE(501, tcp + 14);
  for (let i = 20; i < tcpLen; i++) pkt[tcp + i] = 1; // NOP options
  payload.copy(pkt, ipLen + tcpLen);
  pkt.writeUInt16BE(0xbeef, tcp + 16); // stale: the split must compute it
  const hdr = Buffer.alloc(10);
  hdr[0] = 1; // NEEDS_CSUM
  hdr[1] = t.v6 ? 4 : 1;
  hdr.writeUInt16LE(ipLen + tcpLen, 2);
  hdr.writeUInt16LE(t.mss, 4);
  hdr.writeUInt16LE(ipLen, 6);
  hdr.writeUInt16LE(16, 8);
  return { read: Buffer.concat([hdr, pkt]), payload, l4: ipLen, hdrLen: ipLen + tcpLen };
}

function split(read: Buffer, max = 64, first = 0): Buffer[] {
  const arena = Buffer.alloc(SLOT * max);
  const lengths = new Uint32Array(max);
  const n = native().tunSplit(read, arena, SLOT, HEADROOM, CAPACITY, max, lengths, first);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++)
    out.push(arena.subarray(i * SLOT + HEADROOM, i * SLOT + HEADROOM + lengths[i]!));
  return out;
}

function checkSegments(t: Tcp, segments: Buffer[], first = 0): Buffer {
  const { payload, l4, hdrLen } = superSegment(t);
  const count = Math.ceil(t.payload / t.mss);
  const got: Buffer[] = [];
  segments.forEach((s, k) => {
    const i = first + k;
    const size = Math.min(t.mss, t.payload - i * t.mss);
    assert.equal(s.length, hdrLen + size, `segment ${i} length`);
    if (t.v6) {
      assert.equal(s.readUInt16BE(4), s.length - 40, "IPv6 payload length");
    } else {
      assert.equal(s.readUInt16BE(2), s.length, "IPv4 total length");
      assert.equal(s.readUInt16BE(4), ((t.ipId ?? 0x1234) + i) & 0xffff, "IPv4 identification");
      assert.equal(onesSum(s.subarray(0, 20)), 0xffff, `IPv4 header checksum of segment ${i}`);
    }
    assert.equal(s.readUInt32BE(l4 + 4), ((t.seq ?? 0xfffff000) + i * t.mss) >>> 0, "sequence number");
    const flags = s[l4 + 13]!;
    const last = i === count - 1;
    const want = (t.flags ?? ACK) & ~(last ? 0 : FIN | PSH) & ~(i === 0 ? 0 : CWR);
    assert.equal(flags, want, `flags of segment ${i}`);
    assert.ok(tcpChecksumOk(s, t.v6 ?? false, l4), `TCP checksum of segment ${i}`);
    got.push(s.subarray(hdrLen));
  });
  const joined = Buffer.concat(got);
  assert.ok(
    joined.equals(payload.subarray(first * t.mss, first * t.mss + joined.length)),
    "payload bytes as in the super-segment",
  );
  return joined;
}

test("an IPv4 super-segment is cut at the MSS, the last segment short, PSH and FIN only on it", () => {
  const t: Tcp = { payload: 1380 * 10 + 517, mss: 1380, flags: ACK | PSH | FIN };
  const segments = split(superSegment(t).read);
  assert.equal(segments.length, 11);
  assert.equal(checkSegments(t, segments).length, t.payload);
});

test("CWR stays on the first segment only; the IPv4 identification wraps", () => {
  const t: Tcp = { payload: 4000, mss: 1000, flags: ACK | CWR | PSH, ipId: 0xfffe };
  const segments = split(superSegment(t).read);
  assert.equal(segments.length, 4);
  checkSegments(t, segments);
});

test("an IPv6 super-segment with TCP options is cut, lengths and checksums right", () => {
  const t: Tcp = { v6: true, payload: 1348 * 5 + 1, mss: 1348, options: 12, flags: ACK | PSH };
  const segments = split(superSegment(t).read);
  assert.equal(segments.length, 6);
  assert.equal(segments[5]!.length, 40 + 32 + 1);
  checkSegments(t, segments);
});

test("a payload that is a multiple of the MSS ends in a full segment", () => {
  const t: Tcp = { payload: 3 * 1400, mss: 1400, flags: ACK | PSH };
  const segments = split(superSegment(t).read);
  assert.equal(segments.length, 3);
  checkSegments(t, segments);
});

test("when the slots run out the split stops and continues from the next segment", () => {
  const t: Tcp = { payload: 10 * 500 + 20, mss: 500, flags: ACK | FIN };
  const read = superSegment(t).read;
  const a = split(read, 4);
  assert.equal(a.length, 4);
  checkSegments(t, a);
  const b = split(read, 64, 4);
  assert.equal(b.length, 7);
  checkSegments(t, b, 4);
});

test("a plain packet with a partial checksum gets it completed (UDP: 0 becomes 0xffff)", () => {
  const udp = Buffer.alloc(20 + 8 + 33);
  udp[0] = 0x45;
  udp.writeUInt16BE(udp.length, 2);
  udp[8] = 64;
  udp[9] = 17;
  Buffer.from([10, 66, 0, 1, 10, 66, 0, 2]).copy(udp, 12);
  udp.writeUInt16BE(5000, 20);
  udp.writeUInt16BE(6000, 22);
  udp.writeUInt16BE(41, 24);
  for (let i = 28; i < udp.length; i++) udp[i] = i;
  const pseudo = Buffer.alloc(12);
  udp.copy(pseudo, 0, 12, 20);
  pseudo[9] = 17;
  pseudo.writeUInt16BE(41, 10);
  udp.writeUInt16BE(onesSum(pseudo), 26); // what the kernel leaves: the pseudo-header sum
  const hdr = Buffer.alloc(10);
  hdr[0] = 1;
  hdr.writeUInt16LE(20, 6);
  hdr.writeUInt16LE(6, 8);
  const [out] = split(Buffer.concat([hdr, udp]));
  assert.equal(out!.length, udp.length);
  assert.equal(onesSum(pseudo, out!.subarray(20)), 0xffff);
  assert.deepEqual(out!.subarray(28), udp.subarray(28));
  // A plain packet without NEEDS_CSUM is copied as it is.
  const [same] = split(Buffer.concat([Buffer.alloc(10), udp]));
  assert.deepEqual(same, udp);
});

test("garbage fills one slot of length 0 (dropped as malformed), never more", () => {
  const good = superSegment({ payload: 3000, mss: 1000 }).read;
  const cases: Array<[string, Buffer]> = [
    ["shorter than the header", Buffer.alloc(5)],
    ["unknown GSO type (UDP)", Buffer.concat([Buffer.from([1, 5]), good.subarray(2)])],
    [
      "GSO TCPV4 on an IPv6 packet",
      Buffer.concat([
        Buffer.from([1, 1]),
        superSegment({ v6: true, payload: 3000, mss: 1000 }).read.subarray(2),
      ]),
    ],
    [
      "csum_start past the packet",
      (() => {
        const b = Buffer.from(good);
        b.writeUInt16LE(5000, 6);
        return b;
      })(),
    ],
    [
      "csum_start not the IPv4 header length",
      (() => {
        const b = Buffer.from(good);
        b.writeUInt16LE(24, 6);
        return b;
      })(),
    ],
    [
      "gso_size 0",
      (() => {
        const b = Buffer.from(good);
        b.writeUInt16LE(0, 4);
        return b;
      })(),
    ],
    [
      "segment larger than a slot",
      (() => {
        const b = Buffer.from(good);
        b.writeUInt16LE(1490, 4);
        return b;
      })(),
    ],
    [
      "TCP data offset below 5",
      (() => {
        const b = Buffer.from(good);
        b[10 + 20 + 12] = 0x40;
        return b;
      })(),
    ],
    [
      "not TCP",
      (() => {
        const b = Buffer.from(good);
        b[10 + 9] = 17;
        return b;
      })(),
    ],
    [
      "partial checksum outside the packet",
      Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 20, 0, 16, 0]), good.subarray(10, 10 + 30)]),
    ],
  ];
  for (const [name, read] of cases) {
    const lengths = new Uint32Array(8).fill(99);
    const n = native().tunSplit(read, Buffer.alloc(SLOT * 8), SLOT, HEADROOM, CAPACITY, 8, lengths);
    assert.equal(n, 1, name);
    assert.equal(lengths[0], 0, name);
  }
  // A plain packet too long for a slot: one slot of the full capacity (dropped as too long).
  const lengths = new Uint32Array(1);
  assert.equal(
    native().tunSplit(
      Buffer.concat([Buffer.alloc(10), Buffer.alloc(1600, 0x45)]),
      Buffer.alloc(SLOT),
      SLOT,
      HEADROOM,
      CAPACITY,
      1,
      lengths,
    ),
    1,
  );
  assert.equal(lengths[0], CAPACITY);
});

/** The segments of `t` as tunSplit makes them, in one arena, with their offsets and lengths. */
function segmentArena(t: Tcp): { arena: Buffer; offsets: Uint32Array; lengths: Uint32Array; count: number } {
  const max = 64;
  const arena = Buffer.alloc(SLOT * max);
  const lengths = new Uint32Array(max);
  const count = native().tunSplit(superSegment(t).read, arena, SLOT, HEADROOM, CAPACITY, max, lengths);
  const offsets = new Uint32Array(max);
  for (let i = 0; i < count; i++) offsets[i] = i * SLOT + HEADROOM;
  return { arena, offsets, lengths, count };
}

function coalesce(
  s: { arena: Buffer; offsets: Uint32Array; lengths: Uint32Array; count: number },
  start = 0,
): { out: Buffer; used: number } {
  const out = Buffer.alloc(10 + 65535);
  const [length, used] = native().tunCoalesce(s.arena, s.offsets, s.lengths, s.count, start, out);
  return { out: out.subarray(0, length), used };
}

/** Checks a coalesced super-packet against the super-segment it was cut from. */
function checkSuperPacket(t: Tcp, out: Buffer, segments: number): void {
  const { read, l4, hdrLen } = superSegment(t);
  const wantPayload = read.subarray(10 + hdrLen, 10 + hdrLen + Math.min(t.payload, segments * t.mss));
  assert.equal(out[0], 1, "NEEDS_CSUM");
  assert.equal(out[1], t.v6 ? 4 : 1, "gso_type");
  assert.equal(out.readUInt16LE(2), hdrLen, "hdr_len");
  assert.equal(out.readUInt16LE(4), t.mss, "gso_size");
  assert.equal(out.readUInt16LE(6), l4, "csum_start");
  assert.equal(out.readUInt16LE(8), 16, "csum_offset");
  const ip = out.subarray(10);
  assert.equal(ip.length, hdrLen + wantPayload.length);
  assert.deepEqual(ip.subarray(hdrLen), wantPayload);
  if (t.v6) assert.equal(ip.readUInt16BE(4), ip.length - 40);
  else {
    assert.equal(ip.readUInt16BE(2), ip.length);
    assert.equal(onesSum(ip.subarray(0, 20)), 0xffff, "IPv4 header checksum");
  }
  assert.equal(ip.readUInt32BE(l4 + 4), t.seq ?? 0xfffff000, "the first segment's sequence number");
  // CHECKSUM_PARTIAL: the field holds the pseudo-header sum; with the rest summed in, it verifies.
  const field = ip.readUInt16BE(l4 + 16);
  const check = Buffer.from(ip);
  check.writeUInt16BE(0, l4 + 16);
  const seg = check.subarray(l4);
  const pseudo = t.v6 ? Buffer.alloc(40) : Buffer.alloc(12);
  if (t.v6) {
    check.copy(pseudo, 0, 8, 40);
    pseudo.writeUInt32BE(seg.length, 32);
    pseudo[39] = 6;
  } else {
    check.copy(pseudo, 0, 12, 20);
    pseudo[9] = 6;
    pseudo.writeUInt16BE(seg.length, 10);
  }
  assert.equal(field, onesSum(pseudo), "partial checksum: the pseudo-header sum");
}

test("segments of one flow coalesce back into the super-segment (IPv4, PSH from the last)", () => {
  const t: Tcp = { payload: 1380 * 10 + 517, mss: 1380, flags: ACK | PSH };
  const s = segmentArena(t);
  assert.equal(s.count, 11);
  const { out, used } = coalesce(s);
  assert.equal(used, 11);
  checkSuperPacket(t, out, 11);
  assert.equal(out[10 + 20 + 13], ACK | PSH);
});

test("IPv6 segments with options coalesce; a lone packet goes as it is", () => {
  const t: Tcp = { v6: true, payload: 1348 * 4, mss: 1348, options: 12 };
  const s = segmentArena(t);
  const { out, used } = coalesce(s);
  assert.equal(used, 4);
  checkSuperPacket(t, out, 4);
  assert.deepEqual(coalesce(s, 3), { out: Buffer.alloc(0), used: 1 });
});

test("a run ends at PSH, at a short segment, at 64 KiB, and before a gap, another flow, a bad checksum, FIN", () => {
  const t: Tcp = { payload: 1000 * 8, mss: 1000 };
  const fresh = (): ReturnType<typeof segmentArena> => segmentArena(t);
  const tcpAt = (s: ReturnType<typeof segmentArena>, i: number): number => s.offsets[i]! + 20;
  // Recomputes the TCP checksum of IPv4 segment i.
  const refresh = (s: ReturnType<typeof segmentArena>, i: number): void => {
    const ip = s.arena.subarray(s.offsets[i]!, s.offsets[i]! + s.lengths[i]!);
    ip.writeUInt16BE(0, 36);
    const pseudo = Buffer.alloc(12);
    ip.copy(pseudo, 0, 12, 20);
    pseudo[9] = 6;
    pseudo.writeUInt16BE(ip.length - 20, 10);
    ip.writeUInt16BE(~onesSum(pseudo, ip.subarray(20)) & 0xffff, 36);
  };
  // PSH on segment 2 (checksum fixed): it ends the run, included.
  let s = fresh();
  s.arena[tcpAt(s, 2) + 13] = ACK | PSH;
  refresh(s, 2);
  assert.equal(coalesce(s).used, 3);
  // A shorter segment 3: it ends the run, included.
  s = segmentArena({ payload: 1000 * 3 + 10, mss: 1000 });
  assert.equal(s.count, 4);
  assert.equal(coalesce(s).used, 4);
  // A gap in the sequence (segment 4 moved on), another port, a corrupted byte, FIN on segment 4.
  const breaks: Array<[string, (s: ReturnType<typeof segmentArena>) => void]> = [
    [
      "sequence gap",
      (s) => s.arena.writeUInt32BE(s.arena.readUInt32BE(tcpAt(s, 4) + 4) + 1, tcpAt(s, 4) + 4),
    ],
    ["another flow", (s) => s.arena.writeUInt16BE(40001, tcpAt(s, 4))],
    ["FIN", (s) => (s.arena[tcpAt(s, 4) + 13] = ACK | FIN)],
    ["another ack", (s) => s.arena.writeUInt32BE(778, tcpAt(s, 4) + 8)],
  ];
  breaks.push(["bad checksum", (s) => (s.arena[tcpAt(s, 4) + 25] = s.arena[tcpAt(s, 4) + 25]! ^ 0xff)]);
  for (const [name, breakIt] of breaks) {
    s = fresh();
    breakIt(s);
    if (name !== "bad checksum") refresh(s, 4); // breaks the run by its own rule, not by its checksum
    const { out, used } = coalesce(s);
    assert.equal(used, 4, name);
    checkSuperPacket(t, out, 4);
  }
  // A bad checksum on the first packet: it goes alone.
  s = fresh();
  s.arena[tcpAt(s, 0) + 20] = s.arena[tcpAt(s, 0) + 20]! ^ 1;
  assert.deepEqual(coalesce(s), { out: Buffer.alloc(0), used: 1 });
  // 64 KiB: 60 segments of 1400 bytes (two super-segments, one sequence) make runs of 46 and 14.
  const s1 = segmentArena({ payload: 1400 * 40, mss: 1400 });
  const s2 = segmentArena({ payload: 1400 * 20, mss: 1400, seq: (0xfffff000 + 1400 * 40) >>> 0 });
  const b = {
    arena: Buffer.concat([s1.arena, s2.arena]),
    offsets: new Uint32Array(60).map((_, i) =>
      i < 40 ? s1.offsets[i]! : s1.arena.length + s2.offsets[i - 40]!,
    ),
    lengths: new Uint32Array(60).map((_, i) => (i < 40 ? s1.lengths[i]! : s2.lengths[i - 40]!)),
    count: 60,
  };
  const first = coalesce(b);
  assert.equal(first.used, 46);
  assert.equal(first.out.length, 10 + 40 + 46 * 1400);
  assert.equal(coalesce(b, 46).used, 14);
});
