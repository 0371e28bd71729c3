import { EventEmitter } from "node:events";
import { systemClock, type Clock } from "../../clock.js";
import { PodcryptError } from "../../errors/index.js";
import type { Logger } from "../../log/logger.js";
import { logPollError } from "../../platform/poll/guard.js";
import { native, type FdWatcher, type NativeAddon } from "../../native.js";
import {
  BatchSender,
  BatchUdpSocket,
  ENDPOINT_ENTRY_SIZE,
  decodeEndpoint,
  encodeEndpoint,
} from "../../platform/udp/batch-udp-socket.js";
import {
  MAX_TUNNEL_MTU,
  MIN_TUNNEL_MTU,
  TunDevice,
  checkTunnelMtu,
  isInterfaceGoneErrno,
} from "../../platform/tun/tun-device.js";
import type { HandedFds } from "../../platform/handover/fds.js";
import type {
  DatapathCore,
  DatapathPeer,
  DropReason,
  Endpoint,
  TransportKeypair,
} from "../../wireguard/contract.js";

/** WireGuard data message header: type (1) | reserved (3) | receiver index (4) | counter (8). */
const HEADER = 16;
/** Poly1305 tag. */
const TAG = 16;
/** Room after a plaintext packet: padding to 16 (at most 15) and the tag. */
const TAILROOM = 16 + TAG;
const MESSAGE_DATA = 4;
/** Largest datagram accepted from the network (jumbo-frame peers included); longer ones are dropped. */
const RX_CAPACITY = 9216;
/**
 * Largest plaintext packet read from the TUN interface. Reads do not follow the configured MTU:
 * the interface's MTU can be raised from outside at any moment, and a packet read into a buffer
 * sized from an older MTU would be cut short. One byte more than the largest MTU accepted, so a
 * read filling the whole buffer is known to be too long (dropped as malformed).
 */
const READ_CAPACITY = MAX_TUNNEL_MTU + 1;
const TRUNCATED = 0xffffffff;
/** Receive buffer size with UDP GRO: the largest UDP payload, rounded up. */
const GRO_CAPACITY = 65536;
/** Data messages opened per openBatch call (a GRO buffer can hold dozens). */
const RX_PENDING = 512;

/** Default tunnel MTU (wireguard-go's default). */
export const DEFAULT_MTU = 1420;
/** Default packets per TUN read / recvmmsg / sendmmsg batch (wireguard-go uses 128). */
export const DEFAULT_BATCH = 128;
/** Packets staged per peer while it has no sending keypair (the oldest is dropped beyond it). */
export const MAX_STAGED_PER_PEER = 1024;
/** Period of `core.tick` and of the interface-deleted check. */
export const TICK_INTERVAL_MS = 100;

const DROP_REASONS: readonly DropReason[] = [
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

/** Options of {@link WireguardDatapath}. */
export interface WireguardDatapathOptions {
  /** TUN interface to create (or attach to). */
  ifname: string;
  /** Tunnel MTU set on the TUN interface. Default {@link DEFAULT_MTU}. */
  mtu?: number;
  /** UDP port to listen on; 0 picks an ephemeral one (see `listenPort` after `start()`). */
  listenPort: number;
  /** The protocol core: routing, keypairs, replay, handshakes, timers. */
  core: DatapathCore;
  /** Logger (never given key material). */
  logger: Logger;
  /** Clock for `now` passed to the core. Default `systemClock`. */
  clock?: Clock;
  /** SO_MARK of the UDP socket (0: none). Default 0. */
  fwmark?: number;
  /** Packets per batch. Default {@link DEFAULT_BATCH}. */
  batchSize?: number;
  /**
   * Send runs of equal-sized datagrams to one peer as one UDP GSO (UDP_SEGMENT) message; measured
   * 2-3x the throughput of plain sendmmsg here. Turned off by itself when the kernel refuses it.
   * Default true.
   */
  gso?: boolean;
  /**
   * Receive with UDP GRO (coalesced runs of datagrams, split here without copying): fewer socket
   * buffers and syscalls on the receiving side. Default false until measured on a quiet machine
   * (tested for correctness; bench/micro/tunnel-compare.ts --gro compares).
   */
  gro?: boolean;
  /** Bring the interface up on `start()`. Default false (like wireguard-go; `ip link set up` does it). */
  linkUp?: boolean;
  /**
   * Make the TUN device persistent (TUNSETPERSIST): when the daemon ends, however (kill -9, a crash,
   * SIGTERM for a restart), the device stays with its addresses, routes and link state, the kernel
   * drops what is routed to it until a new daemon attaches (nothing leaks around it), and the new
   * daemon re-attaches by name. Only deleting the interface (`ip link del`) removes it. Default
   * false: the device goes away with the daemon.
   */
  persistent?: boolean;
}

/** A snapshot of the data path's counters. Bytes are WireGuard message bytes, as `wg show` counts them. */
export interface DatapathCounters {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  keepalivesSent: number;
  keepalivesReceived: number;
  controlSent: number;
  controlReceived: number;
  /** Packets staged (waiting for a handshake) right now, all peers. */
  staged: number;
  /** Datagrams the kernel refused or that could not be sent for lack of buffer space. */
  sendErrors: number;
  /** Decrypted packets the TUN device refused. */
  tunWriteErrors: number;
  /** TUN reads and UDP receives that returned packets (batches), for packets/batch ratios. */
  tunBatches: number;
  udpBatches: number;
  /** Receive buffers that held several datagrams coalesced by UDP GRO. */
  groBuffers: number;
  /** Exceptions caught in the packet path's readiness callbacks (each lost its batch, never the daemon). */
  callbackErrors: number;
  /** Dropped packets by reason. */
  drops: Record<DropReason, number>;
}

/** Events of {@link WireguardDatapath}. */
export interface WireguardDatapathEvents {
  /** The TUN interface was deleted (or its fd failed): the daemon should exit. Emitted once. */
  "interface-gone": [];
}

/**
 * Hooks of DatapathCore (src/wireguard/contract.ts) that a core may leave out: `onKeepalive` asks
 * the data path to send a keepalive, `onHandshakeGaveUp` discards what was staged for a peer.
 */
interface OptionalCoreHooks {
  onKeepalive?(callback: (peer: DatapathPeer) => void): void;
  onHandshakeGaveUp?(callback: (peer: DatapathPeer) => void): void;
}

interface Group {
  peer: DatapathPeer;
  keypair: TransportKeypair | undefined;
  bytes: number;
  plaintext: number;
  lastFrom: number;
}

/**
 * The packet-moving half of podcrypt's userspace WireGuard: a TUN device and a UDP socket, batched
 * I/O and batched ChaCha20-Poly1305 in native code, and every decision delegated to a
 * {@link DatapathCore} (src/wireguard/contract.ts).
 *
 * Outbound: a TUN batch -> `peerForDestination` -> `sendKeypair` (no keypair: the packet is staged,
 * at most {@link MAX_STAGED_PER_PEER} per peer, flushed on `onKeypairReady`) -> seal batch ->
 * sendmmsg -> `dataSent`. Inbound: recvmmsg -> data messages by receiver index -> `receiveKeypair`
 * -> open batch -> `acceptCounter` -> `sourceAllowed` -> TUN write -> `dataReceived`; handshake
 * and cookie messages (types 1-3) go to `handleControl`; everything else is dropped and counted
 * (`core.drop`, and `counters().drops`). `core.tick` runs every {@link TICK_INTERVAL_MS} and after
 * every wake-up. The core's `transmit` sends its bytes verbatim; a keepalive the core asks for
 * (`onKeepalive`) or `sendKeepalive(peer)` is an empty data message sealed here; `onHandshakeGaveUp`
 * drops what was staged for the peer.
 *
 * Usage (the daemon):
 * ```ts
 * const dp = new WireguardDatapath({ ifname: "wg0", listenPort: 51820, core, logger });
 * dp.on("interface-gone", () => shutdown());
 * dp.start();              // opens TUN + UDP, sets the MTU, starts the watchers and the tick
 * dp.setListenPort(51821); // rebinds live (throws PodcryptError EUDP if the port is taken)
 * dp.setFwmark(0x1234);
 * dp.counters();
 * dp.close();              // closes the socket and the TUN fd (removing the interface)
 * ```
 * Everything runs on the Node event loop; the data path must be created in the network namespace
 * its interface and socket belong to.
 */
export class WireguardDatapath extends EventEmitter<WireguardDatapathEvents> {
  /** The TUN interface name. */
  readonly ifname: string;
  private readonly core: DatapathCore;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly batch: number;
  private readonly sender: BatchSender;
  private readonly linkUp: boolean;
  private readonly persistent: boolean;
  private mtuValue: number;
  private port: number;
  private fwmark: number;

  private tun: TunDevice | undefined;
  private udp: BatchUdpSocket | undefined;
  private tunWatcher: FdWatcher | undefined;
  private udpWatcher: FdWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  /** Handed over ({@link freeze}): closed for packets, its fds still open until `close()`. */
  private frozen = false;
  private gone = false;
  private inOutbound = false;

  // Outbound arena: slot i holds [header 16][plaintext < READ_CAPACITY][padding + tag].
  private readonly txSlot = roundUp(HEADER + READ_CAPACITY + TAILROOM, 64);
  private readonly txArena: Buffer;
  private readonly txReadLengths: Uint32Array;
  private readonly txOffsets: Uint32Array;
  private readonly txLengths: Uint32Array;
  private readonly txPlain: Uint32Array;
  private readonly txKeyIndex: Uint32Array;
  private readonly txReceivers: Uint32Array;
  private readonly txCounters: Float64Array;
  private readonly txEndpointIndex: Uint32Array;
  private readonly txKeys: Buffer;
  private readonly txEndpoints: Buffer;
  private readonly txPeers: DatapathPeer[] = [];

  // Inbound arena: slot i holds one received datagram.
  private readonly rxSlot: number;
  private readonly rxArena: Buffer;
  private readonly rxLengths: Uint32Array;
  private readonly rxFrom: Buffer;
  private readonly rxOffsets: Uint32Array;
  private readonly rxOpenLengths: Uint32Array;
  private readonly rxMessageLengths: Uint32Array;
  private readonly rxKeyIndex: Uint32Array;
  private readonly rxCounters: Float64Array;
  private readonly rxOk: Uint8Array;
  private readonly rxKeys: Buffer;
  private readonly rxSlotOf: Uint32Array;
  private readonly rxSegments: Uint32Array;
  private readonly rxMessages: number;
  private readonly gro: boolean;
  private rxCount = 0;
  private rxKeyCount = 0;
  private rxLastKeypair: TransportKeypair | undefined;
  private rxLastKeyIndex = 0;
  private readonly rxPeers: DatapathPeer[] = [];
  private readonly rxKeypairs: TransportKeypair[] = [];
  private readonly wOffsets: Uint32Array;
  private readonly wLengths: Uint32Array;

  // Single-datagram path (core transmit, keepalives).
  private readonly ctlArena = Buffer.alloc(RX_CAPACITY + HEADER + TAILROOM);
  private readonly ctlEndpoint = Buffer.alloc(ENDPOINT_ENTRY_SIZE);
  private readonly one = {
    offsets: new Uint32Array(1),
    lengths: new Uint32Array(1),
    index: new Uint32Array(1),
  };

  private readonly staged = new Map<DatapathPeer, Buffer[]>();
  private stagedCount = 0;
  private readonly groups: Group[] = [];
  private readonly lastFromByPeer = new Map<DatapathPeer, { entry: Buffer; endpoint: Endpoint }>();
  private readonly stats = {
    txPackets: 0,
    txBytes: 0,
    rxPackets: 0,
    rxBytes: 0,
    keepalivesSent: 0,
    keepalivesReceived: 0,
    controlSent: 0,
    controlReceived: 0,
    sendErrors: 0,
    tunWriteErrors: 0,
    tunBatches: 0,
    udpBatches: 0,
    groBuffers: 0,
    callbackErrors: 0,
  };
  private readonly drops = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;

  /** Validates options and allocates the arenas; no I/O happens until `start()`. */
  constructor(options: WireguardDatapathOptions) {
    super();
    this.ifname = options.ifname;
    this.core = options.core;
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.batch = options.batchSize ?? DEFAULT_BATCH;
    this.sender = new BatchSender(options.gso ?? true, this.logger);
    this.linkUp = options.linkUp ?? false;
    this.persistent = options.persistent ?? false;
    this.mtuValue = options.mtu ?? DEFAULT_MTU;
    this.port = options.listenPort;
    this.fwmark = options.fwmark ?? 0;
    if (!Number.isInteger(this.batch) || this.batch < 1 || this.batch > 1024)
      throw new PodcryptError("EINVAL", "batchSize must be 1..1024", { context: { batchSize: this.batch } });
    checkTunnelMtu(this.mtuValue);
    if (!Number.isInteger(this.port) || this.port < 0 || this.port > 65535)
      throw new PodcryptError("EINVAL", "listenPort must be 0..65535", {
        context: { listenPort: this.port },
      });

    const n = this.batch;
    this.txArena = Buffer.alloc(this.txSlot * n);
    this.txReadLengths = new Uint32Array(n);
    this.txOffsets = new Uint32Array(n);
    this.txLengths = new Uint32Array(n);
    this.txPlain = new Uint32Array(n);
    this.txKeyIndex = new Uint32Array(n);
    this.txReceivers = new Uint32Array(n);
    this.txCounters = new Float64Array(n);
    this.txEndpointIndex = new Uint32Array(n);
    this.txKeys = Buffer.alloc(32 * n);
    this.txEndpoints = Buffer.alloc(ENDPOINT_ENTRY_SIZE * n);

    // With GRO a receive buffer holds up to 64 KiB of coalesced datagrams; fewer buffers then.
    this.gro = options.gro ?? false;
    this.rxSlot = this.gro ? GRO_CAPACITY : roundUp(RX_CAPACITY, 64);
    this.rxMessages = this.gro ? Math.min(n, 64) : n;
    this.rxArena = Buffer.alloc(this.rxSlot * this.rxMessages);
    this.rxLengths = new Uint32Array(this.rxMessages);
    this.rxSegments = new Uint32Array(this.rxMessages);
    this.rxFrom = Buffer.alloc(ENDPOINT_ENTRY_SIZE * this.rxMessages);
    this.rxOffsets = new Uint32Array(RX_PENDING);
    this.rxOpenLengths = new Uint32Array(RX_PENDING);
    this.rxMessageLengths = new Uint32Array(RX_PENDING);
    this.rxKeyIndex = new Uint32Array(RX_PENDING);
    this.rxCounters = new Float64Array(RX_PENDING);
    this.rxOk = new Uint8Array(RX_PENDING);
    this.rxKeys = Buffer.alloc(32 * RX_PENDING);
    this.rxSlotOf = new Uint32Array(RX_PENDING);
    this.wOffsets = new Uint32Array(RX_PENDING);
    this.wLengths = new Uint32Array(RX_PENDING);
  }

  /** The bound UDP port (after `start()`; the chosen one when 0 was asked for). */
  get listenPort(): number {
    return this.port;
  }

  /** The tunnel MTU. */
  get mtu(): number {
    return this.mtuValue;
  }

  /**
   * Opens the TUN interface and the UDP socket, sets the MTU, registers with the core and starts
   * the watchers and the tick. Throws PodcryptError ETUN / EUDP (nothing is left open then).
   */
  start(handed?: HandedFds): void {
    if (this.started) throw new PodcryptError("ESTATE", "datapath already started");
    if (this.closed) throw new PodcryptError("ESTATE", "datapath is closed");
    let tun: TunDevice;
    let udp: BatchUdpSocket;
    if (handed !== undefined) {
      // A planned restart: the old daemon's device and socket, the same open files (their queues,
      // MTU, link state, persistence, bound port and mark stay as they were).
      tun = TunDevice.take(handed.pid, handed.tun.fd, handed.tun.name);
      try {
        udp = BatchUdpSocket.take(handed.pid, handed.udp);
      } catch (e) {
        tun.close();
        throw e;
      }
      this.mtuValue = tun.mtu();
    } else {
      tun = TunDevice.open(this.ifname);
      try {
        tun.setMtu(this.mtuValue);
        if (this.linkUp) tun.setUp(true);
        if (this.persistent) tun.persist(true);
        udp = BatchUdpSocket.open(this.port, this.fwmark, this.gro);
      } catch (e) {
        tun.close();
        throw e;
      }
    }
    this.started = true;
    this.tun = tun;
    this.udp = udp;
    this.port = udp.port;
    this.core.setTransmit((to, message) => this.transmit(to, message));
    this.core.onKeypairReady((peer) => this.keypairReady(peer));
    const hooks = this.core as DatapathCore & OptionalCoreHooks;
    hooks.onKeepalive?.((peer) => void this.sendKeepalive(peer));
    hooks.onHandshakeGaveUp?.((peer) => this.dropStaged(peer));
    this.tunWatcher = tun.watch((status) => this.onTunReadable(status), this.onCallbackError);
    this.udpWatcher = udp.watch((status) => this.onUdpReadable(status), this.onCallbackError);
    this.timer = setInterval(() => this.onTick(), TICK_INTERVAL_MS);
    this.timer.unref();
    this.logger.info({ ifname: tun.name, port: this.port, mtu: this.mtuValue }, "wireguard datapath started");
  }

  /**
   * A planned restart: stops reading, sending and ticking for good (watchers and tick closed,
   * staged packets dropped: the core's sessions go to the successor) and returns the fds the
   * successor takes. The fds stay open until {@link close} (the successor must have taken them).
   */
  freeze(): HandedFds {
    const tun = this.tun;
    const udp = this.udp;
    if (!this.started || this.closed || tun === undefined || udp === undefined)
      throw new PodcryptError("ESTATE", "datapath is not running");
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.tunWatcher?.close();
    this.udpWatcher?.close();
    for (const queue of this.staged.values()) this.drops["no-keypair"] += queue.length;
    this.staged.clear();
    this.stagedCount = 0;
    this.frozen = true;
    return {
      pid: process.pid,
      tun: { fd: tun.fd, name: tun.name },
      udp: { fd: udp.fd, port: udp.port, family: udp.family, gro: udp.gro },
    };
  }

  /** Stops everything and closes the socket and the TUN fd (removing the interface unless it is persistent). Idempotent. */
  close(): void {
    if (this.frozen) {
      // Handed over: only the fds are left to close (the successor holds duplicates).
      this.frozen = false;
      this.udp?.close();
      this.tun?.close();
      return;
    }
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.tunWatcher?.close();
    this.udpWatcher?.close();
    this.udp?.close();
    this.tun?.close();
    this.staged.clear();
    this.stagedCount = 0;
  }

  /**
   * Rebinds the UDP socket to `port` (0: ephemeral) while running; returns the bound port. On
   * failure (PodcryptError EUDP, e.g. EADDRINUSE) the old socket stays in use.
   */
  setListenPort(port: number): number {
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new PodcryptError("EINVAL", "listenPort must be 0..65535", { context: { listenPort: port } });
    if (!this.started || this.closed) {
      this.port = port;
      return port;
    }
    if (port !== 0 && port === this.port) return port;
    const next = BatchUdpSocket.open(port, this.fwmark, this.gro);
    this.udpWatcher?.close();
    this.udp?.close();
    this.udp = next;
    this.port = next.port;
    this.udpWatcher = next.watch((status) => this.onUdpReadable(status), this.onCallbackError);
    this.logger.info({ port: this.port }, "wireguard datapath rebound");
    return this.port;
  }

  /** Sets SO_MARK on the UDP socket (0 clears it), now and after rebinds. */
  setFwmark(mark: number): void {
    if (!Number.isInteger(mark) || mark < 0 || mark > 0xffffffff)
      throw new PodcryptError("EINVAL", "fwmark must be a 32-bit unsigned integer", {
        context: { fwmark: mark },
      });
    this.fwmark = mark;
    if (this.udp !== undefined && !this.closed) this.udp.setMark(mark);
  }

  /** Changes the tunnel MTU (on the interface too, once started). */
  setMtu(mtu: number): void {
    checkTunnelMtu(mtu);
    if (this.tun !== undefined && !this.closed) this.tun.setMtu(mtu);
    this.mtuValue = mtu;
  }

  /** A copy of the counters. */
  counters(): DatapathCounters {
    return { ...this.stats, staged: this.stagedCount, drops: { ...this.drops } };
  }

  /**
   * Sends a keepalive (an empty data message) to `peer` now. Returns false when the peer has no
   * endpoint or no sending keypair (the core may have started a handshake then).
   */
  sendKeepalive(peer: DatapathPeer): boolean {
    const udp = this.udp;
    if (udp === undefined || this.closed) return false;
    const ep = peer.endpoint;
    if (ep === undefined) return false;
    const now = this.clock.now();
    const kp = this.core.sendKeypair(peer, now);
    if (kp === undefined) return false;
    if (!encodeEndpoint(ep.address, ep.port, this.ctlEndpoint, 0)) return false;
    const one = this.one;
    one.offsets[0] = 0;
    one.lengths[0] = 0;
    one.index[0] = 0;
    const counter = kp.sendCounter++;
    nativeSealOne(this.ctlArena, one.lengths, kp.sendKey, kp.remoteIndex, counter, this.mtuValue);
    const sent = udp.sendBatch(this.ctlArena, one.offsets, one.lengths, this.ctlEndpoint, one.index, 1);
    if (sent !== 1) {
      this.stats.sendErrors++;
      return false;
    }
    peer.txBytes += one.lengths[0]!;
    this.stats.txBytes += one.lengths[0]!;
    this.stats.keepalivesSent++;
    this.core.dataSent(peer, 0, now);
    return true;
  }

  // ---- outbound ------------------------------------------------------------------------------

  /** Counts and logs an exception caught in the TUN or UDP readiness callback (its batch is lost). */
  private readonly onCallbackError = (error: unknown): void => {
    logPollError(this.logger, "wireguard datapath", ++this.stats.callbackErrors, error);
  };

  private onTunReadable(status: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.interfaceGone(status);
      return;
    }
    const tun = this.tun!;
    // A few batches per wake-up, then yield so the receive side is served too.
    for (let round = 0; round < 4 && !this.closed; round++) {
      const n = tun.readBatch(
        this.txArena,
        this.txSlot,
        HEADER,
        READ_CAPACITY,
        this.batch,
        this.txReadLengths,
      );
      if (n < 0) {
        if (isInterfaceGoneErrno(n)) this.interfaceGone(n);
        else this.logger.warn({ errno: -n }, "TUN read failed");
        return;
      }
      if (n === 0) break;
      this.stats.tunBatches++;
      this.outbound(n);
      if (n < this.batch) break;
    }
    this.core.tick(this.clock.now());
  }

  /** Routes, seals and sends the `n` packets in txArena slots (lengths in txReadLengths). */
  private outbound(n: number): void {
    const udp = this.udp;
    if (udp === undefined) return;
    this.inOutbound = true;
    try {
      const now = this.clock.now();
      const arena = this.txArena;
      const slot = this.txSlot;
      const core = this.core;
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
        const len = this.txReadLengths[i]!;
        const version = len > 0 ? arena[off + HEADER]! >> 4 : 0;
        if (len >= READ_CAPACITY || ((version !== 4 || len < 20) && (version !== 6 || len < 40))) {
          this.drop("malformed");
          continue;
        }
        const peer = core.peerForDestination(arena, off + HEADER, len);
        if (peer === undefined) {
          this.drop("no-route");
          continue;
        }
        const ep = peer.endpoint;
        if (ep === undefined) {
          this.drop("no-endpoint", peer);
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
            kp.sendKey.copy(this.txKeys, 32 * keys++);
          }
        }
        if (kp === undefined) {
          this.stage(peer, arena.subarray(off + HEADER, off + HEADER + len));
          continue;
        }
        if (ep !== lastEndpoint) {
          if (!encodeEndpoint(ep.address, ep.port, this.txEndpoints, ENDPOINT_ENTRY_SIZE * endpoints)) {
            this.drop("no-endpoint", peer);
            continue;
          }
          lastEndpoint = ep;
          lastEndpointIndex = endpoints++;
        }
        this.txOffsets[count] = off;
        this.txLengths[count] = len;
        this.txPlain[count] = len;
        this.txKeyIndex[count] = lastKeyIndex;
        this.txReceivers[count] = kp.remoteIndex;
        this.txCounters[count] = kp.sendCounter++;
        this.txEndpointIndex[count] = lastEndpointIndex;
        this.txPeers[count] = peer;
        count++;
      }
      if (count === 0) return;
      nativeAddon().sealBatch(
        arena,
        this.txOffsets,
        this.txLengths,
        this.txKeys,
        this.txKeyIndex,
        this.txReceivers,
        this.txCounters,
        this.mtuValue,
        count,
      );
      this.txKeys.fill(0, 0, 32 * keys);
      const sent = this.sender.send(
        udp,
        arena,
        this.txOffsets,
        this.txLengths,
        this.txEndpoints,
        this.txEndpointIndex,
        count,
      );
      if (sent < 0) {
        this.logger.warn({ errno: -sent }, "UDP send failed");
        this.stats.sendErrors += count;
        return;
      }
      // sendmmsg reports a count, not which ones failed: credit the first `sent` (all, normally).
      this.stats.sendErrors += count - sent;
      const groups = this.groups;
      groups.length = 0;
      for (let k = 0; k < sent; k++) {
        const peer = this.txPeers[k]!;
        const bytes = this.txLengths[k]!;
        let g = groups.length > 0 ? groups[groups.length - 1] : undefined;
        if (g === undefined || g.peer !== peer) g = findGroup(groups, peer, undefined);
        g.bytes += bytes;
        g.plaintext += this.txPlain[k]!;
      }
      this.stats.txPackets += sent;
      for (const g of groups) {
        g.peer.txBytes += g.bytes;
        this.stats.txBytes += g.bytes;
        core.dataSent(g.peer, g.plaintext, now);
      }
    } finally {
      this.inOutbound = false;
      this.txPeers.length = 0;
    }
  }

  private stage(peer: DatapathPeer, packet: Buffer): void {
    let queue = this.staged.get(peer);
    if (queue === undefined) {
      queue = [];
      this.staged.set(peer, queue);
    }
    if (queue.length >= MAX_STAGED_PER_PEER) {
      queue.shift();
      this.stagedCount--;
      this.drop("no-keypair", peer);
    }
    queue.push(Buffer.from(packet));
    this.stagedCount++;
  }

  /** The core gave up on the handshake: what was staged for `peer` will never leave. */
  private dropStaged(peer: DatapathPeer): void {
    const queue = this.staged.get(peer);
    if (queue === undefined) return;
    this.staged.delete(peer);
    this.stagedCount -= queue.length;
    for (let i = 0; i < queue.length; i++) this.drop("no-keypair", peer);
  }

  private keypairReady(peer: DatapathPeer): void {
    if (this.closed || !this.staged.has(peer)) return;
    // The core may report readiness from inside sendKeypair (while the TX arena is in use).
    if (this.inOutbound) {
      setImmediate(() => this.keypairReady(peer));
      return;
    }
    const queue = this.staged.get(peer)!;
    this.staged.delete(peer);
    this.stagedCount -= queue.length;
    const capacity = this.txSlot - HEADER - TAILROOM;
    for (let start = 0; start < queue.length && !this.closed; start += this.batch) {
      const end = Math.min(queue.length, start + this.batch);
      let n = 0;
      for (let j = start; j < end; j++) {
        const packet = queue[j]!;
        if (packet.length > capacity) {
          this.drop("malformed", peer);
          continue;
        }
        packet.copy(this.txArena, n * this.txSlot + HEADER);
        this.txReadLengths[n++] = packet.length;
      }
      this.outbound(n);
    }
  }

  // ---- inbound -------------------------------------------------------------------------------

  private onUdpReadable(status: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.logger.warn({ errno: -status }, "UDP socket error");
      return;
    }
    const udp = this.udp!;
    for (let round = 0; round < 4 && !this.closed && this.udp === udp; round++) {
      this.rxSegments.fill(0);
      const n = udp.recvBatch(
        this.rxArena,
        this.rxSlot,
        0,
        this.rxSlot,
        this.rxMessages,
        this.rxLengths,
        this.rxFrom,
        udp.gro ? this.rxSegments : undefined,
      );
      if (n < 0) {
        this.logger.warn({ errno: -n }, "UDP receive failed");
        break;
      }
      if (n === 0) break;
      this.stats.udpBatches++;
      this.inbound(n);
      if (n < this.rxMessages) break;
    }
    this.core.tick(this.clock.now());
  }

  private inbound(n: number): void {
    const now = this.clock.now();
    const slot = this.rxSlot;
    this.rxCount = 0;
    this.rxKeyCount = 0;
    this.rxLastKeypair = undefined;
    for (let i = 0; i < n; i++) {
      const base = i * slot;
      const total = this.rxLengths[i]!;
      if (total === TRUNCATED) {
        this.drop("malformed");
        continue;
      }
      const seg = this.rxSegments[i]!;
      if (seg === 0) {
        this.classify(base, total, i, now);
      } else {
        // A UDP GRO buffer: datagrams of `seg` bytes back to back, the last one maybe shorter.
        this.stats.groBuffers++;
        for (let o = 0; o < total; o += seg) this.classify(base + o, Math.min(seg, total - o), i, now);
      }
    }
    if (this.rxCount > 0) this.openAndDeliver(this.rxCount, this.rxKeyCount, now);
  }

  /** Sorts one received datagram: data messages are queued for the open batch, handshakes go to the core. */
  private classify(off: number, len: number, from: number, now: number): void {
    const arena = this.rxArena;
    if (len < 4) {
      this.drop("malformed");
      return;
    }
    const type = arena.readUInt32LE(off);
    if (type === MESSAGE_DATA) {
      if (len < HEADER + TAG) {
        this.drop("malformed");
        return;
      }
      const found = this.core.receiveKeypair(arena.readUInt32LE(off + 4), now);
      if (found === undefined) {
        this.drop("unknown-index");
        return;
      }
      if (found.keypair !== this.rxLastKeypair) {
        this.rxLastKeypair = found.keypair;
        this.rxLastKeyIndex = this.rxKeyCount;
        found.keypair.recvKey.copy(this.rxKeys, 32 * this.rxKeyCount++);
      }
      const count = this.rxCount++;
      this.rxOffsets[count] = off;
      this.rxOpenLengths[count] = len;
      this.rxMessageLengths[count] = len;
      this.rxKeyIndex[count] = this.rxLastKeyIndex;
      this.rxSlotOf[count] = from;
      this.rxPeers[count] = found.peer;
      this.rxKeypairs[count] = found.keypair;
      if (this.rxCount === RX_PENDING) {
        this.openAndDeliver(this.rxCount, this.rxKeyCount, now);
        this.rxCount = 0;
        this.rxKeyCount = 0;
        this.rxLastKeypair = undefined;
      }
    } else if (type === 1 || type === 2 || type === 3) {
      this.stats.controlReceived++;
      const endpoint = decodeEndpoint(this.rxFrom, ENDPOINT_ENTRY_SIZE * from);
      this.core.handleControl(Buffer.from(arena.subarray(off, off + len)), endpoint, now);
    } else {
      this.drop("malformed");
    }
  }

  private openAndDeliver(count: number, keys: number, now: number): void {
    const core = this.core;
    const arena = this.rxArena;
    nativeAddon().openBatch(
      arena,
      this.rxOffsets,
      this.rxOpenLengths,
      this.rxKeys,
      this.rxKeyIndex,
      this.rxCounters,
      this.rxOk,
      count,
    );
    this.rxKeys.fill(0, 0, 32 * keys);
    const groups = this.groups;
    groups.length = 0;
    let writes = 0;
    for (let k = 0; k < count; k++) {
      const peer = this.rxPeers[k]!;
      if (this.rxOk[k] !== 1) {
        this.drop("auth-failed", peer);
        continue;
      }
      const keypair = this.rxKeypairs[k]!;
      if (!core.acceptCounter(keypair, this.rxCounters[k]!)) {
        this.drop("replay", peer);
        continue;
      }
      const plain = this.rxOpenLengths[k]!;
      const ip = this.rxOffsets[k]! + HEADER;
      let ipLength = 0;
      if (plain > 0) {
        const version = arena[ip]! >> 4;
        if (version === 4 && plain >= 20) ipLength = arena.readUInt16BE(ip + 2);
        else if (version === 6 && plain >= 40) ipLength = 40 + arena.readUInt16BE(ip + 4);
        if (ipLength === 0 || ipLength > plain || (version === 4 && ipLength < 20)) {
          this.drop("malformed", peer);
          continue;
        }
        if (!core.sourceAllowed(peer, arena, ip, ipLength)) {
          this.drop("bad-source", peer);
          continue;
        }
        this.wOffsets[writes] = ip;
        this.wLengths[writes] = ipLength;
        writes++;
      } else {
        this.stats.keepalivesReceived++;
      }
      let g = groups.length > 0 ? groups[groups.length - 1] : undefined;
      if (g === undefined || g.peer !== peer || g.keypair !== keypair) g = findGroup(groups, peer, keypair);
      g.bytes += this.rxMessageLengths[k]!;
      g.plaintext += ipLength;
      g.lastFrom = this.rxSlotOf[k]!;
      this.stats.rxPackets++;
    }
    this.rxPeers.length = 0;
    this.rxKeypairs.length = 0;
    if (writes > 0) {
      const written = this.tun!.writeBatch(arena, this.wOffsets, this.wLengths, writes);
      if (written < 0) {
        if (isInterfaceGoneErrno(written)) this.interfaceGone(written);
        this.stats.tunWriteErrors += writes;
      } else {
        this.stats.tunWriteErrors += writes - written;
      }
    }
    for (const g of groups) {
      g.peer.rxBytes += g.bytes;
      this.stats.rxBytes += g.bytes;
      core.dataReceived(g.peer, g.keypair!, this.endpointOf(g.peer, g.lastFrom), g.plaintext, now);
    }
  }

  /** The Endpoint of rxFrom entry `i`, reusing the peer's last object while the address is unchanged. */
  private endpointOf(peer: DatapathPeer, i: number): Endpoint {
    const at = ENDPOINT_ENTRY_SIZE * i;
    const last = this.lastFromByPeer.get(peer);
    if (
      last !== undefined &&
      this.rxFrom.compare(last.entry, 0, ENDPOINT_ENTRY_SIZE, at, at + ENDPOINT_ENTRY_SIZE) === 0
    )
      return last.endpoint;
    const entry = Buffer.from(this.rxFrom.subarray(at, at + ENDPOINT_ENTRY_SIZE));
    const endpoint = decodeEndpoint(entry, 0);
    this.lastFromByPeer.set(peer, { entry, endpoint });
    return endpoint;
  }

  // ---- control, timers, errors ---------------------------------------------------------------

  private transmit(to: Endpoint, message: Buffer): void {
    const udp = this.udp;
    if (udp === undefined || this.closed) return;
    if (message.length === 0 || message.length > this.ctlArena.length) return;
    if (!encodeEndpoint(to.address, to.port, this.ctlEndpoint, 0)) {
      this.stats.sendErrors++;
      return;
    }
    message.copy(this.ctlArena, 0);
    const one = this.one;
    one.offsets[0] = 0;
    one.lengths[0] = message.length;
    one.index[0] = 0;
    const sent = udp.sendBatch(this.ctlArena, one.offsets, one.lengths, this.ctlEndpoint, one.index, 1);
    if (sent === 1) this.stats.controlSent++;
    else this.stats.sendErrors++;
  }

  private onTick(): void {
    if (this.closed) return;
    if (this.tun !== undefined && !this.tun.exists()) {
      this.interfaceGone(0);
      return;
    }
    this.followMtu();
    this.core.tick(this.clock.now());
  }

  /**
   * Adopts an MTU set on the interface from outside (`ip link set mtu`, the agent), as
   * wireguard-go follows its TUN's MTU events, for the padding rule and status. The buffers do
   * not depend on it: reads take up to READ_CAPACITY bytes whatever the MTU.
   */
  private followMtu(): void {
    if (this.tun === undefined) return;
    const mtu = this.tun.mtu();
    if (mtu === this.mtuValue || mtu < MIN_TUNNEL_MTU || mtu > MAX_TUNNEL_MTU) return;
    this.logger.info({ from: this.mtuValue, to: mtu }, "interface MTU changed");
    this.mtuValue = mtu;
  }

  private interfaceGone(negErrno: number): void {
    if (this.gone) return;
    this.gone = true;
    this.logger.warn({ ifname: this.ifname, errno: -negErrno }, "TUN interface gone");
    this.tunWatcher?.stop();
    this.emit("interface-gone");
  }

  private drop(reason: DropReason, peer?: DatapathPeer): void {
    this.drops[reason]++;
    this.core.drop(reason, peer);
  }
}

function findGroup(groups: Group[], peer: DatapathPeer, keypair: TransportKeypair | undefined): Group {
  for (const g of groups) if (g.peer === peer && g.keypair === keypair) return g;
  const g: Group = { peer, keypair, bytes: 0, plaintext: 0, lastFrom: 0 };
  groups.push(g);
  return g;
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

let addon: NativeAddon | undefined;
function nativeAddon(): NativeAddon {
  addon ??= native();
  return addon;
}

function nativeSealOne(
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
