/**
 * The state the outbound and inbound halves of the userspace WireGuard data path share (like
 * wireguard-go's Device that send.go and receive.go both use): the core, the TUN device and UDP
 * socket of the moment, the MTU, the counters and the drop accounting. Its life, in order:
 *   1. created by WireguardDatapath with the core, clock and logger;
 *   2. `start()` fills in `tun` and `udp` (`udp` is replaced when the port is rebound);
 *   3. the halves count into `stats` and drop through `drop()`, which tells the core too;
 *   4. `close()` sets `closed`; every half checks it before touching a descriptor.
 */
import type { Clock } from "../../clock.js";
import type { Logger } from "../../log/logger.js";
import type { TunDevice } from "../../platform/tun/tun-device.js";
import type { BatchUdpSocket } from "../../platform/udp/batch-udp-socket.js";
import type { DatapathCore, DatapathPeer, DropReason } from "../../wireguard/contract.js";
import { DROP_REASONS } from "./buffers.js";

/** The data path's counters kept as plain numbers. Bytes are WireGuard message bytes, as `wg show` counts them. */
export interface PathStats {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  keepalivesSent: number;
  keepalivesReceived: number;
  controlSent: number;
  controlReceived: number;
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
}

/** See the file comment. */
export class PathState {
  tun: TunDevice | undefined;
  udp: BatchUdpSocket | undefined;
  closed = false;
  readonly stats: PathStats = {
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
  readonly drops = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;

  /**
   * `mtu` is the tunnel MTU (it drives padding); `interfaceGone` is called with the negative errno
   * (0: found missing) when the TUN interface disappears.
   */
  constructor(
    readonly core: DatapathCore,
    readonly clock: Clock,
    readonly logger: Logger,
    public mtu: number,
    readonly interfaceGone: (negErrno: number) => void,
  ) {}

  /** Counts a dropped packet and tells the core. */
  drop(reason: DropReason, peer?: DatapathPeer): void {
    this.drops[reason]++;
    this.core.drop(reason, peer);
  }
}
