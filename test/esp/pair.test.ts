/**
 * Two nodes that share nothing but public keys derive their ESP SAs independently
 * (src/keys/derive.ts) and exchange packets through the codec across a rotation whose key ID
 * wraps from 15 to 1: the make-before-break phases of docs/design.md#keys-and-rotation at the SA level.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { decapsulate, encapsulate } from "../../src/esp/codec.js";
import { IPPROTO_UDP, ipv4Packet } from "../../src/esp/ip.js";
import { InboundSa, OutboundSa } from "../../src/esp/sa.js";
import { SaDatabase } from "../../src/esp/sadb.js";
import { deriveEspKey, keyIdForEpoch, spiFor } from "../../src/keys/derive.js";
import { generateKeyPair, type NodeKeyPair } from "../../src/keys/x25519.js";

interface Node {
  name: string;
  keys: Map<number, NodeKeyPair>;
  db: SaDatabase;
  /** The node's SA instance (src/keys/derive.ts). */
  instance: string;
}

const node = (name: string): Node => ({
  name,
  keys: new Map(),
  db: new SaDatabase(),
  instance: randomBytes(16).toString("hex"),
});

/** "prepare" on `self` for `epoch`: inbound SA from the peer and (inactive) outbound SA to it. */
function prepare(self: Node, peer: Node, epoch: number): void {
  const own = self.keys.get(epoch)!;
  const theirs = peer.keys.get(epoch)!.publicKey;
  const keyId = keyIdForEpoch(epoch);
  const inKey = deriveEspKey({
    localPrivateKey: own.privateKey,
    remotePublicKey: theirs,
    sender: peer.name,
    receiver: self.name,
    senderInstance: peer.instance,
    receiverInstance: self.instance,
    epoch,
  });
  const outKey = deriveEspKey({
    localPrivateKey: own.privateKey,
    remotePublicKey: theirs,
    sender: self.name,
    receiver: peer.name,
    senderInstance: self.instance,
    receiverInstance: peer.instance,
    epoch,
  });
  const common = { keyId, peer: peer.name, createdAt: epoch };
  self.db.installInbound(
    new InboundSa({
      ...common,
      ...inKey,
      spi: spiFor(keyId, peer.name, self.name, peer.instance, self.instance),
    }),
  );
  self.db.installOutbound(
    new OutboundSa({
      ...common,
      ...outKey,
      spi: spiFor(keyId, self.name, peer.name, self.instance, peer.instance),
    }),
  );
}

describe("per-pair SAs between two nodes", () => {
  it("derive independently, interoperate, and rotate 15 -> 1 without loss", () => {
    const a = node("node-a");
    const b = node("node-b");
    for (const n of [a, b]) for (const e of [15, 16]) n.keys.set(e, generateKeyPair(randomBytes));
    const inner = ipv4Packet("10.244.1.2", "10.244.2.3", IPPROTO_UDP, Buffer.from("payload"));
    const send = (from: Node, to: Node): number => {
      const e = encapsulate(from.db.outbound(to.name)!, inner, 0);
      assert.ok(e.ok);
      const d = decapsulate(to.db, e.packet, 0);
      assert.ok(d.ok, d.ok ? "" : d.reason);
      assert.deepEqual(d.inner, inner);
      return d.sa.keyId;
    };

    prepare(a, b, 15);
    prepare(b, a, 15);
    a.db.activateOutbound("node-b", 15);
    b.db.activateOutbound("node-a", 15);
    assert.equal(send(a, b), 15);
    assert.equal(send(b, a), 15);

    // Rotation to epoch 16 = key ID 1. prepare on both, then switch one side at a time.
    prepare(a, b, 16);
    prepare(b, a, 16);
    a.db.activateOutbound("node-b", 1);
    assert.equal(send(a, b), 1, "b already receives the new key");
    assert.equal(send(b, a), 15, "a still receives the old key");
    b.db.activateOutbound("node-a", 1);
    assert.equal(send(b, a), 1);

    // retire
    assert.equal(a.db.removeKeyId(15), 2);
    assert.equal(b.db.removeKeyId(15), 2);
    assert.equal(send(a, b), 1);
    assert.equal(send(b, a), 1);
    for (const n of [a, b]) {
      assert.deepEqual(n.db.keyIds(), [1]);
      assert.equal(
        Object.values(n.db.drops.snapshot()).reduce((x, y) => x + y, 0),
        0,
        "no drops",
      );
    }
  });
});
