import { PodcryptError } from "../../errors/index.js";
import type { Logger } from "../../log/logger.js";
import { ENDPOINT_ENTRY_SIZE, native, type FdWatcher } from "../../native.js";
import { guardPollCallback, type PollErrorHandler } from "../poll/guard.js";

export { ENDPOINT_ENTRY_SIZE };

/**
 * A non-blocking UDP socket made by the native addon for batched I/O (recvmmsg / sendmmsg):
 * dual-stack `[::]:port` with IPV6_V6ONLY=0 (IPv4 peers appear as family-4 endpoint entries), or
 * `0.0.0.0:port` where the namespace has no IPv6. Endpoints are 20-byte entries (see
 * {@link ENDPOINT_ENTRY_SIZE}), written with {@link encodeEndpoint}.
 */
export class BatchUdpSocket {
  private closed = false;

  private constructor(
    /** The socket fd. */
    readonly fd: number,
    /** The bound port (the ephemeral one when 0 was asked for). */
    readonly port: number,
    /** 6 for the dual-stack socket, 4 for an IPv4-only one. */
    readonly family: 4 | 6,
    /** Whether UDP GRO is on: `recvBatch` may then return coalesced datagrams (see its `segments`). */
    readonly gro: boolean,
  ) {}

  /** Binds `port` (0: ephemeral), with SO_MARK `fwmark` when not 0, UDP GRO when `gro` and available. Throws PodcryptError EUDP (e.g. port in use). */
  static open(port: number, fwmark = 0, gro = false): BatchUdpSocket {
    try {
      const s = native().udpOpen(port, fwmark, gro);
      return new BatchUdpSocket(s.fd, s.port, s.family, s.gro);
    } catch (cause) {
      throw new PodcryptError("EUDP", `cannot bind UDP port ${port}: ${(cause as Error).message}`, {
        cause,
        context: { port },
      });
    }
  }

  /**
   * Takes over the UDP socket `s.fd` of process `pid` (a daemon handing over to its successor): a
   * duplicate of the same socket, bound, with its queue. Throws PodcryptError EUDP.
   */
  static take(pid: number, s: { fd: number; port: number; family: 4 | 6; gro: boolean }): BatchUdpSocket {
    try {
      return new BatchUdpSocket(native().takeFd(pid, s.fd), s.port, s.family, s.gro);
    } catch (cause) {
      throw new PodcryptError(
        "EUDP",
        `cannot take UDP port ${s.port} from pid ${pid}: ${(cause as Error).message}`,
        {
          cause,
          context: { port: s.port, pid },
        },
      );
    }
  }

  /** recvmmsg without blocking; see NativeAddon.udpRecv. Returns the count or a negated errno. */
  recvBatch(
    arena: Buffer,
    slotSize: number,
    headroom: number,
    capacity: number,
    max: number,
    lengths: Uint32Array,
    from: Buffer,
    segments?: Uint32Array,
  ): number {
    return native().udpRecv(this.fd, arena, slotSize, headroom, capacity, max, lengths, from, segments);
  }

  /** sendmmsg (with UDP GSO when `gso`; `info[0]` = 1 when the kernel refused it); see NativeAddon.udpSend. Returns how many datagrams were sent or a negated errno. */
  sendBatch(
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    endpoints: Buffer,
    endpointIndex: Uint32Array,
    count: number,
    gso = false,
    info?: Uint32Array,
  ): number {
    return native().udpSend(
      this.fd,
      arena,
      offsets,
      lengths,
      endpoints,
      endpointIndex,
      count,
      gso,
      info,
      this.family,
    );
  }

  /** Sets SO_MARK (0 clears it). */
  setMark(mark: number): void {
    native().udpSetMark(this.fd, mark);
  }

  /**
   * Calls `callback(status)` whenever the socket is readable; an exception it throws goes to
   * `onError` instead of ending the process (src/platform/poll/guard.ts).
   */
  watch(callback: (status: number) => void, onError: PollErrorHandler): FdWatcher {
    const watcher = new (native().FdWatcher)(this.fd, guardPollCallback(callback, onError));
    watcher.start();
    return watcher;
  }

  /** Closes the socket (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().closeFd(this.fd);
  }
}

/** Writes the entry of `address`:`port` at `out[offset]`; false when `address` is not an IP literal. */
export function encodeEndpoint(address: string, port: number, out: Buffer, offset: number): boolean {
  return native().encodeEndpoint(address, port, out, offset);
}

/** Reads an endpoint entry back as `{address, port}` (IPv4 dotted, IPv6 compressed). */
export function decodeEndpoint(buf: Buffer, offset: number): { address: string; port: number } {
  return native().decodeEndpoint(buf, offset);
}

/**
 * Sends the data batches of one data path: with UDP GSO while the kernel takes it (its first
 * refusal turns GSO off for good, logged once), and a datagram the kernel refuses (EMSGSIZE, ...)
 * dropped with its errno logged once per errno, so a flood of them never floods the log.
 */
export class BatchSender {
  private gso: boolean;
  private readonly info = new Uint32Array(2);
  private lastRefusal = 0;

  constructor(
    gso: boolean,
    private readonly logger: Pick<Logger, "warn">,
  ) {
    this.gso = gso;
  }

  /** `udp.sendBatch` of `count` datagrams; returns how many the kernel took, or a negated errno. */
  send(
    udp: BatchUdpSocket,
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    endpoints: Buffer,
    endpointIndex: Uint32Array,
    count: number,
  ): number {
    const sent = udp.sendBatch(arena, offsets, lengths, endpoints, endpointIndex, count, this.gso, this.info);
    if (this.gso && this.info[0] === 1) {
      this.gso = false;
      this.logger.warn("UDP GSO refused by the kernel: sending datagram by datagram");
    }
    if (this.info[1] !== 0 && this.info[1] !== this.lastRefusal) {
      this.lastRefusal = this.info[1]!;
      this.logger.warn(
        { errno: this.lastRefusal },
        "the kernel refused a datagram: dropped (logged once per errno)",
      );
    }
    return sent;
  }
}
