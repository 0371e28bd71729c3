/**
 * What the two userspace daemons' data paths (`wireguard-userspace/`, `esp-userspace/`) share: a
 * TUN interface and a UDP socket opened together (the TUN with its offloads when asked: IFF_VNET_HDR
 * with TSO, reads split and writes coalesced in native/offload.cc), the batch loop run on every
 * readiness wake-up, the continuation of a super-segment whose segments did not fit one batch, and
 * following an MTU set on the interface from outside.
 *
 * The batch loop, in order:
 *   1. the TUN fd or the UDP socket is readable (an FdWatcher wake-up);
 *   2. read one batch (TUN reads / recvmmsg) into the data path's arena;
 *   3. hand the batch to the data path (outbound: route, seal, send; inbound: open, check, write);
 *   4. again while batches come back full, at most {@link ROUNDS_PER_WAKEUP} times, then yield so
 *      the other direction is served too (wireguard-go's read routines, bounded for one thread).
 * A failed read ends the loop; the data path decides what the errno means.
 */
import { PodcryptError } from "../../errors/index.js";
import type { Logger } from "../../log/logger.js";
import { MAX_TUNNEL_MTU, MIN_TUNNEL_MTU, TunDevice } from "../../platform/tun/tun-device.js";
import { BatchUdpSocket } from "../../platform/udp/batch-udp-socket.js";
import type { HandedFds } from "../../platform/handover/fds.js";

/** Largest datagram accepted from the network (jumbo-frame peers included); longer ones are dropped. */
export const RX_CAPACITY = 9216;
/**
 * Largest inner packet read from the TUN interface. Reads do not follow the configured MTU: the
 * interface's MTU can be raised from outside at any moment (`ip link set mtu`, the agent), and a
 * packet read into a buffer sized from an older MTU would be cut short. One byte more than the
 * largest MTU accepted, so a read filling the whole buffer is known to be a packet too long
 * (dropped and counted).
 */
export const READ_CAPACITY = MAX_TUNNEL_MTU + 1;
/** The length recvBatch reports for a datagram longer than its slot. */
export const TRUNCATED = 0xffffffff;
/** Batches read per readiness wake-up before yielding to the event loop. */
export const ROUNDS_PER_WAKEUP = 4;

/** `n` rounded up to a multiple of `to` (slot sizes: 64 for cache lines, 8 for placement). */
export function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** How {@link openTunUdp} prepares the TUN interface. */
export interface TunSetup {
  /** The tunnel MTU set on the interface. */
  mtu: number;
  /** Bring the interface up. */
  up: boolean;
  /** Make the TUN device persistent (TUNSETPERSIST): it outlives the daemon. */
  persistent: boolean;
  /** Open it with IFF_VNET_HDR and TSO (TunDevice.open); default false. */
  offload?: boolean;
}

/**
 * Opens (or attaches to) TUN interface `ifname`, prepares it as `setup` says, then opens the UDP
 * socket with `openUdp`. When the kernel refuses the offloads asked for, the device is opened
 * without them and `logger` hears it once. Throws PodcryptError ETUN / EUDP; nothing stays open on
 * failure.
 */
export function openTunUdp(
  ifname: string,
  setup: TunSetup,
  openUdp: () => BatchUdpSocket,
  logger: Logger,
): { tun: TunDevice; udp: BatchUdpSocket } {
  const tun = TunDevice.open(ifname, setup.offload ?? false);
  if (tun.offloadError !== undefined)
    logger.warn(
      { ifname: tun.name, error: tun.offloadError },
      "TUN offloads refused by the kernel: one packet per read",
    );
  try {
    tun.setMtu(setup.mtu);
    if (setup.up) tun.setUp(true);
    if (setup.persistent) tun.persist(true);
    return { tun, udp: openUdp() };
  } catch (e) {
    tun.close();
    throw e;
  }
}

/**
 * A planned restart: takes the predecessor daemon's TUN device and UDP socket (duplicates of the
 * same open files, src/platform/handover/fds.ts), as they are (MTU, link state, persistence,
 * bound port and mark stay). Throws PodcryptError ETUN / EUDP; nothing stays open on failure.
 */
export function takeTunUdp(handed: HandedFds): { tun: TunDevice; udp: BatchUdpSocket } {
  const tun = TunDevice.take(handed.pid, handed.tun.fd, handed.tun.name);
  try {
    return { tun, udp: BatchUdpSocket.take(handed.pid, handed.udp) };
  } catch (e) {
    tun.close();
    throw e;
  }
}

/**
 * The MTU to use after a look at the interface: its own when it was changed from outside to a
 * value a tunnel accepts (logged), else `current`. Buffers never depend on it (reads take up to
 * {@link READ_CAPACITY}); it drives padding and status.
 */
export function followTunMtu(tun: TunDevice, current: number, logger: Logger): number {
  const mtu = tun.mtu();
  if (mtu === current || mtu < MIN_TUNNEL_MTU || mtu > MAX_TUNNEL_MTU) return current;
  logger.info({ from: current, to: mtu }, "interface MTU changed");
  return mtu;
}

/**
 * Runs the batch loop of one readiness wake-up: `read()` returns how many packets it placed (or a
 * negative errno), `handle(n)` processes them; the loop stops on an empty or short batch (fewer
 * than `batch`), after {@link ROUNDS_PER_WAKEUP} rounds, or as soon as `running()` is false.
 * Returns 0, or the negative errno of the read that failed.
 */
export function runBatches(
  batch: number,
  running: () => boolean,
  read: () => number,
  handle: (n: number) => void,
): number {
  for (let round = 0; round < ROUNDS_PER_WAKEUP && running(); round++) {
    const n = read();
    if (n < 0) return n;
    if (n === 0) break;
    handle(n);
    if (n < batch) break;
  }
  return 0;
}

/**
 * Continues a TUN device's super-segments (TUN offloads): when the slots of a read ran out before
 * the last segment of one, the rest waits in the device's scratch buffer, not in the kernel, so the
 * fd may never wake the watcher for it. After each wake-up's batches, {@link after} queues one
 * `resume` (the data path's TUN readiness handler) for the next event-loop turn while any is left.
 */
export class TunContinuation {
  private queued = false;

  constructor(private readonly resume: () => void) {}

  /** Queues `resume` when `tun` still holds segments and none is queued yet. */
  after(tun: Pick<TunDevice, "pending">): void {
    if (this.queued || !tun.pending()) return;
    this.queued = true;
    setImmediate(() => {
      this.queued = false;
      this.resume();
    });
  }
}

/** Checks a batch size (packets per TUN read / recvmmsg / sendmmsg): 1..1024. Throws PodcryptError EINVAL. */
export function checkBatchSize(batch: number): void {
  if (!Number.isInteger(batch) || batch < 1 || batch > 1024)
    throw new PodcryptError("EINVAL", "batchSize must be 1..1024", { context: { batchSize: batch } });
}
