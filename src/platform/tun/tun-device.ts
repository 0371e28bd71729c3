import { PodcryptError } from "../../errors/index.js";
import { native, type FdWatcher } from "../../native.js";
import { guardPollCallback, type PollErrorHandler } from "../poll/guard.js";

/** errno values (Linux) that mean the TUN device or its fd is gone. */
const GONE_ERRNOS = new Set([9 /* EBADF */, 5 /* EIO */, 77 /* EBADFD */, 19 /* ENODEV */, 6 /* ENXIO */]);

/** True when a negated errno returned by a TUN read or write means the interface was deleted. */
export function isInterfaceGoneErrno(negErrno: number): boolean {
  return GONE_ERRNOS.has(-negErrno);
}

/** Bytes of one read of a TUN with offloads: a virtio_net_hdr (10) and up to 64 KiB of packet. */
const OFFLOAD_SCRATCH = 10 + 65535;

/**
 * A Linux TUN interface (IFF_TUN | IFF_NO_PI, non-blocking) with batched packet I/O through the
 * native addon. Created in the network namespace of the calling thread. Closing the fd removes a
 * non-persistent interface.
 *
 * Opened with `offload`, it has IFF_VNET_HDR and TCP segmentation offload (TSO): the kernel hands
 * a TCP stream over in super-segments of up to 64 KiB and leaves checksums partial, and
 * {@link readBatch} cuts them into MTU-sized packets with complete checksums (native/offload.cc),
 * so one read brings tens of packets (wireguard-go's tun/offload_linux.go does the same). Callers
 * see the same packets either way.
 */
export class TunDevice {
  private closed = false;
  /** With IFF_VNET_HDR: the read buffer and what of it is still to be split (length, next segment). */
  private readonly scratch: Buffer | undefined;
  private readonly splitState = new Uint32Array(3);

  private constructor(
    /** The interface name the kernel gave (the requested one, or `tun%d` expanded). */
    readonly name: string,
    /** The TUN file descriptor. */
    readonly fd: number,
    /** Whether the fd has IFF_VNET_HDR with the TSO offloads (reads split, writes carry a header). */
    readonly vnetHdr: boolean,
    /** Why the offloads asked for are missing (the kernel refused them), else undefined. */
    readonly offloadError?: string,
  ) {
    if (vnetHdr) this.scratch = Buffer.alloc(OFFLOAD_SCRATCH);
  }

  /**
   * Opens (creating if needed) interface `ifname`; with `offload`, with IFF_VNET_HDR and TSO (falls
   * back to the plain device when the kernel refuses: see {@link offloadError}). Throws
   * PodcryptError ETUN on failure.
   */
  static open(ifname: string, offload = false): TunDevice {
    try {
      const { fd, name, vnetHdr, offloadError } = native().openTun(ifname, offload);
      return new TunDevice(name, fd, vnetHdr, offloadError);
    } catch (cause) {
      throw new PodcryptError("ETUN", `cannot open TUN interface ${ifname}: ${(cause as Error).message}`, {
        cause,
        context: { ifname },
      });
    }
  }

  /**
   * Takes over fd `fd` of process `pid`, a TUN device named `name` (a daemon handing over to its
   * successor): a duplicate of the same open file. Throws PodcryptError ETUN.
   */
  static take(pid: number, fd: number, name: string): TunDevice {
    let taken: number | undefined;
    try {
      taken = native().takeFd(pid, fd);
      // The open file keeps the mode its opener chose (IFF_VNET_HDR or not).
      return new TunDevice(name, taken, native().tunVnetHdr(taken));
    } catch (cause) {
      if (taken !== undefined) native().closeFd(taken);
      throw new PodcryptError(
        "ETUN",
        `cannot take TUN interface ${name} from pid ${pid}: ${(cause as Error).message}`,
        {
          cause,
          context: { ifname: name, pid },
        },
      );
    }
  }

  /**
   * Reads up to `max` packets without blocking into `arena` slots (packet i at
   * `i*slotSize + headroom`, at most `capacity` bytes, length in `lengths[i]`). Returns the count or
   * a negated errno (see {@link isInterfaceGoneErrno}).
   */
  readBatch(
    arena: Buffer,
    slotSize: number,
    headroom: number,
    capacity: number,
    max: number,
    lengths: Uint32Array,
  ): number {
    if (this.scratch !== undefined)
      return native().tunReadOffload(
        this.fd,
        arena,
        slotSize,
        headroom,
        capacity,
        max,
        lengths,
        this.scratch,
        this.splitState,
      );
    return native().tunRead(this.fd, arena, slotSize, headroom, capacity, max, lengths);
  }

  /**
   * Whether packets of a super-segment read earlier are still waiting to be split (the slots of
   * the last {@link readBatch} ran out): the next readBatch returns them, although the fd may not
   * be readable.
   */
  pending(): boolean {
    return this.splitState[0] !== 0;
  }

  /** TCP super-segments read (and split) so far: 0 without offloads; wraps at 2^32. */
  superSegments(): number {
    return this.splitState[2]!;
  }

  /** Writes `count` packets (`arena[offsets[i]]`, `lengths[i]` bytes); returns how many the kernel took or a negated errno. */
  writeBatch(arena: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    return native().tunWrite(this.fd, arena, offsets, lengths, count, this.vnetHdr);
  }

  /**
   * Calls `callback(status)` whenever the fd is readable; status < 0 is a negated errno (device
   * gone). An exception it throws goes to `onError` instead of ending the process
   * (src/platform/poll/guard.ts).
   */
  watch(callback: (status: number) => void, onError: PollErrorHandler): FdWatcher {
    const watcher = new (native().FdWatcher)(this.fd, guardPollCallback(callback, onError));
    watcher.start();
    return watcher;
  }

  /** Sets the interface MTU (SIOCSIFMTU). */
  setMtu(mtu: number): void {
    native().setMtu(this.name, mtu);
  }

  /** The interface MTU as the kernel has it. */
  mtu(): number {
    return native().getMtu(this.name);
  }

  /** Brings the interface up or down. */
  setUp(up: boolean): void {
    native().setLinkUp(this.name, up);
  }

  /**
   * Makes the device persistent (TUNSETPERSIST) or not. A persistent device outlives this fd: when
   * the process dies its addresses, routes and link state stay, the kernel drops what is routed to
   * it (nothing reads), and {@link TunDevice.open} of the name attaches a new process to it. It goes
   * away only when deleted (`ip link del`), or when closed after being made transient again.
   */
  persist(on: boolean): void {
    try {
      native().setTunPersist(this.fd, on);
    } catch (cause) {
      throw new PodcryptError(
        "ETUN",
        `cannot make ${this.name} ${on ? "persistent" : "transient"}: ${(cause as Error).message}`,
        {
          cause,
          context: { ifname: this.name },
        },
      );
    }
  }

  /** Whether the interface still exists in this namespace (it is gone after `ip link del`). */
  exists(): boolean {
    return native().interfaceIndex(this.name) !== 0;
  }

  /** Closes the fd (idempotent); a device that is not persistent goes away with it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().closeFd(this.fd);
  }
}

/**
 * Sets interface `ifname` (a tunnel of this process's namespace) to `mtu` and up, through ioctls
 * rather than an `ip` process: reconcile passes call it every time, and a spawn costs far more
 * than the two syscalls. Throws PodcryptError ELINK naming the interface.
 */
export function ensureLinkUp(ifname: string, mtu: number): void {
  try {
    const n = native();
    if (n.getMtu(ifname) !== mtu) n.setMtu(ifname, mtu);
    n.setLinkUp(ifname, true);
  } catch (cause) {
    throw new PodcryptError(
      "ELINK",
      `cannot set ${ifname} to MTU ${mtu} and up: ${(cause as Error).message}`,
      {
        cause,
        context: { ifname, mtu },
      },
    );
  }
}

/** MTUs the userspace data planes accept for their tunnels (their buffers are sized from it). */
export const MIN_TUNNEL_MTU = 576;
export const MAX_TUNNEL_MTU = 9000;

/** Throws PodcryptError EINVAL unless `mtu` is an integer in {@link MIN_TUNNEL_MTU}..{@link MAX_TUNNEL_MTU}. */
export function checkTunnelMtu(mtu: number): void {
  if (!Number.isInteger(mtu) || mtu < MIN_TUNNEL_MTU || mtu > MAX_TUNNEL_MTU)
    throw new PodcryptError("EINVAL", `mtu must be ${MIN_TUNNEL_MTU}..${MAX_TUNNEL_MTU}`, {
      context: { mtu },
    });
}
