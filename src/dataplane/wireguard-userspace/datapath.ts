/**
 * The userspace WireGuard data path: a TUN device and a UDP socket, batched I/O and batched
 * ChaCha20-Poly1305 in native code, and every decision delegated to a {@link DatapathCore}
 * (src/wireguard/contract.ts). Its life, in order:
 *   1. created with its options (validated, the arenas allocated: buffers.ts);
 *   2. `start()` opens TUN and UDP, registers with the core and starts the watchers and the tick;
 *   3. packets flow through outbound.ts (TUN -> seal -> UDP), inbound.ts (UDP -> open -> TUN) and,
 *      while a peer has no keypair, staged.ts;
 *   4. every {@link TICK_INTERVAL_MS}: the interface is checked (deleted: "interface-gone"), an MTU
 *      set from outside is adopted, `core.tick` runs;
 *   5. live changes: `setListenPort` (rebind), `setFwmark`, `setMtu`; `counters()` any time;
 *   6. `close()` closes the socket and the TUN fd and forgets what was staged.
 */
import { EventEmitter } from "node:events";
import { systemClock, type Clock } from "../../clock.js";
import { PodcryptError } from "../../errors/index.js";
import type { Logger } from "../../log/logger.js";
import { logPollError } from "../../platform/poll/guard.js";
import type { FdWatcher } from "../../native.js";
import { BatchSender, BatchUdpSocket } from "../../platform/udp/batch-udp-socket.js";
import { checkTunnelMtu } from "../../platform/tun/tun-device.js";
import type { DatapathCore, DatapathPeer, DropReason } from "../../wireguard/contract.js";
import { checkBatchSize, followTunMtu, openTunUdp, takeTunUdp } from "../userspace/tun-udp.js";
import type { HandedFds } from "../../platform/handover/fds.js";
import { Inbound } from "./inbound.js";
import { Outbound } from "./outbound.js";
import { PathState, type PathStats } from "./path.js";
import { StagedQueue } from "./staged.js";

export { MAX_STAGED_PER_PEER } from "./staged.js";

/** Default tunnel MTU (wireguard-go's default). */
export const DEFAULT_MTU = 1420;
/** Default packets per TUN read / recvmmsg / sendmmsg batch (wireguard-go uses 128). */
export const DEFAULT_BATCH = 128;
/** Period of `core.tick` and of the interface-deleted check. */
export const TICK_INTERVAL_MS = 100;

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
   * buffers and syscalls on the receiving side; with the TUN offloads one stream went from a median
   * of 1,503 to 1,891 Mbit/s in five interleaved pairs of runs (bench/micro/tunnel-compare.ts
   * `--no-gro` compares). Falls back to one datagram per buffer, saying so once in the log, when the
   * kernel refuses it. Default true.
   */
  gro?: boolean;
  /**
   * Open the TUN device with IFF_VNET_HDR and TCP segmentation offload: the kernel hands TCP over
   * in super-segments of up to 64 KiB that the read cuts into packets (native/offload.cc), so one
   * read and one seal batch move tens of packets instead of one. Falls back to the plain device,
   * saying so once in the log, when the kernel refuses the offloads. Default true.
   */
  offload?: boolean;
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

/** A snapshot of the data path's counters (PathStats, plus what is staged and dropped). */
export interface DatapathCounters extends PathStats {
  /** Packets staged (waiting for a handshake) right now, all peers. */
  staged: number;
  /** Dropped packets by reason. */
  drops: Record<DropReason, number>;
  /** Whether the TUN device has the offloads (IFF_VNET_HDR with TSO); false before `start()`. */
  tunOffload: boolean;
  /** TCP super-segments read from the TUN device and cut into packets (TUN offloads). */
  tunSuperSegments: number;
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

/**
 * The packet-moving half of podcrypt's userspace WireGuard (see the file comment for its life and
 * outbound.ts, inbound.ts, staged.ts for the packet flows).
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
  private readonly path: PathState;
  private readonly staged: StagedQueue;
  private readonly outbound: Outbound;
  private readonly inbound: Inbound;
  private readonly linkUp: boolean;
  private readonly persistent: boolean;
  private readonly gro: boolean;
  private readonly offload: boolean;
  private port: number;
  private fwmark: number;

  private tunWatcher: FdWatcher | undefined;
  private udpWatcher: FdWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private gone = false;
  /** Handed over ({@link freeze}): closed for packets, its fds still open until `close()`. */
  private frozen = false;

  /** Counts and logs an exception caught in the TUN or UDP readiness callback (its batch is lost). */
  private readonly onCallbackError = (error: unknown): void => {
    logPollError(this.path.logger, "wireguard datapath", ++this.path.stats.callbackErrors, error);
  };

  /** Validates options and allocates the arenas; no I/O happens until `start()`. */
  constructor(options: WireguardDatapathOptions) {
    super();
    this.ifname = options.ifname;
    const batch = options.batchSize ?? DEFAULT_BATCH;
    const mtu = options.mtu ?? DEFAULT_MTU;
    this.linkUp = options.linkUp ?? false;
    this.persistent = options.persistent ?? false;
    this.port = options.listenPort;
    this.fwmark = options.fwmark ?? 0;
    checkBatchSize(batch);
    checkTunnelMtu(mtu);
    if (!Number.isInteger(this.port) || this.port < 0 || this.port > 65535)
      throw new PodcryptError("EINVAL", "listenPort must be 0..65535", {
        context: { listenPort: this.port },
      });
    this.path = new PathState(options.core, options.clock ?? systemClock, options.logger, mtu, (negErrno) =>
      this.interfaceGone(negErrno),
    );
    this.staged = new StagedQueue(this.path);
    this.outbound = new Outbound(
      this.path,
      this.staged,
      new BatchSender(options.gso ?? true, options.logger),
      batch,
    );
    this.gro = options.gro ?? true;
    this.offload = options.offload ?? true;
    this.inbound = new Inbound(this.path, batch, this.gro);
  }

  /** The bound UDP port (after `start()`; the chosen one when 0 was asked for). */
  get listenPort(): number {
    return this.port;
  }

  /** The tunnel MTU. */
  get mtu(): number {
    return this.path.mtu;
  }

  /**
   * Opens the TUN interface and the UDP socket, sets the MTU, registers with the core and starts
   * the watchers and the tick. Throws PodcryptError ETUN / EUDP (nothing is left open then).
   */
  start(handed?: HandedFds): void {
    if (this.started) throw new PodcryptError("ESTATE", "datapath already started");
    const path = this.path;
    if (path.closed) throw new PodcryptError("ESTATE", "datapath is closed");
    // With `handed` (a planned restart): the old daemon's device and socket, the same open files
    // (their queues, MTU, link state, persistence, bound port and mark stay as they were).
    const { tun, udp } =
      handed !== undefined
        ? takeTunUdp(handed)
        : openTunUdp(
            this.ifname,
            { mtu: path.mtu, up: this.linkUp, persistent: this.persistent, offload: this.offload },
            () => BatchUdpSocket.open(this.port, this.fwmark, this.gro),
            path.logger,
          );
    if (handed === undefined && this.gro && !udp.gro)
      path.logger.warn({ port: udp.port }, "UDP GRO refused by the kernel: one datagram per receive buffer");
    if (handed !== undefined) path.mtu = tun.mtu();
    this.started = true;
    path.tun = tun;
    path.udp = udp;
    this.port = udp.port;
    path.core.setTransmit((to, message) => this.outbound.transmit(to, message));
    path.core.onKeypairReady((peer) => this.outbound.keypairReady(peer));
    const hooks = path.core as DatapathCore & OptionalCoreHooks;
    hooks.onKeepalive?.((peer) => void this.outbound.sendKeepalive(peer));
    hooks.onHandshakeGaveUp?.((peer) => this.staged.dropAll(peer));
    this.tunWatcher = tun.watch((status) => this.outbound.onTunReadable(status), this.onCallbackError);
    this.udpWatcher = udp.watch((status) => this.inbound.onUdpReadable(status), this.onCallbackError);
    this.timer = setInterval(() => this.onTick(), TICK_INTERVAL_MS);
    this.timer.unref();
    path.logger.info(
      { ifname: tun.name, port: this.port, mtu: path.mtu, tunOffload: tun.vnetHdr },
      "wireguard datapath started",
    );
  }

  /**
   * A planned restart: stops reading, sending and ticking for good (watchers and tick closed,
   * staged packets dropped: the core's sessions go to the successor) and returns the fds the
   * successor takes. The fds stay open until {@link close} (the successor must have taken them).
   */
  freeze(): HandedFds {
    const path = this.path;
    const tun = path.tun;
    const udp = path.udp;
    if (!this.started || path.closed || tun === undefined || udp === undefined)
      throw new PodcryptError("ESTATE", "datapath is not running");
    path.closed = true;
    this.frozen = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.tunWatcher?.close();
    this.udpWatcher?.close();
    this.staged.clear();
    return {
      pid: process.pid,
      tun: { fd: tun.fd, name: tun.name },
      udp: { fd: udp.fd, port: udp.port, family: udp.family, gro: udp.gro },
    };
  }

  /** Stops everything and closes the socket and the TUN fd (removing the interface unless it is persistent). Idempotent. */
  close(): void {
    const path = this.path;
    if (this.frozen) {
      // Handed over: only the fds are left to close (the successor holds duplicates).
      this.frozen = false;
      path.udp?.close();
      path.tun?.close();
      return;
    }
    if (path.closed) return;
    path.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.tunWatcher?.close();
    this.udpWatcher?.close();
    path.udp?.close();
    path.tun?.close();
    this.staged.clear();
  }

  /**
   * Rebinds the UDP socket to `port` (0: ephemeral) while running; returns the bound port. On
   * failure (PodcryptError EUDP, e.g. EADDRINUSE) the old socket stays in use.
   */
  setListenPort(port: number): number {
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new PodcryptError("EINVAL", "listenPort must be 0..65535", { context: { listenPort: port } });
    const path = this.path;
    if (!this.started || path.closed) {
      this.port = port;
      return port;
    }
    if (port !== 0 && port === this.port) return port;
    const next = BatchUdpSocket.open(port, this.fwmark, this.gro);
    this.udpWatcher?.close();
    path.udp?.close();
    path.udp = next;
    this.port = next.port;
    this.udpWatcher = next.watch((status) => this.inbound.onUdpReadable(status), this.onCallbackError);
    path.logger.info({ port: this.port }, "wireguard datapath rebound");
    return this.port;
  }

  /** Sets SO_MARK on the UDP socket (0 clears it), now and after rebinds. */
  setFwmark(mark: number): void {
    if (!Number.isInteger(mark) || mark < 0 || mark > 0xffffffff)
      throw new PodcryptError("EINVAL", "fwmark must be a 32-bit unsigned integer", {
        context: { fwmark: mark },
      });
    this.fwmark = mark;
    if (this.path.udp !== undefined && !this.path.closed) this.path.udp.setMark(mark);
  }

  /** Changes the tunnel MTU (on the interface too, once started). */
  setMtu(mtu: number): void {
    checkTunnelMtu(mtu);
    if (this.path.tun !== undefined && !this.path.closed) this.path.tun.setMtu(mtu);
    this.path.mtu = mtu;
  }

  /** A copy of the counters. */
  counters(): DatapathCounters {
    const tun = this.path.tun;
    return {
      ...this.path.stats,
      staged: this.staged.count,
      drops: { ...this.path.drops },
      tunOffload: tun?.vnetHdr ?? false,
      tunSuperSegments: tun?.superSegments() ?? 0,
    };
  }

  /**
   * Sends a keepalive (an empty data message) to `peer` now. Returns false when the peer has no
   * endpoint or no sending keypair (the core may have started a handshake then).
   */
  sendKeepalive(peer: DatapathPeer): boolean {
    return this.outbound.sendKeepalive(peer);
  }

  private onTick(): void {
    const path = this.path;
    if (path.closed) return;
    if (path.tun !== undefined && !path.tun.exists()) {
      this.interfaceGone(0);
      return;
    }
    // Adopts an MTU set on the interface from outside (`ip link set mtu`, the agent), as
    // wireguard-go follows its TUN's MTU events, for the padding rule and status.
    if (path.tun !== undefined) path.mtu = followTunMtu(path.tun, path.mtu, path.logger);
    path.core.tick(path.clock.now());
  }

  private interfaceGone(negErrno: number): void {
    if (this.gone) return;
    this.gone = true;
    this.path.logger.warn({ ifname: this.ifname, errno: -negErrno }, "TUN interface gone");
    this.tunWatcher?.stop();
    this.emit("interface-gone");
  }
}
