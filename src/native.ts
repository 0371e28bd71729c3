import { createRequire } from "node:module";
import { join } from "node:path";
import { PodcryptError } from "./errors/index.js";
import { projectRoot } from "./paths.js";

/**
 * Watches a file descriptor for readability on the libuv loop (uv_poll_t), so TUN and UDP reads
 * wake the event loop without threadpool reads. The callback gets `status` (0, or a negated errno
 * when the fd reported an error, e.g. a deleted TUN interface; the watcher has then stopped) and
 * the libuv event bits. The fd is never closed by the watcher.
 */
export interface FdWatcher {
  /** Starts (or resumes) watching. */
  start(): void;
  /** Pauses watching; `start()` resumes. */
  stop(): void;
  /** Stops for good and releases the libuv handle. */
  close(): void;
}

/** Size of one endpoint entry: 16 address bytes | port BE16 | family (4 or 6) | 0. */
export const ENDPOINT_ENTRY_SIZE = 20;

/** The functions of native/ (addon.cc, tun.cc, poll.cc, udp.cc, aead.cc, esp.cc, netns.cc, capture.cc). */
export interface NativeAddon {
  /**
   * Opens (creating if needed) TUN interface `name`, non-blocking, without packet information.
   * With `offload`, with IFF_VNET_HDR and TUNSETOFFLOAD (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6):
   * `vnetHdr` says whether it got them; when the kernel refused the offloads the device is opened
   * plain and `offloadError` says why.
   */
  openTun(
    name: string,
    offload?: boolean,
  ): { fd: number; name: string; vnetHdr: boolean; offloadError?: string };
  /** Closes a file descriptor this addon returned. */
  closeFd(fd: number): void;
  /**
   * A duplicate in this process of fd `fd` of process `pid` (pidfd_open + pidfd_getfd, Linux 5.6;
   * needs ptrace rights over `pid`): the same open file, so what the kernel queued on it stays.
   * Throws naming the syscall and errno.
   */
  takeFd(pid: number, fd: number): number;
  /**
   * Asks the scheduler for a time slice of `ns` (100 000..100 000 000) nanoseconds for the calling
   * thread (sched_setattr sched_runtime on SCHED_OTHER / SCHED_BATCH: EEVDF custom slices, Linux
   * 6.12), keeping its policy and nice value. Returns the slice in effect as the kernel reports it
   * (0: the kernel has no custom slices), -1 when the thread has a realtime or deadline policy (left
   * alone). Throws naming the syscall and errno.
   */
  setSchedSlice(ns: number): number;

  /** See {@link FdWatcher}. */
  FdWatcher: new (fd: number, callback: (status: number, events: number) => void) => FdWatcher;

  /**
   * Reads up to `max` packets from a TUN fd without blocking: packet i lands at
   * `arena[i*slotSize + headroom]` (at most `capacity` bytes), its length in `lengths[i]`.
   * Returns the count (0: nothing queued) or a negated errno (EBADFD/EIO: the interface is gone).
   */
  tunRead(
    fd: number,
    arena: Buffer,
    slotSize: number,
    headroom: number,
    capacity: number,
    max: number,
    lengths: Uint32Array,
  ): number;
  /**
   * tunRead for a TUN fd with IFF_VNET_HDR: each read goes to `scratch` (at least 65 545 bytes) and
   * is split into the slots (a TCP super-segment into MSS-sized packets, headers and checksums
   * fixed; a partial checksum completed; garbage as one slot of length 0). What does not fit stays
   * in `scratch`, `state` (its length, the next segment; 0 0 when none) remembering it for the
   * next call, which continues it before reading; `state[2]` counts the super-segments read.
   */
  tunReadOffload(
    fd: number,
    arena: Buffer,
    slotSize: number,
    headroom: number,
    capacity: number,
    max: number,
    lengths: Uint32Array,
    scratch: Buffer,
    state: Uint32Array,
  ): number;
  /**
   * Splits one read of a TUN with IFF_VNET_HDR (`packet`: virtio_net_hdr + packet) into slots as
   * tunReadOffload does, from segment `first` (default 0); returns the slots filled (at most `max`).
   */
  tunSplit(
    packet: Buffer,
    arena: Buffer,
    slotSize: number,
    headroom: number,
    capacity: number,
    max: number,
    lengths: Uint32Array,
    first?: number,
  ): number;
  /**
   * Coalesces the TCP packets `arena[offsets[start..]]` that continue one another (one flow, ack,
   * window, options; full segments but the last; checksums valid; up to 64 KiB) into one
   * virtio_net_hdr + super-packet in `out` (at least 65 545 bytes), as tunWrite with `vnetHdr`
   * writes them. Returns [its length (0: packet `start` goes alone), the packets it holds].
   */
  tunCoalesce(
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    count: number,
    start: number,
    out: Buffer,
  ): [number, number];
  /** Whether a TUN fd has IFF_VNET_HDR (TUNGETIFF). */
  tunVnetHdr(fd: number): boolean;
  /**
   * Writes packets `arena[offsets[i]]`, `lengths[i]` bytes each (with `vnetHdr`, behind an all-zero
   * virtio_net_hdr: the fd has IFF_VNET_HDR); returns how many were taken, or a negated errno.
   */
  tunWrite(
    fd: number,
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    count: number,
    vnetHdr?: boolean,
  ): number;
  /** Sets the MTU of an interface (SIOCSIFMTU) in the calling thread's namespace. */
  setMtu(ifname: string, mtu: number): void;
  /** The MTU of an interface (SIOCGIFMTU). */
  getMtu(ifname: string): number;
  /** Sets or clears IFF_UP on an interface. */
  setLinkUp(ifname: string, up: boolean): void;
  /**
   * TUNSETPERSIST on a TUN fd: a persistent device (its addresses, routes, link state) outlives the
   * fds attached to it, and the next {@link openTun} of its name attaches to it again.
   */
  setTunPersist(fd: number, on: boolean): void;
  /** The ifindex of an interface, 0 when it does not exist. */
  interfaceIndex(ifname: string): number;
  /**
   * A non-blocking TCP socket listening on `host:port` inside the network namespace at `nsPath`
   * (e.g. `/run/netns/NAME`), created there with setns(2) and the calling thread moved back.
   * Returns its fd (for `net.Server.listen({fd})`); throws naming the namespace on failure.
   */
  listenTcpInNetns(nsPath: string, host: string, port: number): number;
  /**
   * An AF_PACKET socket (every protocol, both directions) bound to interface `ifname`,
   * non-blocking, with a receive buffer of `rcvbuf` bytes (SO_RCVBUFFORCE). Returns its fd (close
   * it with `closeFd`); throws naming the interface.
   */
  packetCaptureOpen(ifname: string, rcvbuf: number): number;
  /**
   * The next captured frame, copied into `buf` (cut to its length): its length, 0 when none is
   * queued, or a negated errno.
   */
  packetCaptureRead(fd: number, buf: Buffer): number;

  /**
   * Opens a non-blocking UDP socket bound to `port` (0: ephemeral): dual-stack `[::]` with
   * IPV6_V6ONLY=0 when IPv6 exists, else `0.0.0.0`; 8 MiB buffers; SO_MARK when `fwmark` is not 0;
   * UDP_GRO when `gro` and the kernel has it (`gro` in the result says whether it is on).
   */
  udpOpen(
    port: number,
    fwmark: number,
    gro?: boolean,
  ): { fd: number; port: number; family: 4 | 6; gro: boolean };
  /** Sets SO_MARK (0 clears it). */
  udpSetMark(fd: number, mark: number): void;
  /**
   * recvmmsg without blocking: datagram i at `arena[i*slotSize + headroom]`, its length in
   * `lengths[i]` (0xFFFFFFFF when longer than `capacity`), its source entry at `from[i*20]`.
   * With `segments`, `segments[i]` is the UDP GRO segment size of buffer i (0: a single datagram;
   * else consecutive datagrams of that size from one source, the last maybe shorter).
   * Returns the count, 0 when nothing is queued, or a negated errno.
   */
  udpRecv(
    fd: number,
    arena: Buffer,
    slotSize: number,
    headroom: number,
    capacity: number,
    max: number,
    lengths: Uint32Array,
    from: Buffer,
    segments?: Uint32Array,
  ): number;
  /**
   * sendmmsg: datagram i is `arena[offsets[i]]`, `lengths[i]` bytes, to the entry
   * `endpoints[endpointIndex[i]*20]`. `gso` groups runs to one endpoint with UDP_SEGMENT. Waits up
   * to 100 ms for buffer space on EAGAIN. When the kernel refuses GSO, the run goes datagram by
   * datagram and `info[0]` is set to 1; a run with a datagram too big for the path (EMSGSIZE) goes
   * datagram by datagram too, losing only that one. `info[1]`, when present, gets the errno of the
   * last datagram refused (0: none). `family`, the socket's as opened, saves a getsockname per
   * batch (looked up when absent). Returns how many datagrams left, or a negated errno.
   */
  udpSend(
    fd: number,
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    endpoints: Buffer,
    endpointIndex: Uint32Array,
    count: number,
    gso: boolean,
    info?: Uint32Array,
    family?: 4 | 6,
  ): number;
  /** Writes the 20-byte entry of `address`:`port` at `out[offset]`; false when not an IP literal. */
  encodeEndpoint(address: string, port: number, out: Buffer, offset: number): boolean;
  /** Reads a 20-byte entry back. */
  decodeEndpoint(buf: Buffer, offset: number): { address: string; port: number };
  /**
   * Opens a blocking UDP socket of `family` (6: IPV6_V6ONLY) bound to the wildcard address and
   * `port`, marked UDP_ENCAP_ESPINUDP (RFC 3948), so the kernel hands ESP arriving in UDP on that
   * port to XFRM. Returns the fd; holding it open is what keeps kernel ESP-in-UDP decapsulation on.
   */
  espInUdpOpen(port: number, family: 4 | 6): number;

  /**
   * WireGuard transport data (whitepaper 5.4.6), in place: for each i, pads the plaintext at
   * `offsets[i]+16` (`lengths[i]` bytes) to a multiple of 16 (not past `mtu`), encrypts it with
   * key `keys[keyIndex[i]*32]` and nonce `counters[i]`, appends the tag, writes the 16-byte header
   * (type 4, `receivers[i]`, counter) at `offsets[i]`, and sets `lengths[i]` to the message length.
   */
  sealBatch(
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    keys: Buffer,
    keyIndex: Uint32Array,
    receivers: Uint32Array,
    counters: Float64Array,
    mtu: number,
    count: number,
  ): void;
  /**
   * Opens data messages in place: message i at `offsets[i]` (`lengths[i]` bytes) with key
   * `keys[keyIndex[i]*32]`. Sets `counters[i]`, `ok[i]` (1: tag verified) and `lengths[i]` (padded
   * plaintext length at `offsets[i]+16`, 0 on failure). Returns the number that verified.
   */
  openBatch(
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    keys: Buffer,
    keyIndex: Uint32Array,
    counters: Float64Array,
    ok: Uint8Array,
    count: number,
  ): number;

  /**
   * ESP with AES-128-GCM (RFC 4303 tunnel mode, RFC 4106), in place: for each i, the inner packet
   * at `offsets[i]+16` (`lengths[i]` bytes) gets the padding 1, 2, 3.. to 4 bytes, pad length and
   * `nextHeaders[i]`, is encrypted with SA `keyIndex[i]` (`keys[k*20]`: key 16 || salt 4;
   * `keyInfo[k*3]`: SPI, ICV length, ESN 0/1) and sequence number `seqs[i]` (also the IV), the ICV
   * appended and SPI | sequence | IV written at `offsets[i]`; `lengths[i]` becomes the ESP length.
   */
  espSealBatch(
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    nextHeaders: Uint8Array,
    keys: Buffer,
    keyInfo: Uint32Array,
    keyIndex: Uint32Array,
    seqs: Float64Array,
    count: number,
  ): void;
  /**
   * Verifies and decrypts ESP packets in place: packet i at `offsets[i]` (`lengths[i]` bytes) with
   * SA `keyIndex[i]` (tables as in {@link espSealBatch}) and full sequence number `seqs[i]` (for
   * the AAD). Sets `ok[i]` (1: ICV verified) and `lengths[i]` (the decrypted payload at
   * `offsets[i]+16`, trailer included; 0 on failure). Returns the number that verified.
   */
  espOpenBatch(
    arena: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    keys: Buffer,
    keyInfo: Uint32Array,
    keyIndex: Uint32Array,
    seqs: Float64Array,
    ok: Uint8Array,
    count: number,
  ): number;
}

let cached: NativeAddon | undefined;

/** Loads build/Release/podcrypt_native.node, built by `npm ci` (node-gyp). */
export function native(): NativeAddon {
  if (cached === undefined) {
    const require = createRequire(import.meta.url);
    try {
      cached = require(join(projectRoot(), "build", "Release", "podcrypt_native.node")) as NativeAddon;
    } catch (cause) {
      throw new PodcryptError(
        "ENATIVE",
        "the native addon is not built: run `npm ci` (or `npm run install`)",
        {
          cause,
        },
      );
    }
  }
  return cached;
}
