import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../clock.js";
import { isValidationError } from "../errors/index.js";
import { MESSAGE_INITIATION, MESSAGE_TRANSPORT } from "./constants.js";
import type { DeviceHandover } from "./handover.js";
import { ipPacket, TestNetwork, TestNode, type Datagram } from "../../test/support/wireguard-loopback.js";

const A_IP = "10.0.0.1";
const B_IP = "10.0.0.2";

/** Two nodes with a confirmed session both ways and some traffic on it. */
function established() {
  const clock = new ManualClock(1_000);
  const net = new TestNetwork();
  const a = new TestNode("a", { address: "192.168.1.1", port: 51820 }, clock, net);
  const b = new TestNode("b", { address: "192.168.1.2", port: 51821 }, clock, net);
  a.addPeer(b, [`${B_IP}/32`]);
  b.addPeer(a, [`${A_IP}/32`]);
  for (let i = 0; i < 5; i++) {
    a.send(ipPacket(A_IP, B_IP, Buffer.from(`a${i}`)));
    b.send(ipPacket(B_IP, A_IP, Buffer.from(`b${i}`)));
    net.run();
  }
  return { clock, net, a, b };
}

/** (receiver index, counter) of every transport message `from` sent: a nonce under that session's key. */
function nonces(log: readonly Datagram[], from: TestNode): string[] {
  return log
    .filter((d) => d.bytes[0] === MESSAGE_TRANSPORT && d.from.port === from.endpoint.port)
    .map((d) => `${d.bytes.readUInt32LE(4)}:${d.bytes.readBigUInt64LE(8)}`);
}

describe("Device.handOver / takeOver (a daemon's planned restart)", () => {
  it("the successor sends on the same sessions from the next counter: no handshake, no nonce twice", () => {
    const { clock, net, a, b } = established();
    const initiations = net.count(MESSAGE_INITIATION);
    const counter = a.device.peer(b.publicKey)!.keypairs.current!.sendCounter;
    const handover = JSON.parse(JSON.stringify(a.device.handOver(clock.now()))) as DeviceHandover;

    // Security invariant: the predecessor sends nothing more on any session (no data, keepalive or
    // handshake), so no (key, counter) pair can come from both daemons.
    const logged = net.log.length;
    assert.equal(a.send(ipPacket(A_IP, B_IP, Buffer.from("late"))), "staged");
    clock.advance(30_000);
    a.tick();
    assert.equal(net.log.length, logged, "the old device sent nothing after handing over");

    clock.advance(50);
    const a2 = new TestNode("a2", a.endpoint, clock, net, { handover });
    assert.ok(a2.publicKey.equals(a.publicKey), "same identity");
    assert.equal(
      a2.send(ipPacket(A_IP, B_IP, Buffer.from("after"))),
      "sent",
      "a session is there: nothing staged",
    );
    net.run();
    assert.equal(b.delivered.at(-1)!.subarray(20).toString(), "after");
    const first = net.log.at(-1)!;
    assert.equal(
      first.bytes.readBigUInt64LE(8),
      BigInt(counter),
      "the counter goes on where the old device stopped",
    );
    assert.equal(b.send(ipPacket(B_IP, A_IP, Buffer.from("back"))), "sent");
    net.run();
    assert.equal(
      a2.delivered.at(-1)!.subarray(20).toString(),
      "back",
      "the successor receives on the session",
    );
    for (let i = 0; i < 20; i++) {
      clock.advance(1000);
      a2.send(ipPacket(A_IP, B_IP, Buffer.from(`x${i}`)));
      b.send(ipPacket(B_IP, A_IP, Buffer.from(`y${i}`)));
      a2.tick();
      b.tick();
      net.run();
    }
    assert.equal(net.count(MESSAGE_INITIATION), initiations, "no handshake after the handover");
    const sent = nonces(net.log, a);
    assert.equal(new Set(sent).size, sent.length, "no (session, counter) sent twice");
    assert.equal(b.device.drops().total.replay ?? 0, 0);
  });

  it("replayed messages of the predecessor's time stay refused by the successor", () => {
    const { clock, net, a, b } = established();
    const fromB = net.log.filter((d) => d.bytes[0] === MESSAGE_TRANSPORT && d.from.port === b.endpoint.port);
    const handover = JSON.parse(JSON.stringify(a.device.handOver(clock.now()))) as DeviceHandover;
    const a2 = new TestNode("a2", a.endpoint, clock, net, { handover });
    const delivered = a2.delivered.length;
    for (const d of fromB) a2.receive(d.bytes, d.from);
    assert.equal(a2.delivered.length, delivered, "nothing delivered twice");
    assert.equal(a2.device.drops().total.replay, fromB.length);
  });

  it("refuses bad input, or a device with a key already, and changes nothing", () => {
    const { clock, a } = established();
    const good = JSON.parse(JSON.stringify(a.device.handOver(clock.now()))) as DeviceHandover;
    const bad = structuredClone(good);
    bad.peers[0]!.keypairs[0]!.sendKey = "zz";
    const fresh = new TestNetwork();
    const device = new TestNode("c", { address: "192.168.1.3", port: 1 }, clock, fresh).device;
    assert.throws(() => device.takeOver(good, clock.now()), isValidationError, "a device with a key");
    const twice = structuredClone(good);
    twice.peers[0]!.keypairs.push({ ...twice.peers[0]!.keypairs[0]!, slot: "previous" });
    // A replay window that does not fit (checked before anything changes, not half-way).
    const ring = structuredClone(good);
    ring.peers[0]!.keypairs.at(-1)!.replay.ring = [1];
    for (const input of [bad, twice, ring]) {
      const n = new TestNode("d", { address: "192.168.1.4", port: 2 }, clock, fresh, {
        handover: emptyHandover(),
      });
      assert.throws(() => n.device.takeOver(input, clock.now()), isValidationError);
      assert.equal(n.device.peers().length, 0);
      assert.equal(n.device.privateKey, undefined);
    }
  });
});

function emptyHandover(): DeviceHandover {
  return { privateKey: null, fwmark: 0, peers: [] };
}
