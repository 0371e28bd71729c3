import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../clock.js";
import {
  KEEPALIVE_TIMEOUT,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT,
  REJECT_AFTER_TIME,
  REKEY_SEND_COUNTER,
  SEND_COUNTER_LIMIT,
  REKEY_AFTER_TIME,
  REKEY_ATTEMPT_TIME,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
} from "./constants.js";
import { ipPacket, TestNetwork, TestNode } from "../../test/support/wireguard-loopback.js";
import { isValidationError } from "../errors/index.js";
import { generatePrivateKey, publicFromPrivate } from "../keys/x25519.js";
import { randomBytes } from "node:crypto";

const A_IP = "10.0.0.1";
const B_IP = "10.0.0.2";

function setup(
  options: { bUnderLoadThreshold?: number; psk?: [Buffer | undefined, Buffer | undefined] } = {},
) {
  const clock = new ManualClock(1_000);
  const net = new TestNetwork();
  const a = new TestNode("a", { address: "192.168.1.1", port: 51820 }, clock, net);
  const b = new TestNode("b", { address: "192.168.1.2", port: 51821 }, clock, net, {
    underLoadThreshold: options.bUnderLoadThreshold,
  });
  a.addPeer(b, [`${B_IP}/32`, "fd00::2/128"]);
  b.addPeer(a, [`${A_IP}/32`, "fd00::1/128"]);
  if (options.psk) {
    a.device.setPresharedKey(b.publicKey, options.psk[0]);
    b.device.setPresharedKey(a.publicKey, options.psk[1]);
  }
  const peerOf = (n: TestNode, other: TestNode) => n.device.peer(other.publicKey)!;
  /** advance the clock in 100 ms steps, ticking both and delivering traffic */
  const advance = (ms: number, step = 100): void => {
    for (let t = 0; t < ms; t += step) {
      clock.advance(Math.min(step, ms - t));
      a.tick();
      b.tick();
      net.run();
    }
  };
  return { clock, net, a, b, peerOf, advance };
}

test("handshake A->B: staged packet flows after the handshake, both sides record it", () => {
  const { net, a, b, peerOf, clock } = setup();
  assert.equal(a.send(ipPacket(A_IP, B_IP, Buffer.from("first"))), "staged");
  assert.equal(net.queue.length, 1);
  assert.equal(net.queue[0]!.bytes.length, 148);
  net.run();
  assert.equal(b.delivered.length, 1);
  assert.equal(b.delivered[0]!.subarray(20).toString(), "first");
  assert.equal(net.count(MESSAGE_INITIATION), 1);
  assert.equal(net.count(MESSAGE_RESPONSE), 1);
  assert.equal(a.keepalivesSent, 0, "data confirmed the session, no keepalive needed");
  const pa = peerOf(a, b);
  const pb = peerOf(b, a);
  assert.ok(pa.keypairs.current?.isInitiator);
  assert.ok(pb.keypairs.current && !pb.keypairs.current.isInitiator, "responder keypair confirmed by data");
  assert.equal(pb.keypairs.next, undefined);
  const snapA = a.device.peers()[0]!;
  assert.equal(snapA.lastHandshakeTimeSec, Math.floor(clock.wallNow() / 1000));
  assert.ok(snapA.txBytes > 0);
  assert.ok(b.device.peers()[0]!.rxBytes > 0);
  assert.equal(b.device.peers()[0]!.lastHandshakeTimeSec, Math.floor(clock.wallNow() / 1000));
  // reply B->A uses the confirmed session without a new handshake
  assert.equal(b.send(ipPacket(B_IP, A_IP, Buffer.from("reply"))), "sent");
  net.run();
  assert.equal(a.delivered[0]!.subarray(20).toString(), "reply");
  assert.equal(net.count(MESSAGE_INITIATION), 1);
});

test("handshake B->A over IPv6 inner packets, and the responder waits for confirmation", () => {
  const { net, a, b, peerOf } = setup();
  net.filter = (d) => d.bytes[0] !== MESSAGE_TRANSPORT; // hold back data: no confirmation reaches A
  assert.equal(b.send(ipPacket("fd00::2", "fd00::1")), "staged");
  net.run();
  const pa = peerOf(a, b);
  assert.ok(pa.keypairs.next, "responder keypair waits in next");
  assert.equal(pa.keypairs.current, undefined);
  assert.equal(a.send(ipPacket("fd00::1", "fd00::2")), "staged", "responder cannot send before confirmation");
  net.filter = () => true;
  b.send(ipPacket("fd00::2", "fd00::1", Buffer.from("again")));
  net.run();
  assert.ok(pa.keypairs.current);
  assert.equal(pa.keypairs.next, undefined);
  assert.ok(a.delivered.some((p) => p.subarray(40).toString() === "again"));
  assert.ok(b.delivered.length >= 1, "A's staged packet flushed on confirmation");
});

test("keepalive confirms the session when the initiator has no data", () => {
  const { net, a, b, peerOf } = setup();
  a.device.setPersistentKeepalive(b.publicKey, 25); // asks for a keepalive now: no keypair -> handshake
  net.run();
  assert.equal(net.count(MESSAGE_INITIATION), 1);
  assert.equal(a.keepalivesSent, 1);
  assert.equal(b.keepalivesReceived, 1);
  assert.ok(peerOf(b, a).keypairs.current, "keepalive confirmed B's keypair");
});

test("simultaneous initiation: both crossing handshakes complete at once, no retry needed", () => {
  const { net, a, b, peerOf } = setup();
  a.send(ipPacket(A_IP, B_IP, Buffer.from("from-a")));
  b.send(ipPacket(B_IP, A_IP, Buffer.from("from-b")));
  assert.equal(net.queue.length, 2);
  // No clock advance: the reference implementations would reject both responses here and wait
  // REKEY_TIMEOUT for a retry; each end keeps its initiation alive beside the answer it gives.
  net.run();
  const payloads = (n: TestNode) => n.delivered.map((p) => p.subarray(20).toString());
  assert.ok(payloads(b).includes("from-a"), payloads(b).join());
  assert.ok(payloads(a).includes("from-b"), payloads(a).join());
  assert.equal(a.device.drops().total["unknown-index"], undefined);
  assert.equal(b.device.drops().total["unknown-index"], undefined);
  assert.equal(net.count(MESSAGE_INITIATION), 2, "one initiation each, no retransmission");
  for (const [x, y] of [
    [a, b],
    [b, a],
  ] as const) {
    const kps = peerOf(x, y).keypairs;
    assert.ok(kps.current?.isInitiator, "each sends on the session it initiated");
    assert.ok(kps.previous !== undefined && !kps.previous.isInitiator, "and receives on the one it answered");
    assert.equal(peerOf(x, y).pendingInitiation, undefined, "the forked initiation is spent");
  }
  a.send(ipPacket(A_IP, B_IP, Buffer.from("a2")));
  b.send(ipPacket(B_IP, A_IP, Buffer.from("b2")));
  net.run();
  assert.ok(payloads(b).includes("a2") && payloads(a).includes("b2"));
});

test("simultaneous initiation when one answer is lost: the other session serves both, the fork is released", () => {
  const { net, a, b, advance, peerOf } = setup();
  // Lose B's response to A's initiation.
  let lost = false;
  net.filter = (d) => {
    const drop = !lost && d.bytes[0] === MESSAGE_RESPONSE && d.to.port === a.endpoint.port;
    lost ||= drop;
    return !drop;
  };
  a.send(ipPacket(A_IP, B_IP, Buffer.from("from-a")));
  b.send(ipPacket(B_IP, A_IP, Buffer.from("from-b")));
  net.run(2);
  assert.ok(peerOf(a, b).pendingInitiation !== undefined, "A's initiation waits beside its answer");
  net.run();
  assert.ok(lost);
  // A's answer completed B's session; B's data on it confirmed it at A: traffic flows both ways
  // without a retry, and A's waiting initiation (and its index) is released.
  const payloads = (n: TestNode) => n.delivered.map((p) => p.subarray(20).toString());
  assert.ok(payloads(a).includes("from-b"));
  assert.ok(payloads(b).includes("from-a"), payloads(b).join());
  assert.equal(peerOf(a, b).pendingInitiation, undefined);
  assert.equal(net.count(MESSAGE_INITIATION), 2, "no retransmission");
  advance(6000, 10);
  assert.equal(net.count(MESSAGE_INITIATION), 2, "still none later");
});

test("rekey after REKEY_AFTER_TIME by the initiator; old keypair stays receivable as previous", () => {
  const { net, a, b, clock, peerOf } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  const first = peerOf(a, b).keypairs.current!;
  clock.advance(REKEY_AFTER_TIME - 1);
  assert.equal(a.send(ipPacket(A_IP, B_IP)), "sent");
  assert.equal(net.count(MESSAGE_INITIATION), 1, "not yet");
  net.run();
  clock.advance(1);
  assert.equal(
    a.send(ipPacket(A_IP, B_IP, Buffer.from("rekey"))),
    "sent",
    "old keypair still used while rekeying",
  );
  assert.equal(net.count(MESSAGE_INITIATION), 2);
  net.run();
  const second = peerOf(a, b).keypairs.current!;
  assert.notEqual(second, first);
  assert.equal(peerOf(a, b).keypairs.previous, first);
  assert.equal(b.delivered.at(-1)!.subarray(20).toString(), "rekey");
  // B (responder) never rekeys on time: only the initiator does
  clock.advance(REKEY_AFTER_TIME);
  const before = net.count(MESSAGE_INITIATION, b);
  b.send(ipPacket(B_IP, A_IP));
  assert.equal(net.count(MESSAGE_INITIATION, b), before);
});

test("rekey after REKEY_AFTER_MESSAGES (brought forward below 2^53)", () => {
  const { net, a, b, peerOf, clock } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  clock.advance(REKEY_TIMEOUT); // initiations are rate limited to one per REKEY_TIMEOUT
  const before = net.count(MESSAGE_INITIATION);
  a.send(ipPacket(A_IP, B_IP));
  assert.equal(net.count(MESSAGE_INITIATION), before, "young keypair, few messages: no rekey");
  peerOf(a, b).keypairs.current!.sendCounter = REKEY_SEND_COUNTER;
  assert.equal(a.send(ipPacket(A_IP, B_IP)), "sent");
  assert.equal(net.count(MESSAGE_INITIATION), before + 1);
});

test("a keypair whose send counter reaches 2^53 (less a margin) stops sending and re-keys", () => {
  const { net, a, b, peerOf, clock } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  clock.advance(REKEY_TIMEOUT);
  const first = peerOf(a, b).keypairs.current!;
  assert.ok(SEND_COUNTER_LIMIT <= Number.MAX_SAFE_INTEGER, "every counter sent is an exact integer");
  first.sendCounter = SEND_COUNTER_LIMIT - 1;
  net.filter = (d) => d.bytes[0] !== MESSAGE_INITIATION; // hold the rekey back
  assert.equal(a.send(ipPacket(A_IP, B_IP, Buffer.from("last"))), "sent", "the last counter still goes");
  assert.equal(first.sendCounter, SEND_COUNTER_LIMIT);
  const initiations = net.count(MESSAGE_INITIATION, a);
  assert.equal(a.send(ipPacket(A_IP, B_IP, Buffer.from("after"))), "staged", "no counter past the limit");
  assert.equal(first.sendCounter, SEND_COUNTER_LIMIT, "nothing sealed with it");
  net.run();
  assert.equal(b.delivered.at(-1)!.subarray(20).toString(), "last");
  clock.advance(REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
  net.filter = () => true;
  a.tick(); // the retransmission of the held-back initiation
  net.run();
  assert.ok(net.count(MESSAGE_INITIATION, a) > initiations);
  const second = peerOf(a, b).keypairs.current!;
  assert.notEqual(second, first);
  assert.equal(
    b.delivered.at(-1)!.subarray(20).toString(),
    "after",
    "the staged packet left on the new keypair",
  );
  assert.ok(second.sendCounter < 10);
});

test("initiator rekeys on receive at REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT, once", () => {
  const { net, a, b, clock } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  net.filter = (d) => d.bytes[0] === MESSAGE_TRANSPORT; // drop handshakes so the rekey does not complete
  clock.advance(REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT);
  const before = net.count(MESSAGE_INITIATION, a);
  b.send(ipPacket(B_IP, A_IP));
  net.run();
  assert.equal(net.count(MESSAGE_INITIATION, a), before + 1);
  clock.advance(REKEY_TIMEOUT + 1);
  b.send(ipPacket(B_IP, A_IP));
  net.run();
  assert.equal(net.count(MESSAGE_INITIATION, a), before + 1, "only once per session");
});

test("passive keepalive after KEEPALIVE_TIMEOUT when data was received but nothing sent", () => {
  const { net, a, b, advance } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  assert.equal(b.keepalivesSent, 0);
  advance(KEEPALIVE_TIMEOUT - 200);
  assert.equal(b.keepalivesSent, 0);
  advance(300);
  assert.equal(b.keepalivesSent, 1);
  assert.equal(a.keepalivesReceived, 1);
  advance(KEEPALIVE_TIMEOUT * 3);
  assert.equal(b.keepalivesSent, 1, "no further keepalives without new data");
  // if B answers with data, no keepalive is needed
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  b.send(ipPacket(B_IP, A_IP));
  net.run();
  advance(KEEPALIVE_TIMEOUT + 200);
  assert.equal(b.keepalivesSent, 1);
});

test("persistent keepalive every interval, turned off with 0", () => {
  const { net, a, b, advance } = setup();
  a.device.setPersistentKeepalive(b.publicKey, 25);
  net.run();
  const base = a.keepalivesSent;
  advance(25_000 + 100);
  assert.equal(a.keepalivesSent, base + 1);
  advance(25_000);
  assert.equal(a.keepalivesSent, base + 2);
  a.device.setPersistentKeepalive(b.publicKey, 0);
  advance(60_000);
  assert.ok(a.keepalivesSent <= base + 3);
  const afterOff = a.keepalivesSent;
  advance(60_000);
  assert.equal(a.keepalivesSent, afterOff);
});

test("no response: retransmit every REKEY_TIMEOUT+jitter, give up after REKEY_ATTEMPT_TIME, drop staged", () => {
  const { net, a, b, advance } = setup();
  net.filter = (d) => d.to.port !== b.endpoint.port; // B unreachable
  a.send(ipPacket(A_IP, B_IP));
  a.send(ipPacket(A_IP, B_IP));
  assert.equal(net.count(MESSAGE_INITIATION), 1);
  advance(REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX + 100);
  assert.equal(net.count(MESSAGE_INITIATION), 2);
  advance(REKEY_ATTEMPT_TIME - (REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX + 100));
  assert.equal(a.stagedDropped, 0, "still trying during REKEY_ATTEMPT_TIME");
  // as wireguard-go: give up when the retransmit timer fires with attempts > REKEY_ATTEMPT_TIME/REKEY_TIMEOUT
  advance(20 * (REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX) - REKEY_ATTEMPT_TIME + 100);
  assert.equal(a.stagedDropped, 2);
  // 1 initiation + retries until the attempt counter exceeds REKEY_ATTEMPT_TIME / REKEY_TIMEOUT
  assert.equal(net.count(MESSAGE_INITIATION), 20);
  advance(60_000);
  assert.equal(net.count(MESSAGE_INITIATION), 20, "silent after giving up");
});

test("keypairs are rejected after REJECT_AFTER_TIME and all keys zeroed after 3 x REJECT_AFTER_TIME", () => {
  const { net, a, b, peerOf, advance, clock } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  const kpA = peerOf(a, b).keypairs.current!;
  const kpB = peerOf(b, a).keypairs.current!;
  net.filter = () => false; // isolate
  advance(REJECT_AFTER_TIME);
  assert.equal(b.device.receiveKeypair(kpB.localIndex, clock.now()), undefined);
  assert.equal(a.send(ipPacket(A_IP, B_IP)), "staged", "expired keypair cannot send");
  advance(2 * REJECT_AFTER_TIME + 1000);
  assert.equal(peerOf(b, a).keypairs.current, undefined);
  assert.equal(peerOf(a, b).keypairs.current, undefined);
  assert.ok(kpB.sendKey.every((x) => x === 0) && kpB.recvKey.every((x) => x === 0));
  assert.ok(kpA.sendKey.every((x) => x === 0));
});

test("cookie under load: first initiation gets a cookie reply, the retry carries mac2 and succeeds", () => {
  const { net, a, b, peerOf, advance } = setup({ bUnderLoadThreshold: 0 });
  a.send(ipPacket(A_IP, B_IP, Buffer.from("loaded")));
  net.run();
  assert.equal(net.count(MESSAGE_COOKIE_REPLY), 1);
  assert.equal(b.device.drops().total["cookie-required"], 1);
  assert.ok(peerOf(a, b).cookieGenerator.hasCookie(a.clock.now()));
  assert.equal(b.delivered.length, 0);
  advance(REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX + 100);
  assert.equal(net.count(MESSAGE_COOKIE_REPLY), 1, "mac2 valid: no second cookie reply");
  assert.equal(b.delivered.length, 1);
  assert.ok(b.device.isUnderLoad(b.clock.now()));
});

test("preshared keys: matching works, mismatch fails and is counted", () => {
  const psk = randomBytes(32);
  let s = setup({ psk: [psk, Buffer.from(psk)] });
  s.a.send(ipPacket(A_IP, B_IP));
  s.net.run();
  assert.equal(s.b.delivered.length, 1);
  assert.ok(s.a.device.peers()[0]!.presharedKey?.equals(psk));

  s = setup({ psk: [psk, randomBytes(32)] });
  s.a.send(ipPacket(A_IP, B_IP));
  s.net.run();
  assert.equal(s.b.delivered.length, 0);
  assert.equal(s.peerOf(s.a, s.b).keypairs.current, undefined);
  assert.equal(s.a.device.drops().total["handshake-failed"], 1);
  s = setup({ psk: [psk, undefined] });
  s.a.send(ipPacket(A_IP, B_IP));
  s.net.run();
  assert.equal(s.b.delivered.length, 0);
});

test("a replayed initiation is rejected and does not disturb the session", () => {
  const { net, a, b, peerOf } = setup();
  a.send(ipPacket(A_IP, B_IP));
  const init = net.queue[0]!;
  net.run();
  const kp = peerOf(b, a).keypairs.current;
  const responses = net.count(MESSAGE_RESPONSE);
  b.receive(init.bytes, init.from);
  net.run();
  assert.equal(net.count(MESSAGE_RESPONSE), responses, "no response to a replay");
  assert.equal(b.device.drops().total["handshake-failed"], 1);
  assert.equal(peerOf(b, a).keypairs.current, kp);
});

test("replayed data message is dropped as replay", () => {
  const { net, a, b } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  a.send(ipPacket(A_IP, B_IP, Buffer.from("x")));
  const d = net.queue[0]!;
  net.run();
  b.receive(d.bytes, d.from);
  assert.equal(b.device.drops().total.replay, 1);
  assert.equal(b.device.drops().peers[0]!.drops.replay, 1);
});

test("roaming: the endpoint follows authenticated data from a new address", () => {
  const { net, a, b, peerOf } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  a.source = { address: "192.168.1.99", port: 40000 };
  net.attach(a); // unreachable at the old address from now on is fine; B will answer the new one
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  assert.deepEqual(peerOf(b, a).endpoint, { address: "192.168.1.99", port: 40000 });
  // a forged packet from elsewhere does not move the endpoint
  b.receive(Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(40)]), { address: "6.6.6.6", port: 1 });
  assert.deepEqual(peerOf(b, a).endpoint, { address: "192.168.1.99", port: 40000 });
});

test("source address outside the peer's allowed IPs is dropped as bad-source", () => {
  const { net, a, b } = setup();
  a.send(ipPacket("10.9.9.9", B_IP));
  net.run();
  assert.equal(b.delivered.length, 0);
  assert.equal(b.device.drops().total["bad-source"], 1);
});

test("changing the private key re-derives static DH and stops old sessions from sending", () => {
  const { net, a, b, peerOf, advance } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  const newKey = generatePrivateKey(randomBytes);
  b.device.setPrivateKey(newKey);
  assert.deepEqual(b.device.publicKey, publicFromPrivate(newKey));
  assert.equal(b.send(ipPacket(B_IP, A_IP)), "staged", "old session no longer sends");
  net.run();
  assert.equal(a.delivered.length, 0, "A does not know B's new key: the handshake fails");
  // A learns B's new key (as the agent would configure it)
  a.device.removePeer(b.publicKey);
  a.device.upsertPeer(publicFromPrivate(newKey));
  a.device.replaceAllowedIps(publicFromPrivate(newKey), [`${B_IP}/32`]);
  a.device.setEndpoint(publicFromPrivate(newKey), b.endpoint);
  b.send(ipPacket(B_IP, A_IP, Buffer.from("new identity")));
  advance(REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX + 100); // the retransmission reaches A now
  assert.ok(peerOf(b, a).keypairs.current);
  assert.ok(a.delivered.some((p) => p.subarray(20).toString() === "new identity"));
  // setting a key equal to a peer's public key removes that peer
  a.device.setPrivateKey(b.privateKey);
  assert.equal(a.device.hasPeer(b.publicKey), false);
});

test("configuration API: peers snapshot, allowed IPs, removal clears indices, validation", () => {
  const { net, a, b, clock } = setup();
  a.send(ipPacket(A_IP, B_IP));
  net.run();
  const snap = a.device.peers()[0]!;
  assert.deepEqual(snap.publicKey, b.publicKey);
  assert.deepEqual(snap.endpoint, b.endpoint);
  assert.deepEqual(snap.allowedIps, [
    { address: B_IP, cidr: 32 },
    { address: "fd00::2", cidr: 128 },
  ]);
  assert.equal(snap.protocolVersion, 1);
  assert.equal(snap.presharedKey, undefined);
  a.device.addAllowedIp(b.publicKey, "10.1.2.3/16");
  a.device.removeAllowedIp(b.publicKey, "fd00::2/128");
  assert.deepEqual(a.device.peers()[0]!.allowedIps, [
    { address: B_IP, cidr: 32 },
    { address: "10.1.0.0", cidr: 16 },
  ]);
  const kp = a.device.peer(b.publicKey)!.keypairs.current!;
  assert.ok(a.device.receiveKeypair(kp.localIndex, clock.now()));
  a.device.removePeer(b.publicKey);
  assert.equal(a.device.receiveKeypair(kp.localIndex, clock.now()), undefined);
  assert.equal(a.device.peers().length, 0);
  assert.equal(a.send(ipPacket(A_IP, B_IP)), "no-route");
  assert.equal(a.device.upsertPeer(a.publicKey), false, "own key is ignored");
  assert.throws(() => a.device.setEndpoint(b.publicKey, b.endpoint), isValidationError);
  assert.throws(() => a.device.upsertPeer(Buffer.alloc(31)), isValidationError);
  a.device.upsertPeer(b.publicKey);
  assert.throws(() => a.device.replaceAllowedIps(b.publicKey, ["10.0.0.0/40"]), isValidationError);
  assert.throws(() => a.device.setPersistentKeepalive(b.publicKey, 70000), isValidationError);
  assert.throws(() => (a.device.listenPort = 70000), isValidationError);
  a.device.listenPort = 51000;
  a.device.fwmark = 0x1234;
  assert.equal(a.device.listenPort, 51000);
  assert.equal(a.device.fwmark, 0x1234);
  a.device.removeAllPeers();
  assert.equal(a.device.peers().length, 0);
  a.device.setPrivateKey(undefined);
  assert.equal(a.device.publicKey, undefined);
});

test("garbage and truncated control datagrams are counted, never thrown", () => {
  const { a, clock } = setup();
  const from = { address: "192.168.1.3", port: 9 };
  const withHeader = (type: number, n: number): Buffer => {
    const g = randomBytes(n);
    g[0] = type;
    g.fill(0, 1, 4);
    return g;
  };
  for (let n = 0; n < 200; n++) a.device.handleControl(randomBytes(n), from, clock.now());
  for (const [type, size] of [
    [1, 148],
    [2, 92],
    [3, 64],
  ] as const) {
    a.device.handleControl(withHeader(type, size), from, clock.now()); // right size, garbage content
    a.device.handleControl(withHeader(type, size - 1), from, clock.now()); // truncated
    a.device.handleControl(withHeader(type, size + 1), from, clock.now()); // too long
  }
  a.device.handleControl(withHeader(4, 40), from, clock.now()); // data is not a control message
  const d = a.device.drops().total;
  assert.ok((d.malformed ?? 0) >= 190 + 7, JSON.stringify(d));
  assert.equal(d["handshake-failed"], 2, "initiation and response fail mac1");
  assert.equal(d["unknown-index"], 1, "cookie reply for an index we never issued");
  assert.equal(a.device.peers()[0]!.rxBytes, 0);
});
