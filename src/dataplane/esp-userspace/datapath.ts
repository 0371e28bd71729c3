/**
 * The packet path of the userspace ESP daemon: a TUN interface and a UDP socket (port 4500 by
 * default, RFC 3948), batched I/O through the native addon, and the pure ESP core (src/esp) for
 * every decision.
 *
 * Outbound: TUN batch -> peer owning the inner destination (longest prefix match) -> the peer's
 * active outbound SA -> `encapsulate` -> sendmmsg (UDP GSO for runs to one peer) to the peer's
 * endpoint. No peer or no active SA: the packet is dropped and counted, never sent in plaintext.
 * Inbound: recvmmsg -> `receiveDatagram` (non-ESP, unknown SPI, replay, ICV failure: counted
 * drops) -> the inner source must lie in the allowed CIDRs of the SA's peer -> TUN write batch.
 */
import { EventEmitter } from "node:events";
import { systemClock, type Clock } from "../../clock.js";
import { PodcryptError } from "../../errors/index.js";
import { encapsulate } from "../../esp/codec.js";
import { receiveDatagram, ESP_IN_UDP_PORT } from "../../esp/udp.js";
import type { Logger } from "../../log/logger.js";
import type { FdWatcher } from "../../native.js";
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
  roundUp,
  runBatches,
  takeTunUdp,
} from "../userspace/tun-udp.js";
import type { HandedFds } from "../../platform/handover/fds.js";
import type { EspPeer, EspState } from "./state.js";

/** Default tunnel MTU: 1500 minus outer IPv4 (20), UDP (8), ESP header+IV (16), trailer (<= 5), ICV (16), rounded down. */
export const DEFAULT_ESP_MTU = 1420;
/** Packets per TUN read / recvmmsg / sendmmsg batch. */
export const DEFAULT_ESP_BATCH = 64;
/** Period of the interface-deleted check. */
export const ESP_TICK_MS = 100;
/** ESP adds at most 8 + 8 + 3 + 2 + 16 bytes. */
const ESP_MAX_OVERHEAD = 37;

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

  // TUN reads land here (one inner packet per slot, READ_CAPACITY each whatever the MTU).
  private readonly readSlot = roundUp(READ_CAPACITY, 64);
  private readonly readArena: Buffer;
  private readonly readLengths: Uint32Array;
  // ESP packets to send, one after the other at txOffsets (placed by their actual length, so an
  // MTU change never makes a packet outgrow a slot); grown when a batch needs more room.
  private txArena = Buffer.alloc(0);
  private readonly txOffsets: Uint32Array;
  private readonly txLengths: Uint32Array;
  private readonly txEndpointIndex: Uint32Array;
  private readonly txEndpoints: Buffer;
  private readonly txPeers: EspPeer[] = [];
  private readonly txInner: Uint32Array;
  // Datagrams received, and inner packets to write.
  private readonly rxSlot = roundUp(RX_CAPACITY, 64);
  private readonly rxArena: Buffer;
  private readonly rxLengths: Uint32Array;
  private readonly rxFrom: Buffer;
  private readonly wArena: Buffer;
  private readonly wOffsets: Uint32Array;
  private readonly wLengths: Uint32Array;
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
    this.sender = new BatchSender(o.gso ?? true, this.logger);
    this.mtuValue = o.mtu ?? DEFAULT_ESP_MTU;
    this.portValue = o.port ?? ESP_IN_UDP_PORT;
    checkBatchSize(this.batch);
    checkTunnelMtu(this.mtuValue);
    if (!Number.isInteger(this.portValue) || this.portValue < 0 || this.portValue > 65535)
      throw new PodcryptError("EINVAL", "port must be 0..65535", { context: { port: this.portValue } });
    const n = this.batch;
    this.readArena = Buffer.alloc(this.readSlot * n);
    this.txArena = Buffer.alloc(roundUp(this.mtuValue + ESP_MAX_OVERHEAD, 64) * n);
    this.readLengths = new Uint32Array(n);
    this.txOffsets = new Uint32Array(n);
    this.txLengths = new Uint32Array(n);
    this.txEndpointIndex = new Uint32Array(n);
    this.txEndpoints = Buffer.alloc(ENDPOINT_ENTRY_SIZE * n);
    this.txInner = new Uint32Array(n);
    this.rxArena = Buffer.alloc(this.rxSlot * n);
    this.rxLengths = new Uint32Array(n);
    this.rxFrom = Buffer.alloc(ENDPOINT_ENTRY_SIZE * n);
    this.wArena = Buffer.alloc(this.rxSlot * n);
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
        : openTunUdp(this.ifname, { mtu: this.mtuValue, up: true, persistent: this.persistent }, () =>
            BatchUdpSocket.open(this.portValue),
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
    this.logger.info({ ifname: tun.name, port: this.portValue, mtu: this.mtuValue }, "ESP datapath started");
  }

  /**
   * Adopts an MTU set on the interface from outside (`ip link set mtu`, the agent) for status.
   * The buffers do not depend on it: reads take up to READ_CAPACITY bytes and sends are placed by
   * their actual length.
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

  /** Makes txArena hold at least `need` bytes, keeping the `used` bytes already placed. */
  private ensureTxRoom(need: number, used: number): void {
    if (need <= this.txArena.length) return;
    const grown = Buffer.alloc(roundUp(Math.max(need, this.txArena.length * 2), 64));
    this.txArena.copy(grown, 0, 0, used);
    this.txArena = grown;
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
      () => tun.readBatch(this.readArena, this.readSlot, 0, READ_CAPACITY, this.batch, this.readLengths),
      (n) => this.outbound(n),
    );
    if (failed >= 0) return;
    if (isInterfaceGoneErrno(failed)) this.interfaceGone(failed);
    else this.logger.warn({ errno: -failed }, "TUN read failed");
  }

  private outbound(n: number): void {
    const udp = this.udp;
    if (udp === undefined) return;
    const state = this.state;
    const now = this.clock.now();
    let count = 0;
    let endpoints = 0;
    let lastPeer: EspPeer | undefined;
    let lastEndpointIndex = -1;
    let used = 0;
    for (let i = 0; i < n; i++) {
      const off = i * this.readSlot;
      const len = this.readLengths[i]!;
      if (len >= READ_CAPACITY) {
        state.drops.oversize++;
        continue;
      }
      const inner = this.readArena.subarray(off, off + len);
      const peer = len > 0 ? state.routes.lookupPacket(this.readArena, off, len, "dst") : undefined;
      if (peer === undefined) {
        state.drops["no-route"]++;
        continue;
      }
      const sa = state.db.outbound(peer.name);
      if (sa === undefined) {
        state.drops["no-sa"]++;
        continue;
      }
      const r = encapsulate(sa, inner, now);
      if (!r.ok) {
        state.db.drops.count(r.reason);
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
      const at = used;
      this.ensureTxRoom(at + r.packet.length, used);
      r.packet.copy(this.txArena, at);
      used = roundUp(at + r.packet.length, 8);
      this.txOffsets[count] = at;
      this.txLengths[count] = r.packet.length;
      this.txEndpointIndex[count] = lastEndpointIndex;
      this.txInner[count] = len;
      this.txPeers[count] = peer;
      count++;
    }
    if (count === 0) return;
    const sent = this.sender.send(
      udp,
      this.txArena,
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
    const c = state.counters;
    const now = this.clock.now();
    let writes = 0;
    for (let i = 0; i < n; i++) {
      const len = this.rxLengths[i]!;
      if (len === TRUNCATED) {
        state.drops.oversize++;
        continue;
      }
      const off = i * this.rxSlot;
      c.rxPackets++;
      c.rxBytes += len;
      const r = receiveDatagram(state.db, this.rxArena.subarray(off, off + len), now);
      if (!r.ok) continue; // counted by the codec
      const peer = state.peers.get(r.sa.peer);
      const inner = r.inner;
      if (peer === undefined || state.routes.lookupPacket(inner, 0, inner.length, "src") !== peer) {
        state.drops["bad-source"]++;
        continue;
      }
      const at = writes * this.rxSlot;
      inner.copy(this.wArena, at);
      this.wOffsets[writes] = at;
      this.wLengths[writes] = inner.length;
      writes++;
      peer.rxBytes += inner.length;
      peer.rxPackets++;
    }
    if (writes === 0) return;
    const written = this.tun!.writeBatch(this.wArena, this.wOffsets, this.wLengths, writes);
    if (written < 0) {
      if (isInterfaceGoneErrno(written)) this.interfaceGone(written);
      c.tunWriteErrors += writes;
    } else {
      c.tunWriteErrors += writes - written;
    }
  }

  private interfaceGone(negErrno: number): void {
    if (this.gone) return;
    this.gone = true;
    this.logger.warn({ ifname: this.ifname, errno: -negErrno }, "TUN interface gone");
    this.tunWatcher?.stop();
    this.emit("interface-gone");
  }
}
