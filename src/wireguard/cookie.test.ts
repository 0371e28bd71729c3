import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { COOKIE_REFRESH_TIME, MESSAGE_INITIATION_SIZE } from "./constants.js";
import { CookieChecker, CookieGenerator, LoadDetector, RateLimiter } from "./cookie.js";
import { generatePrivateKey, publicFromPrivate } from "../keys/x25519.js";
import { decodeCookieReply } from "./messages.js";

const responderPub = publicFromPrivate(generatePrivateKey(randomBytes));
const src = { address: "10.0.0.1", port: 51820 };

function message(): Buffer {
  const m = randomBytes(MESSAGE_INITIATION_SIZE);
  m[0] = 1;
  m.fill(0, 1, 4);
  return m;
}

test("mac1 (whitepaper 5.4.4): generator and checker agree; other keys or tampering fail", () => {
  const checker = new CookieChecker(randomBytes);
  checker.setPublicKey(responderPub);
  const gen = new CookieGenerator(responderPub);
  const m = message();
  gen.addMacs(m, 0);
  assert.ok(checker.checkMac1(m));
  assert.ok(
    m.subarray(-16).every((b) => b === 0),
    "no cookie: mac2 is zero",
  );
  const other = new CookieGenerator(publicFromPrivate(generatePrivateKey(randomBytes)));
  const m2 = message();
  other.addMacs(m2, 0);
  assert.ok(!checker.checkMac1(m2));
  m[10]! ^= 1;
  assert.ok(!checker.checkMac1(m));
  const unset = new CookieChecker(randomBytes);
  assert.ok(!unset.checkMac1(m2));
});

test("cookie reply (5.4.7): decrypts only for the last mac1, then mac2 verifies for the same source", () => {
  const checker = new CookieChecker(randomBytes);
  checker.setPublicKey(responderPub);
  const gen = new CookieGenerator(responderPub);
  const m = message();
  gen.addMacs(m, 0);
  assert.ok(!checker.checkMac2(m, src, 0));
  const reply = decodeCookieReply(checker.createReply(m, 7, src, 0)!)!;
  assert.equal(reply.receiver, 7);
  const wrong = { ...reply, encryptedCookie: Buffer.from(reply.encryptedCookie) };
  wrong.encryptedCookie[0]! ^= 1;
  assert.ok(!gen.consumeReply(wrong, 10));
  assert.ok(gen.consumeReply(reply, 10));
  assert.ok(!gen.consumeReply(reply, 10), "one reply per sent message");
  assert.ok(gen.hasCookie(10));
  const m2 = message();
  gen.addMacs(m2, 20);
  assert.ok(checker.checkMac1(m2));
  assert.ok(checker.checkMac2(m2, src, 20));
  assert.ok(!checker.checkMac2(m2, { address: "10.0.0.2", port: 51820 }, 20), "cookie binds the address");
  assert.ok(!checker.checkMac2(m2, { address: "10.0.0.1", port: 51821 }, 20), "and the port");
  // cookie expires at the initiator after COOKIE_REFRESH_TIME; the secret at the responder too
  assert.ok(!gen.hasCookie(10 + COOKIE_REFRESH_TIME));
  const m3 = message();
  gen.addMacs(m3, 10 + COOKIE_REFRESH_TIME);
  assert.ok(m3.subarray(-16).every((b) => b === 0));
  assert.ok(!checker.checkMac2(m2, src, COOKIE_REFRESH_TIME + 1), "secret rotated");
});

test("load detector: over the threshold in one second, for UNDER_LOAD_AFTER_TIME; queue depth input", () => {
  const d = new LoadDetector(3, 10);
  assert.ok(!d.record(0));
  assert.ok(!d.record(1));
  assert.ok(!d.record(2));
  assert.ok(d.record(3));
  assert.ok(d.isUnderLoad(1002));
  assert.ok(!d.isUnderLoad(1003));
  assert.ok(!d.record(1500), "new second, count restarts");
  d.reportQueueDepth(9, 1600);
  assert.ok(!d.isUnderLoad(1600));
  d.reportQueueDepth(10, 1600);
  assert.ok(d.isUnderLoad(2599));
});

test("rate limiter: burst then refill per source; IPv6 grouped by /64", () => {
  const r = new RateLimiter(20, 5);
  for (let i = 0; i < 5; i++) assert.ok(r.allow("10.0.0.1", 0));
  assert.ok(!r.allow("10.0.0.1", 0));
  assert.ok(r.allow("10.0.0.2", 0), "other sources unaffected");
  assert.ok(r.allow("10.0.0.1", 50), "one token per 50 ms at 20/s");
  assert.ok(!r.allow("10.0.0.1", 50));
  for (let i = 0; i < 5; i++) assert.ok(r.allow(`fd00::${i + 1}`, 0));
  assert.ok(!r.allow("fd00::99", 0));
  assert.ok(r.allow("fd00:0:0:1::1", 0));
});
