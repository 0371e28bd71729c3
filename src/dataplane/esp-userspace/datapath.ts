/**
 * The packet path of the userspace ESP daemon: a TUN interface and a UDP socket (port 4500 by
 * default, RFC 3948), batched I/O through the native addon, and the pure ESP core (src/esp) for
 * every decision.
 *
 * The TUN device has offloads unless `offload` is false or the kernel refuses them (logged once):
 * IFF_VNET_HDR with TSO, as the WireGuard data path has it, through the same shared code
 * (TunDevice, ../userspace/tun-udp.ts, native/offload.cc). The kernel hands a TCP stream over in
 * super-segments of up to 64 KiB, which the read cuts into MTU-sized packets (headers and checksums
 * as the kernel's own segmentation makes them), so one read brings tens of packets; the TUN write
 * joins each run of one flow's segments back into one GRO super-packet. Everything between sees
 * single IP packets, with or without offloads.
 *
 * Outbound: TUN batch (each packet, or segment of a super-segment, 16 bytes into its slot, room for
 * the ESP header; the rest of a super-segment the slots had no room for comes first in the next
 * batch) -> peer owning the inner destination (longest prefix match) -> the peer's active outbound
 * SA and its next sequence number, one per packet, taken before sealing and never given back (a
 * packet dropped or not sent after that leaves a gap, never a repeat) -> one native AES-GCM call
 * seals the whole batch in place (native/esp.cc) -> sendmmsg (UDP GSO for runs to one peer) to the
 * peer's endpoint. No peer or no active SA: the packet is dropped and counted, never sent in
 * plaintext.
 * Inbound: recvmmsg -> RFC 3948 classification, SA by SPI, replay check (before the ICV, RFC 4303
 * section 3.4.3) -> one native call verifies and decrypts the batch in place -> per packet: ICV
 * failures dropped and counted, replay window update, trailer checks (`openTrailer`), the inner
 * source must lie in the allowed CIDRs of the SA's peer -> only the packets that passed are queued
 * for the TUN write batch, straight from the receive buffers (with offloads, runs of one TCP flow
 * coalesced into one write). An SPI shared by several SAs (a collision across key generations)
 * goes through `receiveDatagram`, which lets the ICV choose.
 */
import { EventEmitter } from "node:events";
import { systemClock, type Clock } from "../../clock.js";
import { PodcryptError } from "../../errors/index.js";
import { NEXT_HEADER_IPV4, NEXT_HEADER_IPV6, openTrailer } from "../../esp/codec.js";
import type { InboundSa, OutboundSa } from "../../esp/sa.js";
import { classifyUdpPayloadAt, receiveDatagram, ESP_IN_UDP_PORT } from "../../esp/udp.js";
import type { Logger } from "../../log/logger.js";
import { native, type FdWatcher } from "../../native.js";
import { TunDevice, checkTunnelMtu, isInterfaceGoneErrno } from "../../platform/tun/tun-device.js";
import {
  BatchSender,
  BatchUdpSocket,
  ENDPOINT_ENTRY_SIZE,
  encodeEndpoint,
} from "../../platform/udp/batch-udp-socket.js";
import { logPollError } from "../../platform/poll/guard.js";
import {
  READ_CAPACITY,
  RX_CAPACITY,
  TRUNCATED,
  checkBatchSize,
  followTunMtu,
  openTunUdp,
  TunContinuation,
  roundUp,
  runBatches,
  takeTunUdp,
} from "../userspace/tun-udp.js";
import type { HandedFds } from "../../platform/handover/fds.js";
import type { EspPeer, EspState } from "./state.js";

/** Default tunnel MTU: 1500 minus outer IPv4 (20), UDP (8), ESP header+IV (16), trailer (<= 5), ICV (16), rounded down. */
export const DEFAULT_ESP_MTU = 1420;
/**
 * Packets per TUN read / recvmmsg / sendmmsg batch: as the WireGuard data path's, room for the
 * segments of a whole 64 KiB super-segment (46 at MTU 1420) with some to spare.
 */
export const DEFAULT_ESP_BATCH = 128;
/** Period of the interface-deleted check. */
export const ESP_TICK_MS = 100;
/** SPI, sequence number and IV before the encrypted payload. */
const ESP_HEADER = 16;
/** After the inner packet: padding (at most 3), pad length, next header, ICV (at most 16). */
const ESP_TAILROOM = 3 + 2 + 16;
/** Per SA in the native key table: 16-byte key || 4-byte salt; and SPI, ICV length, ESN. */
const KEYMAT = 20;
const KEYINFO = 3;

export interface EspDatapathOptions {
  ifname: string;
  state: EspState;
  logger: Logger;
  /** UDP port. Default 4500. */
  port?: number;
  /** Default {@link DEFAULT_ESP_MTU}. */
  mtu?: number;
  clock?: Clock;
  batchSize?: number;
  /** UDP GSO for runs of equal-sized datagrams to one peer. Default true (off by itself when refused). */
  gso?: boolean;
  /**
   * Open the TUN device with IFF_VNET_HDR and TCP segmentation offload (reads split, writes
   * coalesced: see the file comment). Falls back to the plain device, saying so once in the log,
   * when the kernel refuses the offloads. Default true.
   */
  offload?: boolean;
  /**
   * Make the TUN device persistent (TUNSETPERSIST): when the daemon ends, however (kill -9, a crash,
   * SIGTERM for a restart), the device stays with its addresses, routes and link state, the kernel
   * drops what is routed to it until a new daemon attaches (nothing leaks around it), and the new
   * daemon re-attaches by name. Only deleting the interface (`ip link del`) removes it. Default
   * false: the device goes away with the daemon.
   */
  persistent?: boolean;
}

export interface EspDatapathEvents {
  /** The TUN interface was deleted: the daemon should exit. Emitted once. */
  "interface-gone": [];
}

/** TUN + UDP + the ESP core. Create it in the network namespace its interface belongs to. */
export class EspDatapath extends EventEmitter<EspDatapathEvents> {
  readonly ifname: string;
  private readonly state: EspState;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly batch: number;
  private readonly sender: BatchSender;
  private mtuValue: number;
  private portValue: number;
  private tun: TunDevice | undefined;
  private udp: BatchUdpSocket | undefined;
  private tunWatcher: FdWatcher | undefined;
  private udpWatcher: FdWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Handed over ({@link freeze}): reads and sends nothing any more. */
  private frozen = false;
  private gone = false;
  private readonly persistent: boolean;
  private readonly offload: boolean;
  /** The rest of a super-segment the last batch had no room for: read on the next turn. */
  private readonly continuation = new TunContinuation(() => this.onTunReadable(0));

  // TUN reads land at slot i + ESP_HEADER (READ_CAPACITY each whatever the MTU) and are sealed
  // there in place, the ESP header written in front and the trailer and ICV after them.
  private readonly txSlot = roundUp(ESP_HEADER + READ_CAPACITY + ESP_TAILROOM, 64);
  private readonly txArena: Buffer;
  private readonly readLengths: Uint32Array;
  private readonly txOffsets: Uint32Array;
  private readonly txLengths: Uint32Array;
  private readonly txNextHeaders: Uint8Array;
  private readonly txKeyIndex: Uint32Array;
  private readonly txSeqs: Float64Array;
  private readonly txKeys: Buffer;
  private readonly txKeyInfo: Uint32Array;
  private readonly txEndpointIndex: Uint32Array;
  private readonly txEndpoints: Buffer;
  private readonly txPeers: EspPeer[] = [];
  private readonly txInner: Uint32Array;
  // Datagrams received, opened in place; the inner packets are written to TUN from there.
  private readonly rxSlot = roundUp(RX_CAPACITY, 64);
  private readonly rxArena: Buffer;
  private readonly rxLengths: Uint32Array;
  private readonly rxFrom: Buffer;
  // The batch being opened: receive slot offsets, lengths, SAs, sequence numbers, key table.
  private readonly openOffsets: Uint32Array;
  private readonly openLengths: Uint32Array;
  private readonly openKeyIndex: Uint32Array;
  private readonly openSeqs: Float64Array;
  private readonly openOk: Uint8Array;
  private readonly openKeys: Buffer;
  private readonly openKeyInfo: Uint32Array;
  private readonly openSas: InboundSa[] = [];
  private openCount = 0;
  private openKeyCount = 0;
  private openLastSa: InboundSa | undefined;
  private readonly wOffsets: Uint32Array;
  private readonly wLengths: Uint32Array;
  private writes = 0;
  /** Counts and logs an exception caught in the TUN or UDP readiness callback (its batch is lost). */
  private readonly onCallbackError = (error: unknown): void => {
    logPollError(this.logger, "esp datapath", ++this.state.counters.callbackErrors, error);
  };

  constructor(o: EspDatapathOptions) {
    super();
    this.ifname = o.ifname;
    this.state = o.state;
    this.logger = o.logger;
    this.clock = o.clock ?? systemClock;
    this.batch = o.batchSize ?? DEFAULT_ESP_BATCH;
    this.persistent = o.persistent ?? false;
    this.offload = o.offload ?? true;
    this.sender = new BatchSender(o.gso ?? true, this.logger);
    this.mtuValue = o.mtu ?? DEFAULT_ESP_MTU;
    this.portValue = o.port ?? ESP_IN_UDP_PORT;
    checkBatchSize(this.batch);
    checkTunnelMtu(this.mtuValue);
    if (!Number.isInteger(this.portValue) || this.portValue < 0 || this.portValue > 65535)
      throw new PodcryptError("EINVAL", "port must be 0..65535", { context: { port: this.portValue } });
    const n = this.batch;
    this.txArena = Buffer.alloc(this.txSlot * n);
    this.readLengths = new Uint32Array(n);
    this.txOffsets = new Uint32Array(n);
    this.txLengths = new Uint32Array(n);
    this.txNextHeaders = new Uint8Array(n);
    this.txKeyIndex = new Uint32Array(n);
    this.txSeqs = new Float64Array(n);
    this.txKeys = Buffer.alloc(KEYMAT * n);
    this.txKeyInfo = new Uint32Array(KEYINFO * n);
    this.txEndpointIndex = new Uint32Array(n);
    this.txEndpoints = Buffer.alloc(ENDPOINT_ENTRY_SIZE * n);
    this.txInner = new Uint32Array(n);
    this.rxArena = Buffer.alloc(this.rxSlot * n);
    this.rxLengths = new Uint32Array(n);
    this.rxFrom = Buffer.alloc(ENDPOINT_ENTRY_SIZE * n);
    this.openOffsets = new Uint32Array(n);
    this.openLengths = new Uint32Array(n);
    this.openKeyIndex = new Uint32Array(n);
    this.openSeqs = new Float64Array(n);
    this.openOk = new Uint8Array(n);
    this.openKeys = Buffer.alloc(KEYMAT * n);
    this.openKeyInfo = new Uint32Array(KEYINFO * n);
    this.wOffsets = new Uint32Array(n);
    this.wLengths = new Uint32Array(n);
  }

  get port(): number {
    return this.portValue;
  }

  get mtu(): number {
    return this.mtuValue;
  }

  /**
   * The TUN device's offloads: whether it has them (false before `start()`) and the TCP
   * super-segments read and cut into packets so far.
   */
  tunOffload(): { offload: boolean; superSegments: number } {
    const tun = this.tun;
    return { offload: tun?.vnetHdr ?? false, superSegments: tun?.superSegments() ?? 0 };
  }

  /**
   * Opens the TUN interface (up, with the MTU) and the UDP socket; nothing stays open on failure.
   * With `handed` (a planned restart) it takes the old daemon's TUN device and UDP socket instead
   * (the same open files, their queues included: src/platform/handover/fds.ts); the device keeps
   * its MTU, link state and persistence.
   */
  start(handed?: HandedFds): void {
    if (this.tun !== undefined || this.closed)
      throw new PodcryptError("ESTATE", "ESP datapath already started");
    const { tun, udp } =
      handed !== undefined
        ? takeTunUdp(handed)
        : openTunUdp(
            this.ifname,
            { mtu: this.mtuValue, up: true, persistent: this.persistent, offload: this.offload },
            () => BatchUdpSocket.open(this.portValue),
            this.logger,
          );
    if (handed !== undefined) this.mtuValue = tun.mtu();
    this.tun = tun;
    this.udp = udp;
    this.portValue = udp.port;
    this.tunWatcher = tun.watch((status) => this.onTunReadable(status), this.onCallbackError);
    this.udpWatcher = udp.watch((status) => this.onUdpReadable(status), this.onCallbackError);
    this.timer = setInterval(() => {
      if (this.closed || this.tun === undefined) return;
      if (!this.tun.exists()) this.interfaceGone(0);
      else this.followMtu();
    }, ESP_TICK_MS);
    this.timer.unref();
    this.logger.info(
      { ifname: tun.name, port: this.portValue, mtu: this.mtuValue, tunOffload: tun.vnetHdr },
      "ESP datapath started",
    );
  }

  /**
   * Adopts an MTU set on the interface from outside (`ip link set mtu`, the agent) for status.
   * The buffers do not depend on it: every slot holds READ_CAPACITY bytes plus the ESP header,
   * trailer and ICV, whatever the MTU.
   */
  private followMtu(): void {
    this.mtuValue = followTunMtu(this.tun!, this.mtuValue, this.logger);
  }

  /** Changes the tunnel MTU, on the interface too. */
  setMtu(mtu: number): void {
    checkTunnelMtu(mtu);
    if (mtu === this.mtuValue) return;
    if (this.tun !== undefined && !this.closed) this.tun.setMtu(mtu);
    this.mtuValue = mtu;
  }

  /**
   * A planned restart: stops reading and sending for good (watchers and timer closed; nothing is
   * read, sealed or sent from here on) and returns the fds the successor takes. The fds stay open
   * until {@link close} (the successor must have taken them by then).
   */
  freeze(): HandedFds {
    const tun = this.tun;
    const udp = this.udp;
    if (tun === undefined || udp === undefined || this.closed || this.frozen)
      throw new PodcryptError("ESTATE", "ESP datapath is not running");
    this.frozen = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.tunWatcher?.close();
    this.udpWatcher?.close();
    this.tunWatcher = undefined;
    this.udpWatcher = undefined;
    return {
      pid: process.pid,
      tun: { fd: tun.fd, name: tun.name },
      udp: { fd: udp.fd, port: udp.port, family: udp.family, gro: udp.gro },
    };
  }

  /** Stops and closes the socket and the TUN fd (removing the interface unless it is persistent). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.tunWatcher?.close();
    this.udpWatcher?.close();
    this.udp?.close();
    this.tun?.close();
  }

  // ---- outbound ------------------------------------------------------------------------------

  private onTunReadable(status: number): void {
    if (this.closed || this.frozen) return;
    if (status < 0) {
      this.interfaceGone(status);
      return;
    }
    const tun = this.tun!;
    const failed = runBatches(
      this.batch,
      () => !this.closed && !this.frozen,
      () => tun.readBatch(this.txArena, this.txSlot, ESP_HEADER, READ_CAPACITY, this.batch, this.readLengths),
      (n) => this.outbound(n),
    );
    if (failed >= 0) {
      this.continuation.after(tun);
      return;
    }
    if (isInterfaceGoneErrno(failed)) this.interfaceGone(failed);
    else this.logger.warn({ errno: -failed }, "TUN read failed");
  }

  private outbound(n: number): void {
    const udp = this.udp;
    if (udp === undefined) return;
    const state = this.state;
    const arena = this.txArena;
    const now = this.clock.now();
    let count = 0;
    let endpoints = 0;
    let keys = 0;
    let lastPeer: EspPeer | undefined;
    let lastSa: OutboundSa | undefined;
    let lastKeyIndex = 0;
    let lastEndpointIndex = -1;
    for (let i = 0; i < n; i++) {
      const off = i * this.txSlot;
      const len = this.readLengths[i]!;
      if (len >= READ_CAPACITY) {
        state.drops.oversize++;
        continue;
      }
      if (len === 0) {
        // A TUN read with offloads that made no sense (native/offload.cc): nothing to send.
        state.db.drops.count("malformed");
        continue;
      }
      const peer = state.routes.lookupPacket(arena, off + ESP_HEADER, len, "dst");
      if (peer === undefined) {
        state.drops["no-route"]++;
        continue;
      }
      const sa = state.db.outbound(peer.name);
      if (sa === undefined) {
        state.drops["no-sa"]++;
        continue;
      }
      // Next Header from the inner version (RFC 4303 section 2.6); not IP: malformed.
      const version = arena[off + ESP_HEADER]! >> 4;
      const nextHeader =
        version === 4 && len >= 20 ? NEXT_HEADER_IPV4 : version === 6 && len >= 40 ? NEXT_HEADER_IPV6 : 0;
      if (nextHeader === 0) {
        state.db.drops.count("malformed");
        continue;
      }
      if (peer !== lastPeer) {
        if (
          !encodeEndpoint(
            peer.endpoint.address,
            peer.endpoint.port,
            this.txEndpoints,
            ENDPOINT_ENTRY_SIZE * endpoints,
          )
        ) {
          state.drops["no-endpoint"]++;
          continue;
        }
        lastPeer = peer;
        lastEndpointIndex = endpoints++;
      }
      const seq = sa.nextSequence();
      if (seq === undefined) {
        state.db.drops.count("seq-exhausted");
        continue;
      }
      if (sa !== lastSa) {
        lastSa = sa;
        lastKeyIndex = keys++;
        sa.key.copy(this.txKeys, KEYMAT * lastKeyIndex);
        sa.salt.copy(this.txKeys, KEYMAT * lastKeyIndex + 16);
        this.txKeyInfo[KEYINFO * lastKeyIndex] = sa.spi;
        this.txKeyInfo[KEYINFO * lastKeyIndex + 1] = sa.icvLength;
        this.txKeyInfo[KEYINFO * lastKeyIndex + 2] = sa.esn ? 1 : 0;
      }
      sa.account(len, now);
      this.txOffsets[count] = off;
      this.txLengths[count] = len;
      this.txNextHeaders[count] = nextHeader;
      this.txKeyIndex[count] = lastKeyIndex;
      this.txSeqs[count] = seq;
      this.txEndpointIndex[count] = lastEndpointIndex;
      this.txInner[count] = len;
      this.txPeers[count] = peer;
      count++;
    }
    if (count === 0) return;
    native().espSealBatch(
      arena,
      this.txOffsets,
      this.txLengths,
      this.txNextHeaders,
      this.txKeys,
      this.txKeyInfo,
      this.txKeyIndex,
      this.txSeqs,
      count,
    );
    this.txKeys.fill(0, 0, KEYMAT * keys);
    const sent = this.sender.send(
      udp,
      arena,
      this.txOffsets,
      this.txLengths,
      this.txEndpoints,
      this.txEndpointIndex,
      count,
    );
    const c = state.counters;
    if (sent < 0) {
      this.logger.warn({ errno: -sent }, "UDP send failed");
      c.sendErrors += count;
    } else {
      c.sendErrors += count - sent;
      for (let k = 0; k < sent; k++) {
        const p = this.txPeers[k]!;
        p.txBytes += this.txInner[k]!;
        p.txPackets++;
        c.txBytes += this.txLengths[k]!;
      }
      c.txPackets += sent;
    }
    this.txPeers.length = 0;
  }

  // ---- inbound -------------------------------------------------------------------------------

  private onUdpReadable(status: number): void {
    if (this.closed || this.frozen) return;
    if (status < 0) {
      this.logger.warn({ errno: -status }, "UDP socket error");
      return;
    }
    const udp = this.udp!;
    const failed = runBatches(
      this.batch,
      () => !this.closed && !this.frozen,
      () => udp.recvBatch(this.rxArena, this.rxSlot, 0, RX_CAPACITY, this.batch, this.rxLengths, this.rxFrom),
      (n) => this.inbound(n),
    );
    if (failed < 0) this.logger.warn({ errno: -failed }, "UDP receive failed");
  }

  private inbound(n: number): void {
    const state = this.state;
    const db = state.db;
    const c = state.counters;
    const arena = this.rxArena;
    const now = this.clock.now();
    this.writes = 0;
    this.openCount = 0;
    this.openKeyCount = 0;
    this.openLastSa = undefined;
    for (let i = 0; i < n; i++) {
      const len = this.rxLengths[i]!;
      if (len === TRUNCATED) {
        state.drops.oversize++;
        continue;
      }
      const off = i * this.rxSlot;
      c.rxPackets++;
      c.rxBytes += len;
      const kind = classifyUdpPayloadAt(arena, off, len);
      if (kind !== "esp") {
        db.drops.count(kind);
        continue;
      }
      const candidates = db.inboundCandidates(arena.readUInt32BE(off));
      if (candidates.length !== 1) {
        // No SA (counted as unknown-spi) or colliding SPIs: the per-packet codec, in arrival order.
        this.openPending(now);
        const r = receiveDatagram(db, arena.subarray(off, off + len), now);
        if (r.ok) {
          r.inner.copy(arena, off + ESP_HEADER);
          this.deliver(r.sa, off + ESP_HEADER, r.inner.length);
        }
        continue;
      }
      const sa = candidates[0]!;
      // At least pad length + next header, ending on a 4-byte boundary (RFC 4303 section 2.4).
      const body = len - ESP_HEADER - sa.icvLength;
      if (body < 2 || (ESP_HEADER + body) % 4 !== 0) {
        db.drops.count("malformed");
        continue;
      }
      const seq = sa.fullSequence(arena.readUInt32BE(off + 4));
      if (!sa.replay.check(seq)) {
        sa.replayDrops += 1;
        db.drops.count("replay");
        continue;
      }
      if (sa !== this.openLastSa) {
        this.openLastSa = sa;
        const k = this.openKeyCount++;
        sa.key.copy(this.openKeys, KEYMAT * k);
        sa.salt.copy(this.openKeys, KEYMAT * k + 16);
        this.openKeyInfo[KEYINFO * k] = sa.spi;
        this.openKeyInfo[KEYINFO * k + 1] = sa.icvLength;
        this.openKeyInfo[KEYINFO * k + 2] = sa.esn ? 1 : 0;
      }
      const j = this.openCount++;
      this.openOffsets[j] = off;
      this.openLengths[j] = len;
      this.openKeyIndex[j] = this.openKeyCount - 1;
      this.openSeqs[j] = seq;
      this.openSas[j] = sa;
    }
    this.openPending(now);
    const writes = this.writes;
    if (writes === 0) return;
    const written = this.tun!.writeBatch(arena, this.wOffsets, this.wLengths, writes);
    if (written < 0) {
      if (isInterfaceGoneErrno(written)) this.interfaceGone(written);
      c.tunWriteErrors += writes;
    } else {
      c.tunWriteErrors += writes - written;
    }
  }

  /**
   * Verifies and decrypts the queued packets in one native call, then, in order: ICV failures and
   * replays (the window is updated only after the ICV verified) are counted, the trailer checked,
   * and each inner packet queued for the TUN write.
   */
  private openPending(now: number): void {
    const count = this.openCount;
    if (count === 0) return;
    const db = this.state.db;
    const arena = this.rxArena;
    native().espOpenBatch(
      arena,
      this.openOffsets,
      this.openLengths,
      this.openKeys,
      this.openKeyInfo,
      this.openKeyIndex,
      this.openSeqs,
      this.openOk,
      count,
    );
    this.openKeys.fill(0, 0, KEYMAT * this.openKeyCount);
    for (let j = 0; j < count; j++) {
      const sa = this.openSas[j]!;
      if (this.openOk[j] !== 1) {
        sa.authFailures += 1;
        db.drops.count("auth-failed");
        continue;
      }
      const seq = this.openSeqs[j]!;
      if (!sa.replay.update(seq)) {
        db.drops.count("replay");
        continue;
      }
      const at = this.openOffsets[j]! + ESP_HEADER;
      const r = openTrailer(db, sa, arena.subarray(at, at + this.openLengths[j]!), seq, now);
      if (r.ok) this.deliver(sa, at, r.inner.length);
    }
    this.openCount = 0;
    this.openKeyCount = 0;
    this.openLastSa = undefined;
    this.openSas.length = 0;
  }

  /** Queues the inner packet at `rxArena[at]` for the TUN write if its source belongs to the SA's peer. */
  private deliver(sa: InboundSa, at: number, length: number): void {
    const state = this.state;
    const peer = state.peers.get(sa.peer);
    if (peer === undefined || state.routes.lookupPacket(this.rxArena, at, length, "src") !== peer) {
      state.drops["bad-source"]++;
      return;
    }
    this.wOffsets[this.writes] = at;
    this.wLengths[this.writes] = length;
    this.writes++;
    peer.rxBytes += length;
    peer.rxPackets++;
  }

  private interfaceGone(negErrno: number): void {
    if (this.gone) return;
    this.gone = true;
    this.logger.warn({ ifname: this.ifname, errno: -negErrno }, "TUN interface gone");
    this.tunWatcher?.stop();
    this.emit("interface-gone");
  }
}
