/**
 * The inbound half of the userspace WireGuard data path (wireguard-go's device/receive.go). A
 * batch, in order:
 *   1. the UDP socket is readable: recvmmsg fills the RX arena (with UDP GRO, a buffer holds a run
 *      of datagrams split here without copying) (the shared batch loop, ../userspace/tun-udp.ts);
 *   2. each datagram is classified by type: a data message whose receiver index
 *      `core.receiveKeypair` knows is queued with its key (unknown: "unknown-index"); handshake and
 *      cookie messages (types 1-3) go to `core.handleControl`; anything else is "malformed";
 *   3. the open batch (native ChaCha20-Poly1305) decrypts the queued messages in place
 *      (tag wrong: "auth-failed");
 *   4. `core.acceptCounter` (replay window) -> refused: "replay";
 *   5. the inner IP header gives the packet's length ("malformed" if it does not fit), and
 *      `core.sourceAllowed` checks its source against the peer's allowed IPs ("bad-source"); an
 *      empty plaintext is a keepalive;
 *   6. the TUN write batch delivers the packets -> `dataReceived` once per peer and keypair, with
 *      the endpoint it came from; `core.tick` after the wake-up.
 */
import { isInterfaceGoneErrno } from "../../platform/tun/tun-device.js";
import { ENDPOINT_ENTRY_SIZE, decodeEndpoint } from "../../platform/udp/batch-udp-socket.js";
import type { DatapathPeer, Endpoint, TransportKeypair } from "../../wireguard/contract.js";
import { TRUNCATED, runBatches } from "../userspace/tun-udp.js";
import {
  HEADER,
  MESSAGE_DATA,
  RX_PENDING,
  RxBuffers,
  TAG,
  findGroup,
  nativeAddon,
  type Group,
} from "./buffers.js";
import type { PathState } from "./path.js";

/** See the file comment. */
export class Inbound {
  private readonly rx: RxBuffers;
  private readonly groups: Group[] = [];
  private readonly lastFromByPeer = new Map<DatapathPeer, { entry: Buffer; endpoint: Endpoint }>();
  // The data messages queued for the next open batch, and their distinct keys.
  private count = 0;
  private keyCount = 0;
  private lastKeypair: TransportKeypair | undefined;
  private lastKeyIndex = 0;

  /** `batch` datagrams per recvmmsg (fewer, larger buffers with `gro`). */
  constructor(
    private readonly path: PathState,
    batch: number,
    gro: boolean,
  ) {
    this.rx = new RxBuffers(batch, gro);
  }

  /** The UDP socket is readable (`status` < 0: it reported an error). */
  onUdpReadable(status: number): void {
    const path = this.path;
    if (path.closed) return;
    if (status < 0) {
      path.logger.warn({ errno: -status }, "UDP socket error");
      return;
    }
    const udp = path.udp!;
    const rx = this.rx;
    const failed = runBatches(
      rx.messages,
      () => !path.closed && path.udp === udp,
      () => {
        rx.segments.fill(0);
        return udp.recvBatch(
          rx.arena,
          rx.slot,
          0,
          rx.slot,
          rx.messages,
          rx.lengths,
          rx.from,
          udp.gro ? rx.segments : undefined,
        );
      },
      (n) => {
        path.stats.udpBatches++;
        this.receive(n);
      },
    );
    if (failed < 0) path.logger.warn({ errno: -failed }, "UDP receive failed");
    path.core.tick(path.clock.now());
  }

  private receive(n: number): void {
    const now = this.path.clock.now();
    const rx = this.rx;
    const slot = rx.slot;
    this.count = 0;
    this.keyCount = 0;
    this.lastKeypair = undefined;
    for (let i = 0; i < n; i++) {
      const base = i * slot;
      const total = rx.lengths[i]!;
      if (total === TRUNCATED) {
        this.path.drop("malformed");
        continue;
      }
      const seg = rx.segments[i]!;
      if (seg === 0) {
        this.classify(base, total, i, now);
      } else {
        // A UDP GRO buffer: datagrams of `seg` bytes back to back, the last one maybe shorter.
        this.path.stats.groBuffers++;
        for (let o = 0; o < total; o += seg) this.classify(base + o, Math.min(seg, total - o), i, now);
      }
    }
    if (this.count > 0) this.openAndDeliver(this.count, this.keyCount, now);
  }

  /** Sorts one received datagram: data messages are queued for the open batch, handshakes go to the core. */
  private classify(off: number, len: number, from: number, now: number): void {
    const path = this.path;
    const rx = this.rx;
    const arena = rx.arena;
    if (len < 4) {
      path.drop("malformed");
      return;
    }
    const type = arena.readUInt32LE(off);
    if (type === MESSAGE_DATA) {
      if (len < HEADER + TAG) {
        path.drop("malformed");
        return;
      }
      const found = path.core.receiveKeypair(arena.readUInt32LE(off + 4), now);
      if (found === undefined) {
        path.drop("unknown-index");
        return;
      }
      if (found.keypair !== this.lastKeypair) {
        this.lastKeypair = found.keypair;
        this.lastKeyIndex = this.keyCount;
        found.keypair.recvKey.copy(rx.keys, 32 * this.keyCount++);
      }
      const count = this.count++;
      rx.offsets[count] = off;
      rx.openLengths[count] = len;
      rx.messageLengths[count] = len;
      rx.keyIndex[count] = this.lastKeyIndex;
      rx.slotOf[count] = from;
      rx.peers[count] = found.peer;
      rx.keypairs[count] = found.keypair;
      if (this.count === RX_PENDING) {
        this.openAndDeliver(this.count, this.keyCount, now);
        this.count = 0;
        this.keyCount = 0;
        this.lastKeypair = undefined;
      }
    } else if (type === 1 || type === 2 || type === 3) {
      path.stats.controlReceived++;
      const endpoint = decodeEndpoint(rx.from, ENDPOINT_ENTRY_SIZE * from);
      path.core.handleControl(Buffer.from(arena.subarray(off, off + len)), endpoint, now);
    } else {
      path.drop("malformed");
    }
  }

  private openAndDeliver(count: number, keys: number, now: number): void {
    const path = this.path;
    const core = path.core;
    const rx = this.rx;
    const arena = rx.arena;
    nativeAddon().openBatch(
      arena,
      rx.offsets,
      rx.openLengths,
      rx.keys,
      rx.keyIndex,
      rx.counters,
      rx.ok,
      count,
    );
    rx.keys.fill(0, 0, 32 * keys);
    const groups = this.groups;
    groups.length = 0;
    let writes = 0;
    for (let k = 0; k < count; k++) {
      const peer = rx.peers[k]!;
      if (rx.ok[k] !== 1) {
        path.drop("auth-failed", peer);
        continue;
      }
      const keypair = rx.keypairs[k]!;
      if (!core.acceptCounter(keypair, rx.counters[k]!)) {
        path.drop("replay", peer);
        continue;
      }
      const plain = rx.openLengths[k]!;
      const ip = rx.offsets[k]! + HEADER;
      let ipLength = 0;
      if (plain > 0) {
        const version = arena[ip]! >> 4;
        if (version === 4 && plain >= 20) ipLength = arena.readUInt16BE(ip + 2);
        else if (version === 6 && plain >= 40) ipLength = 40 + arena.readUInt16BE(ip + 4);
        if (ipLength === 0 || ipLength > plain || (version === 4 && ipLength < 20)) {
          path.drop("malformed", peer);
          continue;
        }
        if (!core.sourceAllowed(peer, arena, ip, ipLength)) {
          path.drop("bad-source", peer);
          continue;
        }
        rx.writeOffsets[writes] = ip;
        rx.writeLengths[writes] = ipLength;
        writes++;
      } else {
        path.stats.keepalivesReceived++;
      }
      let g = groups.length > 0 ? groups[groups.length - 1] : undefined;
      if (g === undefined || g.peer !== peer || g.keypair !== keypair) g = findGroup(groups, peer, keypair);
      g.bytes += rx.messageLengths[k]!;
      g.plaintext += ipLength;
      g.lastFrom = rx.slotOf[k]!;
      path.stats.rxPackets++;
    }
    rx.peers.length = 0;
    rx.keypairs.length = 0;
    if (writes > 0) {
      const written = path.tun!.writeBatch(arena, rx.writeOffsets, rx.writeLengths, writes);
      if (written < 0) {
        if (isInterfaceGoneErrno(written)) path.interfaceGone(written);
        path.stats.tunWriteErrors += writes;
      } else {
        path.stats.tunWriteErrors += writes - written;
      }
    }
    for (const g of groups) {
      g.peer.rxBytes += g.bytes;
      path.stats.rxBytes += g.bytes;
      core.dataReceived(g.peer, g.keypair!, this.endpointOf(g.peer, g.lastFrom), g.plaintext, now);
    }
  }

  /** The Endpoint of `from` entry `i`, reusing the peer's last object while the address is unchanged. */
  private endpointOf(peer: DatapathPeer, i: number): Endpoint {
    const from = this.rx.from;
    const at = ENDPOINT_ENTRY_SIZE * i;
    const last = this.lastFromByPeer.get(peer);
    if (
      last !== undefined &&
      from.compare(last.entry, 0, ENDPOINT_ENTRY_SIZE, at, at + ENDPOINT_ENTRY_SIZE) === 0
    )
      return last.endpoint;
    const entry = Buffer.from(from.subarray(at, at + ENDPOINT_ENTRY_SIZE));
    const endpoint = decodeEndpoint(entry, 0);
    this.lastFromByPeer.set(peer, { entry, endpoint });
    return endpoint;
  }
}
