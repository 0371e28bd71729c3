/**
 * The buffers of the userspace WireGuard data path, allocated once when it is created, and what
 * the batches around them share. Per batch, in order:
 *   1. outbound: a TUN read lands in a {@link TxBuffers} slot behind room for the message header,
 *      the seal batch writes header, ciphertext, padding and tag in place, sendmmsg sends the slots;
 *   2. inbound: recvmmsg (or one UDP GRO buffer) fills {@link RxBuffers} slots, data messages are
 *      queued (up to {@link RX_PENDING}) with their keys, the open batch decrypts them in place and
 *      the TUN write batch takes the plaintext where it lies;
 *   3. after each batch, the packets are grouped per peer ({@link Group}) so the core hears one
 *      `dataSent` / `dataReceived` per peer and keypair, not one per packet;
 *   4. keys copied into a batch's key table are zeroed once the batch is sealed or opened.
 */
import { native, type NativeAddon } from "../../native.js";
import { ENDPOINT_ENTRY_SIZE } from "../../platform/udp/batch-udp-socket.js";
import type { DatapathPeer, DropReason, TransportKeypair } from "../../wireguard/contract.js";
import { READ_CAPACITY, RX_CAPACITY, roundUp } from "../userspace/tun-udp.js";

/** WireGuard data message header: type (1) | reserved (3) | receiver index (4) | counter (8). */
export const HEADER = 16;
/** Poly1305 tag. */
export const TAG = 16;
/** Room after a plaintext packet: padding to 16 (at most 15) and the tag. */
export const TAILROOM = 16 + TAG;
export const MESSAGE_DATA = 4;
/** Receive buffer size with UDP GRO: the largest UDP payload, rounded up. */
const GRO_CAPACITY = 65536;
/** Data messages opened per openBatch call (a GRO buffer can hold dozens). */
export const RX_PENDING = 512;

/** Every drop reason, in the order counters list them. */
export const DROP_REASONS: readonly DropReason[] = [
  "no-route",
  "no-endpoint",
  "no-keypair",
  "unknown-index",
  "auth-failed",
  "replay",
  "expired-keypair",
  "bad-source",
  "malformed",
  "cookie-required",
  "handshake-failed",
];

/** The outbound arena: slot i holds [header 16][plaintext < READ_CAPACITY][padding + tag]. */
export class TxBuffers {
  readonly slot = roundUp(HEADER + READ_CAPACITY + TAILROOM, 64);
  readonly arena: Buffer;
  readonly readLengths: Uint32Array;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly plain: Uint32Array;
  readonly keyIndex: Uint32Array;
  readonly receivers: Uint32Array;
  readonly counters: Float64Array;
  readonly endpointIndex: Uint32Array;
  readonly keys: Buffer;
  readonly endpoints: Buffer;
  readonly peers: DatapathPeer[] = [];

  /** Room for `n` packets (the batch size). */
  constructor(n: number) {
    this.arena = Buffer.alloc(this.slot * n);
    this.readLengths = new Uint32Array(n);
    this.offsets = new Uint32Array(n);
    this.lengths = new Uint32Array(n);
    this.plain = new Uint32Array(n);
    this.keyIndex = new Uint32Array(n);
    this.receivers = new Uint32Array(n);
    this.counters = new Float64Array(n);
    this.endpointIndex = new Uint32Array(n);
    this.keys = Buffer.alloc(32 * n);
    this.endpoints = Buffer.alloc(ENDPOINT_ENTRY_SIZE * n);
  }
}

/** The inbound arena: slot i holds one received datagram (or one GRO buffer of them). */
export class RxBuffers {
  readonly slot: number;
  readonly messages: number;
  readonly arena: Buffer;
  readonly lengths: Uint32Array;
  readonly segments: Uint32Array;
  readonly from: Buffer;
  readonly offsets = new Uint32Array(RX_PENDING);
  readonly openLengths = new Uint32Array(RX_PENDING);
  readonly messageLengths = new Uint32Array(RX_PENDING);
  readonly keyIndex = new Uint32Array(RX_PENDING);
  readonly counters = new Float64Array(RX_PENDING);
  readonly ok = new Uint8Array(RX_PENDING);
  readonly keys = Buffer.alloc(32 * RX_PENDING);
  readonly slotOf = new Uint32Array(RX_PENDING);
  readonly writeOffsets = new Uint32Array(RX_PENDING);
  readonly writeLengths = new Uint32Array(RX_PENDING);
  readonly peers: DatapathPeer[] = [];
  readonly keypairs: TransportKeypair[] = [];

  /** Room for `n` datagrams (the batch size); with GRO a buffer holds up to 64 KiB, so fewer buffers. */
  constructor(n: number, gro: boolean) {
    this.slot = gro ? GRO_CAPACITY : roundUp(RX_CAPACITY, 64);
    this.messages = gro ? Math.min(n, 64) : n;
    this.arena = Buffer.alloc(this.slot * this.messages);
    this.lengths = new Uint32Array(this.messages);
    this.segments = new Uint32Array(this.messages);
    this.from = Buffer.alloc(ENDPOINT_ENTRY_SIZE * this.messages);
  }
}

/** The packets of one batch that belong to one peer (and, inbound, one keypair). */
export interface Group {
  peer: DatapathPeer;
  keypair: TransportKeypair | undefined;
  bytes: number;
  plaintext: number;
  lastFrom: number;
}

/** The group of `peer` / `keypair` in `groups`, added when missing. */
export function findGroup(groups: Group[], peer: DatapathPeer, keypair: TransportKeypair | undefined): Group {
  for (const g of groups) if (g.peer === peer && g.keypair === keypair) return g;
  const g: Group = { peer, keypair, bytes: 0, plaintext: 0, lastFrom: 0 };
  groups.push(g);
  return g;
}

let addon: NativeAddon | undefined;
/** The native addon (batched AEAD), loaded on first use. */
export function nativeAddon(): NativeAddon {
  addon ??= native();
  return addon;
}

/** Seals the one message at offset 0 of `arena` (a keepalive: `lengths[0]` is its plaintext length). */
export function nativeSealOne(
  arena: Buffer,
  lengths: Uint32Array,
  key: Buffer,
  receiver: number,
  counter: number,
  mtu: number,
): void {
  nativeAddon().sealBatch(
    arena,
    new Uint32Array([0]),
    lengths,
    key,
    new Uint32Array([0]),
    new Uint32Array([receiver]),
    new Float64Array([counter]),
    mtu,
    1,
  );
}
