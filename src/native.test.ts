import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { describe, it } from "node:test";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ENDPOINT_ENTRY_SIZE, native } from "./native.js";
import { projectRoot } from "./paths.js";

/** The WireGuard data message for `plaintext`, built with an independent implementation. */
function reference(key: Buffer, receiver: number, counter: bigint, plaintext: Buffer, mtu: number): Buffer {
  const last = plaintext.length > mtu ? plaintext.length % mtu : plaintext.length;
  const padded = Math.min(Math.ceil(last / 16) * 16, mtu);
  const body = Buffer.concat([plaintext, Buffer.alloc(padded - last)]);
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64LE(counter, 4);
  const header = Buffer.alloc(16);
  header.writeUInt32LE(4, 0);
  header.writeUInt32LE(receiver, 4);
  header.writeBigUInt64LE(counter, 8);
  return Buffer.concat([header, Buffer.from(chacha20poly1305(key, nonce).encrypt(body))]);
}

describe("native sealBatch / openBatch (WireGuard transport data, whitepaper 5.4.6)", () => {
  const addon = native();
  const slot = 1600;
  const sizes = [0, 1, 15, 16, 17, 100, 1279, 1419, 1420];
  const counters = [0, 1, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 7, 2 ** 53 - 1, 12345, 99];

  it("matches @noble/ciphers byte for byte across sizes, keys and counters > 2^32", () => {
    const n = sizes.length;
    const arena = Buffer.alloc(slot * n);
    const offsets = new Uint32Array(n).map((_, i) => i * slot);
    const lengths = new Uint32Array(sizes);
    const keys = randomBytes(32 * 3);
    const keyIndex = new Uint32Array(n).map((_, i) => i % 3);
    const receivers = new Uint32Array(n).map((_, i) => 0x01020304 * (i + 1));
    const ctr = new Float64Array(counters);
    const plaintexts = sizes.map((s) => randomBytes(s));
    plaintexts.forEach((p, i) => p.copy(arena, offsets[i]! + 16));
    addon.sealBatch(arena, offsets, lengths, keys, keyIndex, receivers, ctr, 1420, n);
    for (let i = 0; i < n; i++) {
      const key = keys.subarray(32 * keyIndex[i]!, 32 * keyIndex[i]! + 32);
      const want = reference(key, receivers[i]!, BigInt(counters[i]!), plaintexts[i]!, 1420);
      assert.equal(lengths[i], want.length, `length of packet ${i}`);
      assert.ok(arena.subarray(offsets[i]!, offsets[i]! + lengths[i]!).equals(want), `bytes of packet ${i}`);
    }
    // and back: open recovers the padded plaintext and the counter.
    const ok = new Uint8Array(n);
    const got = new Float64Array(n);
    assert.equal(addon.openBatch(arena, offsets, lengths, keys, keyIndex, got, ok, n), n);
    for (let i = 0; i < n; i++) {
      assert.equal(ok[i], 1);
      assert.equal(got[i], counters[i]);
      assert.equal(lengths[i], Math.min(Math.ceil(sizes[i]! / 16) * 16, 1420));
      assert.ok(arena.subarray(offsets[i]! + 16, offsets[i]! + 16 + sizes[i]!).equals(plaintexts[i]!));
    }
  });

  it("rejects forged, truncated and wrong-key messages without failing the rest of the batch", () => {
    const key = randomBytes(32);
    const msgs = [0, 1, 2, 3, 4].map((i) => reference(key, 7, BigInt(i), randomBytes(64), 1420));
    msgs[1]![40]! ^= 0x80; // ciphertext bit flip
    msgs[2]![msgs[2]!.length - 1]! ^= 1; // tag bit flip
    msgs[3]!.writeBigUInt64LE(99n, 8); // counter (nonce) changed
    const arena = Buffer.alloc(slot * 6);
    const offsets = new Uint32Array(6).map((_, i) => i * slot);
    msgs.forEach((m, i) => m.copy(arena, offsets[i]!));
    const lengths = new Uint32Array([...msgs.map((m) => m.length), 31]); // last: shorter than header+tag
    const keys = Buffer.concat([key, randomBytes(32)]);
    const keyIndex = new Uint32Array([0, 0, 0, 0, 1, 0]); // message 4 with the wrong key
    const ok = new Uint8Array(6);
    assert.equal(addon.openBatch(arena, offsets, lengths, keys, keyIndex, new Float64Array(6), ok, 6), 1);
    assert.deepEqual([...ok], [1, 0, 0, 0, 0, 0]);
    assert.deepEqual([...lengths.subarray(1)], [0, 0, 0, 0, 0]);
  });

  it("refuses offsets outside the arena instead of writing past it", () => {
    const arena = Buffer.alloc(100);
    assert.throws(() =>
      addon.sealBatch(
        arena,
        new Uint32Array([50]),
        new Uint32Array([40]),
        randomBytes(32),
        new Uint32Array([0]),
        new Uint32Array([1]),
        new Float64Array([0]),
        1420,
        1,
      ),
    );
    assert.throws(() =>
      addon.sealBatch(
        arena,
        new Uint32Array([0]),
        new Uint32Array([10]),
        randomBytes(32),
        new Uint32Array([1]), // only one key in the table
        new Uint32Array([1]),
        new Float64Array([0]),
        1420,
        1,
      ),
    );
  });
});

describe("native endpoint entries", () => {
  const addon = native();
  it("round-trips IPv4, IPv6 and v4-mapped addresses", () => {
    const buf = Buffer.alloc(ENDPOINT_ENTRY_SIZE * 3);
    assert.ok(addon.encodeEndpoint("10.1.2.3", 51820, buf, 0));
    assert.ok(addon.encodeEndpoint("fd00::1:2", 443, buf, ENDPOINT_ENTRY_SIZE));
    assert.ok(addon.encodeEndpoint("::ffff:192.0.2.1", 1, buf, 2 * ENDPOINT_ENTRY_SIZE));
    assert.deepEqual(addon.decodeEndpoint(buf, 0), { address: "10.1.2.3", port: 51820 });
    assert.deepEqual(addon.decodeEndpoint(buf, ENDPOINT_ENTRY_SIZE), { address: "fd00::1:2", port: 443 });
    assert.deepEqual(addon.decodeEndpoint(buf, 2 * ENDPOINT_ENTRY_SIZE), { address: "192.0.2.1", port: 1 });
    assert.equal(buf[18], 4);
    assert.equal(buf[ENDPOINT_ENTRY_SIZE + 18], 6);
  });
  it("rejects what is not an IP literal", () => {
    assert.equal(addon.encodeEndpoint("example.com", 1, Buffer.alloc(ENDPOINT_ENTRY_SIZE), 0), false);
    assert.throws(() => addon.encodeEndpoint("10.0.0.1", 1, Buffer.alloc(10), 0));
  });
});

// Lengths, offsets and indices cross into native code as uint32: every bound check there must be
// done in size_t, or a value near 2^32 wraps and passes it.
describe("native bound checks at the uint32 boundary", () => {
  const addon = native();

  it("udpRecv refuses headroom + capacity that wraps in uint32 (it used to 'fit' a 64-byte slot)", () => {
    const s = addon.udpOpen(0, 0);
    try {
      const arena = Buffer.alloc(64);
      assert.throws(
        () =>
          addon.udpRecv(
            s.fd,
            arena,
            64,
            1,
            0xffffffff,
            1,
            new Uint32Array(1),
            Buffer.alloc(ENDPOINT_ENTRY_SIZE),
          ),
        { name: "RangeError", message: /slots do not fit/ },
      );
      // The largest capacity that does fit is still accepted (nothing is queued: 0).
      assert.equal(
        addon.udpRecv(s.fd, arena, 64, 1, 63, 1, new Uint32Array(1), Buffer.alloc(ENDPOINT_ENTRY_SIZE)),
        0,
      );
    } finally {
      addon.closeFd(s.fd);
    }
  });

  it("udpSend refuses endpoint index 0xFFFFFFFF (index + 1 wrapped to 0 and passed the check)", () => {
    const s = addon.udpOpen(0, 0);
    try {
      assert.throws(
        () =>
          addon.udpSend(
            s.fd,
            Buffer.alloc(64),
            new Uint32Array([0]),
            new Uint32Array([8]),
            Buffer.alloc(ENDPOINT_ENTRY_SIZE),
            new Uint32Array([0xffffffff]),
            1,
            false,
          ),
        { name: "RangeError", message: /outside its buffer/ },
      );
    } finally {
      addon.closeFd(s.fd);
    }
  });

  it("sealBatch refuses a plaintext length near 2^32 (its padded length wrapped to 0)", () => {
    assert.throws(
      () =>
        addon.sealBatch(
          Buffer.alloc(256),
          new Uint32Array([0]),
          new Uint32Array([0xfffffff8]),
          Buffer.alloc(32),
          new Uint32Array([0]),
          new Uint32Array([1]),
          new Float64Array([0]),
          0,
          1,
        ),
      { name: "RangeError", message: /outside the arena/ },
    );
  });
});

describe("native setSchedSlice", () => {
  const addon = native();

  it("sets the calling thread's slice and keeps its nice value, in a child so the runner's thread is untouched", () => {
    const script = `
      const { getPriority, setPriority } = require("node:os");
      const addon = require(${JSON.stringify(join(projectRoot(), "build", "Release", "podcrypt_native.node"))});
      setPriority(0, 3);
      const slice = addon.setSchedSlice(300000);
      process.stdout.write(JSON.stringify({ slice, nice: getPriority(0) }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ["-e", script]).toString()) as {
      slice: number;
      nice: number;
    };
    // 0 on a kernel without custom slices (before Linux 6.12): the request is ignored there.
    assert.ok(out.slice === 300000 || out.slice === 0, `slice ${out.slice}`);
    assert.equal(out.nice, 3);
  });

  it("refuses slices outside the kernel's 0.1-100 ms", () => {
    assert.throws(() => addon.setSchedSlice(99_999), /100000\.\.100000000/);
    assert.throws(() => addon.setSchedSlice(100_000_001), /100000\.\.100000000/);
  });
});
