/**
 * The SAs one node installs for one peer in one epoch: outbound self -> peer and inbound peer ->
 * self, each keyed by `deriveEspKey` from this node's private key of the epoch, the peer's public
 * key of the same epoch and both nodes' SA instances, SPI from `spiFor`, key ID from
 * `keyIdForEpoch`. The peer computes the same two SAs with the roles swapped.
 */
import { deriveEspKey, keyIdForEpoch, spiFor } from "./derive.js";

/**
 * One direction of a peer's SA as derived: RFC 4106 key material (16-byte AES key, 4-byte salt) in
 * hex, the form in which both IPsec data planes take it (the userspace daemon's `set`, the XFRM
 * state's `rfc4106(gcm(aes))` key).
 */
export interface PeerSa {
  direction: "in" | "out";
  peer: string;
  /** Key ID of the epoch (`keyIdForEpoch`), also in the SPI's top bits. */
  keyId: number;
  spi: number;
  key: string;
  salt: string;
  /** Outbound only: the sequence number from which the SA asks for an early rotation. */
  rekeyAfter?: number;
}

export interface PeerSaInput {
  /** This node's name. */
  self: string;
  /** The peer's node name. */
  peer: string;
  epoch: number;
  /** This node's X25519 private key of `epoch` (32 bytes). Not retained. */
  privateKey: Buffer;
  /** The peer's X25519 public key of `epoch` (32 bytes). */
  peerPublicKey: Buffer;
  /** This node's current SA instance (src/keys/derive.ts). */
  selfInstance: string;
  /** The peer's current SA instance, as it published it. */
  peerInstance: string;
  /** Sequence number from which the outbound SA asks for an early rotation (default: the SA's own). */
  rekeyAfter?: number;
}

/** `[inbound, outbound]` SA configurations for `peer` in `epoch`, ready for a `set`. */
export function peerSas(i: PeerSaInput): [PeerSa, PeerSa] {
  const keyId = keyIdForEpoch(i.epoch);
  const out = deriveEspKey({
    localPrivateKey: i.privateKey,
    remotePublicKey: i.peerPublicKey,
    sender: i.self,
    receiver: i.peer,
    senderInstance: i.selfInstance,
    receiverInstance: i.peerInstance,
    epoch: i.epoch,
  });
  const inb = deriveEspKey({
    localPrivateKey: i.privateKey,
    remotePublicKey: i.peerPublicKey,
    sender: i.peer,
    receiver: i.self,
    senderInstance: i.peerInstance,
    receiverInstance: i.selfInstance,
    epoch: i.epoch,
  });
  const sa = (direction: "in" | "out", spi: number, m: { key: Buffer; salt: Buffer }): PeerSa => ({
    direction,
    peer: i.peer,
    keyId,
    spi,
    key: m.key.toString("hex"),
    salt: m.salt.toString("hex"),
  });
  const result: [PeerSa, PeerSa] = [
    sa("in", spiFor(keyId, i.peer, i.self, i.peerInstance, i.selfInstance), inb),
    {
      ...sa("out", spiFor(keyId, i.self, i.peer, i.selfInstance, i.peerInstance), out),
      ...(i.rekeyAfter === undefined ? {} : { rekeyAfter: i.rekeyAfter }),
    },
  ];
  out.key.fill(0);
  out.salt.fill(0);
  inb.key.fill(0);
  inb.salt.fill(0);
  return result;
}
