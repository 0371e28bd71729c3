import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeCookieReply,
  decodeInitiation,
  decodeResponse,
  decodeTransport,
  encodeCookieReply,
  encodeInitiation,
  encodeResponse,
  encodeTransport,
  messageType,
} from "./messages.js";

const fill = (n: number, v: number): Buffer => Buffer.alloc(n, v);

test("initiation: 148 bytes, layout of whitepaper 5.4.2, round trip", () => {
  const m = {
    sender: 0xdeadbeef,
    ephemeral: fill(32, 1),
    encryptedStatic: fill(48, 2),
    encryptedTimestamp: fill(28, 3),
    mac1: fill(16, 4),
    mac2: fill(16, 5),
  };
  const b = encodeInitiation(m);
  assert.equal(b.length, 148);
  assert.deepEqual([...b.subarray(0, 8)], [1, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde]);
  assert.equal(b[8], 1);
  assert.equal(b[40], 2);
  assert.equal(b[88], 3);
  assert.equal(b[116], 4);
  assert.equal(b[147], 5);
  assert.deepEqual(decodeInitiation(b), m);
  assert.equal(decodeInitiation(b.subarray(0, 147)), undefined);
  assert.equal(decodeInitiation(Buffer.concat([b, Buffer.alloc(1)])), undefined);
  const reserved = Buffer.from(b);
  reserved[2] = 1;
  assert.equal(decodeInitiation(reserved), undefined);
  assert.equal(decodeResponse(b), undefined);
});

test("response: 92 bytes, round trip, strict size", () => {
  const m = {
    sender: 1,
    receiver: 0xffffffff,
    ephemeral: fill(32, 7),
    encryptedNothing: fill(16, 8),
    mac1: fill(16, 9),
    mac2: fill(16, 10),
  };
  const b = encodeResponse(m);
  assert.equal(b.length, 92);
  assert.equal(b[0], 2);
  assert.deepEqual(decodeResponse(b), m);
  assert.equal(decodeResponse(b.subarray(0, 91)), undefined);
});

test("cookie reply: 64 bytes, round trip", () => {
  const m = { receiver: 42, nonce: fill(24, 1), encryptedCookie: fill(32, 2) };
  const b = encodeCookieReply(m);
  assert.equal(b.length, 64);
  assert.deepEqual(decodeCookieReply(b), m);
  assert.equal(decodeCookieReply(Buffer.concat([b, b])), undefined);
});

test("transport: 16-byte header + payload, minimum 32 bytes, 64-bit LE counter", () => {
  const m = { receiver: 5, counter: 0x0102030405060708n, payload: fill(16, 0xaa) };
  const b = encodeTransport(m);
  assert.equal(b.length, 32);
  assert.deepEqual([...b.subarray(8, 16)], [8, 7, 6, 5, 4, 3, 2, 1]);
  assert.deepEqual(decodeTransport(b), m);
  assert.equal(decodeTransport(b.subarray(0, 31)), undefined);
});

test("messageType: rejects unknown types, short and non-zero reserved headers; encoders reject bad field sizes", () => {
  assert.equal(messageType(Buffer.from([4, 0, 0, 0])), 4);
  assert.equal(messageType(Buffer.from([5, 0, 0, 0])), undefined);
  assert.equal(messageType(Buffer.from([0, 0, 0, 0])), undefined);
  assert.equal(messageType(Buffer.from([1, 0, 0])), undefined);
  assert.equal(messageType(Buffer.from([1, 0, 0, 1])), undefined);
  assert.throws(() => encodeCookieReply({ receiver: 1, nonce: fill(23, 0), encryptedCookie: fill(32, 0) }));
  // random garbage never throws from decoders
  for (let n = 0; n < 200; n++) {
    const g = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));
    decodeInitiation(g);
    decodeResponse(g);
    decodeCookieReply(g);
    decodeTransport(g);
  }
});
