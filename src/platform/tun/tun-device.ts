import { PodcryptError } from "../../errors/index.js";
import { native, type FdWatcher } from "../../native.js";
import { guardPollCallback, type PollErrorHandler } from "../poll/guard.js";

/** errno values (Linux) that mean the TUN device or its fd is gone. */
const GONE_ERRNOS = new Set([9 /* EBADF */, 5 /* EIO */, 77 /* EBADFD */, 19 /* ENODEV */, 6 /* ENXIO */]);

/** True when a negated errno returned by a TUN read or write means the interface was deleted. */
export function isInterfaceGoneErrno(negErrno: number): boolean {
  return GONE_ERRNOS.has(-negErrno);
}

/**
 * A Linux TUN interface (IFF_TUN | IFF_NO_PI, non-blocking) with batched packet I/O through the
 * native addon. Created in the network namespace of the calling thread. Closing the fd removes a
 * non-persistent interface.
 */
export class TunDevice {
  private closed = false;

  private constructor(
    /** The interface name the kernel gave (the requested one, or `tun%d` expanded). */
    readonly name: string,
    /** The TUN file descriptor. */
    readonly fd: number,
  ) {}

  /** Opens (creating if needed) interface `ifname`. Throws PodcryptError ETUN on failure. */
  static open(ifname: string): TunDevice {
    try {
      const { fd, name } = native().openTun(ifname);
      return new TunDevice(name, fd);
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
    try {
      return new TunDevice(name, native().takeFd(pid, fd));
    } catch (cause) {
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
    return native().tunRead(this.fd, arena, slotSize, headroom, capacity, max, lengths);
  }

  /** Writes `count` packets (`arena[offsets[i]]`, `lengths[i]` bytes); returns how many the kernel took or a negated errno. */
  writeBatch(arena: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    return native().tunWrite(this.fd, arena, offsets, lengths, count);
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
