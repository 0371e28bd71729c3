/**
 * The outbound half of the userspace WireGuard data path (wireguard-go's device/send.go). A batch,
 * in order:
 *   1. the TUN fd is readable: up to `batchSize` packets are read into the TX arena, behind room
 *      for the message header (the shared batch loop, ../userspace/tun-udp.ts);
 *   2. each packet: not IPv4/IPv6 or too long -> dropped "malformed";
 *   3. `core.peerForDestination` (allowed IPs) -> none: dropped "no-route";
 *   4. the peer's endpoint -> none: dropped "no-endpoint";
 *   5. `core.sendKeypair` -> none: the packet is staged until a handshake completes (staged.ts);
 *   6. the seal batch (native ChaCha20-Poly1305) writes header, padding and tag in place;
 *   7. sendmmsg (UDP GSO for runs to one peer) -> `dataSent` once per peer; `core.tick` after the
 *      wake-up.
 * Outside the batch: `keypairReady` sends what was staged for a peer through steps 2-7,
 * `sendKeepalive` seals and sends one empty data message, `transmit` sends the core's handshake
 * and cookie messages verbatim.
 */
import { isInterfaceGoneErrno } from "../../platform/tun/tun-device.js";
import { BatchSender, ENDPOINT_ENTRY_SIZE, encodeEndpoint } from "../../platform/udp/batch-udp-socket.js";
import type { DatapathPeer, Endpoint, TransportKeypair } from "../../wireguard/contract.js";
import { READ_CAPACITY, RX_CAPACITY, TunContinuation, runBatches } from "../userspace/tun-udp.js";
import { HEADER, TAILROOM, TxBuffers, findGroup, nativeAddon, nativeSealOne, type Group } from "./buffers.js";
import type { PathState } from "./path.js";
import type { StagedQueue } from "./staged.js";

/** See the file comment. */
export class Outbound {
  private readonly tx: TxBuffers;
  private readonly groups: Group[] = [];
  /** True while a batch is in the TX arena (a keypair-ready flush must wait for it). */
  private busy = false;
  /** The rest of a super-segment the last batch had no room for: read on the next turn. */
  private readonly continuation = new TunContinuation(() => this.onTunReadable(0));

  // Single-datagram path (core transmit, keepalives).
  private readonly ctlArena = Buffer.alloc(RX_CAPACITY + HEADER + TAILROOM);
  private readonly ctlEndpoint = Buffer.alloc(ENDPOINT_ENTRY_SIZE);
  private readonly one = {
    offsets: new Uint32Array(1),
    lengths: new Uint32Array(1),
    index: new Uint32Array(1),
  };

  constructor(
    private readonly path: PathState,
    private readonly staged: StagedQueue,
    private readonly sender: BatchSender,
    private readonly batch: number,
  ) {
    this.tx = new TxBuffers(batch);
  }

  /** The TUN fd is readable (`status` < 0: it failed). */
  onTunReadable(status: number): void {
    const path = this.path;
    if (path.closed) return;
    if (status < 0) {
      path.interfaceGone(status);
      return;
    }
    const tun = path.tun!;
    const tx = this.tx;
    const failed = runBatches(
      this.batch,
      () => !path.closed,
      () => tun.readBatch(tx.arena, tx.slot, HEADER, READ_CAPACITY, this.batch, tx.readLengths),
      (n) => {
        path.stats.tunBatches++;
        this.send(n);
      },
    );
    if (failed < 0) {
      if (isInterfaceGoneErrno(failed)) path.interfaceGone(failed);
      else path.logger.warn({ errno: -failed }, "TUN read failed");
      return;
    }
    this.continuation.after(tun);
    path.core.tick(path.clock.now());
  }

  /** Routes, seals and sends the `n` packets in TX arena slots (lengths in `readLengths`). */
  private send(n: number): void {
    const path = this.path;
    const udp = path.udp;
    if (udp === undefined) return;
    this.busy = true;
    const tx = this.tx;
    try {
      const now = path.clock.now();
      const arena = tx.arena;
      const slot = tx.slot;
      const core = path.core;
      let count = 0;
      let keys = 0;
      let endpoints = 0;
      let lastPeer: DatapathPeer | undefined;
      let lastKeypair: TransportKeypair | undefined;
      let lastKeyIndex = 0;
      let lastEndpointIndex = 0;
      let lastEndpoint: Endpoint | undefined;
      for (let i = 0; i < n; i++) {
        const off = i * slot;
        const len = tx.readLengths[i]!;
        const version = len > 0 ? arena[off + HEADER]! >> 4 : 0;
        if (len >= READ_CAPACITY || ((version !== 4 || len < 20) && (version !== 6 || len < 40))) {
          path.drop("malformed");
          continue;
        }
        const peer = core.peerForDestination(arena, off + HEADER, len);
        if (peer === undefined) {
          path.drop("no-route");
          continue;
        }
        const ep = peer.endpoint;
        if (ep === undefined) {
          path.drop("no-endpoint", peer);
          continue;
        }
        let kp: TransportKeypair | undefined;
        if (peer === lastPeer) {
          kp = lastKeypair;
        } else {
          kp = core.sendKeypair(peer, now);
          lastPeer = peer;
          lastKeypair = kp;
          if (kp !== undefined) {
            lastKeyIndex = keys;
            kp.sendKey.copy(tx.keys, 32 * keys++);
          }
        }
        if (kp === undefined) {
          this.staged.stage(peer, arena.subarray(off + HEADER, off + HEADER + len));
          continue;
        }
        if (ep !== lastEndpoint) {
          if (!encodeEndpoint(ep.address, ep.port, tx.endpoints, ENDPOINT_ENTRY_SIZE * endpoints)) {
            path.drop("no-endpoint", peer);
            continue;
          }
          lastEndpoint = ep;
          lastEndpointIndex = endpoints++;
        }
        tx.offsets[count] = off;
        tx.lengths[count] = len;
        tx.plain[count] = len;
        tx.keyIndex[count] = lastKeyIndex;
        tx.receivers[count] = kp.remoteIndex;
        tx.counters[count] = kp.sendCounter++;
        tx.endpointIndex[count] = lastEndpointIndex;
        tx.peers[count] = peer;
        count++;
      }
      if (count === 0) return;
      nativeAddon().sealBatch(
        arena,
        tx.offsets,
        tx.lengths,
        tx.keys,
        tx.keyIndex,
        tx.receivers,
        tx.counters,
        path.mtu,
        count,
      );
      tx.keys.fill(0, 0, 32 * keys);
      const sent = this.sender.send(
        udp,
        arena,
        tx.offsets,
        tx.lengths,
        tx.endpoints,
        tx.endpointIndex,
        count,
      );
      if (sent < 0) {
        path.logger.warn({ errno: -sent }, "UDP send failed");
        path.stats.sendErrors += count;
        return;
      }
      // sendmmsg reports a count, not which ones failed: credit the first `sent` (all, normally).
      path.stats.sendErrors += count - sent;
      const groups = this.groups;
      groups.length = 0;
      for (let k = 0; k < sent; k++) {
        const peer = tx.peers[k]!;
        const bytes = tx.lengths[k]!;
        let g = groups.length > 0 ? groups[groups.length - 1] : undefined;
        if (g === undefined || g.peer !== peer) g = findGroup(groups, peer, undefined);
        g.bytes += bytes;
        g.plaintext += tx.plain[k]!;
      }
      path.stats.txPackets += sent;
      for (const g of groups) {
        g.peer.txBytes += g.bytes;
        path.stats.txBytes += g.bytes;
        core.dataSent(g.peer, g.plaintext, now);
      }
    } finally {
      this.busy = false;
      tx.peers.length = 0;
    }
  }

  /** The core has a sending keypair for `peer`: what was staged for it leaves now, in batches. */
  keypairReady(peer: DatapathPeer): void {
    if (this.path.closed || !this.staged.has(peer)) return;
    // The core may report readiness from inside sendKeypair (while the TX arena is in use).
    if (this.busy) {
      setImmediate(() => this.keypairReady(peer));
      return;
    }
    const queue = this.staged.take(peer)!;
    const tx = this.tx;
    const capacity = tx.slot - HEADER - TAILROOM;
    for (let start = 0; start < queue.length && !this.path.closed; start += this.batch) {
      const end = Math.min(queue.length, start + this.batch);
      let n = 0;
      for (let j = start; j < end; j++) {
        const packet = queue[j]!;
        if (packet.length > capacity) {
          this.path.drop("malformed", peer);
          continue;
        }
        packet.copy(tx.arena, n * tx.slot + HEADER);
        tx.readLengths[n++] = packet.length;
      }
      this.send(n);
    }
  }

  /**
   * Sends a keepalive (an empty data message) to `peer` now. Returns false when the peer has no
   * endpoint or no sending keypair (the core may have started a handshake then).
   */
  sendKeepalive(peer: DatapathPeer): boolean {
    const path = this.path;
    const udp = path.udp;
    if (udp === undefined || path.closed) return false;
    const ep = peer.endpoint;
    if (ep === undefined) return false;
    const now = path.clock.now();
    const kp = path.core.sendKeypair(peer, now);
    if (kp === undefined) return false;
    if (!encodeEndpoint(ep.address, ep.port, this.ctlEndpoint, 0)) return false;
    const one = this.one;
    one.offsets[0] = 0;
    one.lengths[0] = 0;
    one.index[0] = 0;
    const counter = kp.sendCounter++;
    nativeSealOne(this.ctlArena, one.lengths, kp.sendKey, kp.remoteIndex, counter, path.mtu);
    const sent = udp.sendBatch(this.ctlArena, one.offsets, one.lengths, this.ctlEndpoint, one.index, 1);
    if (sent !== 1) {
      path.stats.sendErrors++;
      return false;
    }
    peer.txBytes += one.lengths[0]!;
    path.stats.txBytes += one.lengths[0]!;
    path.stats.keepalivesSent++;
    path.core.dataSent(peer, 0, now);
    return true;
  }

  /** Sends one message of the core (handshake, cookie reply) to `to`, verbatim. */
  transmit(to: Endpoint, message: Buffer): void {
    const path = this.path;
    const udp = path.udp;
    if (udp === undefined || path.closed) return;
    if (message.length === 0 || message.length > this.ctlArena.length) return;
    if (!encodeEndpoint(to.address, to.port, this.ctlEndpoint, 0)) {
      path.stats.sendErrors++;
      return;
    }
    message.copy(this.ctlArena, 0);
    const one = this.one;
    one.offsets[0] = 0;
    one.lengths[0] = message.length;
    one.index[0] = 0;
    const sent = udp.sendBatch(this.ctlArena, one.offsets, one.lengths, this.ctlEndpoint, one.index, 1);
    if (sent === 1) path.stats.controlSent++;
    else path.stats.sendErrors++;
  }
}
