/**
 * The userspace WireGuard daemon behind `podcrypt wireguard IFNAME`: the protocol core
 * ({@link Device}), the packet path ({@link WireguardDatapath}), the UAPI socket that `wg` talks to
 * ({@link UapiServer}) and a JSON status socket with the drop counters, wired together.
 *
 * Status socket: `/var/run/podcrypt/wireguard/IFNAME.sock` (mode 0600). A client connects and reads
 * one JSON document (see {@link DaemonStatus}), then the server closes. It lives outside
 * /var/run/wireguard on purpose: `wg show` treats every `*.sock` there as a UAPI socket. Read it
 * with `podcrypt wireguard-stats IFNAME`.
 *
 * Test hook: `PODCRYPT_WG_TIME_SCALE=N` (default 1) makes the protocol timers run N times faster
 * (REKEY_AFTER_TIME 120 s becomes 120/N s, and so do REKEY_TIMEOUT, keepalives and rejects), so a
 * test can watch several re-keys in a short run. Wall-clock handshake times are not scaled.
 */
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { z } from "zod";
import { join } from "node:path";
import { EventEmitter } from "node:events";
import { systemClock, type Clock } from "../../clock.js";
import { isValidationError, PodcryptError } from "../../errors/index.js";
import type { Logger } from "../../log/logger.js";
import { Device } from "../../wireguard/device.js";
import type { DropReason } from "../../wireguard/contract.js";
import { UapiErrno, UapiError } from "../../wireguard/uapi/errors.js";
import { formatEndpoint, formatPrefix, parsePrefix, type IpPrefix } from "../../wireguard/uapi/ip.js";
import { OwnerOnlySocketServer } from "../../platform/unix/listen.js";
import { handedFdsSchema, type HandedFds } from "../../platform/handover/fds.js";
import { startOrTakeOver } from "../../platform/handover/client.js";
import { deviceHandoverSchema } from "../../wireguard/handover.js";
import { UapiServer } from "./uapi-server.js";
import type { UapiDevice, UapiDeviceState, UapiPeerUpdate } from "../../wireguard/uapi/types.js";
import { WireguardDatapath, type DatapathCounters } from "./datapath.js";

/** Directory of the daemons' JSON status sockets. */
export const DEFAULT_STATUS_DIR = "/var/run/podcrypt/wireguard";

/** The status socket path of an interface. */
export function statusSocketPath(ifname: string, dir = DEFAULT_STATUS_DIR): string {
  return join(dir, `${ifname}.sock`);
}

/** What the status socket answers (no key material: public keys only, base64 as `wg` prints them). */
export interface DaemonStatus {
  readonly ifname: string;
  readonly pid: number;
  readonly listenPort: number;
  readonly publicKey: string | null;
  /** Drops by reason: the data path's own counts (every packet it dropped, with or without a peer). */
  readonly drops: Record<DropReason, number>;
  /** Drops the core counted (handshake failures, cookies, ...), device-wide. */
  readonly coreDrops: Readonly<Partial<Record<DropReason, number>>>;
  readonly datapath: Omit<DatapathCounters, "drops">;
  readonly peers: ReadonlyArray<{
    readonly publicKey: string;
    readonly endpoint: string | null;
    readonly rxBytes: number;
    readonly txBytes: number;
    /** Seconds since the epoch of the latest handshake, 0 for never. */
    readonly lastHandshake: number;
    readonly drops: Readonly<Partial<Record<DropReason, number>>>;
  }>;
}

/**
 * A clock whose monotonic time runs `scale` times as fast as the system's (wall time unchanged),
 * for tests that need to see timers fire (PODCRYPT_WG_TIME_SCALE).
 */
export function scaledClock(scale: number, base: Clock = systemClock): Clock {
  if (scale === 1) return base;
  const origin = base.now();
  return {
    now: () => origin + (base.now() - origin) * scale,
    wallNow: () => base.wallNow(),
    after: (ms, fn) => base.after(ms / scale, fn),
  };
}

/** Reads PODCRYPT_WG_TIME_SCALE (a positive number, default 1). */
export function timeScaleFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env["PODCRYPT_WG_TIME_SCALE"];
  if (raw === undefined || raw === "") return 1;
  const n = Number(raw);
  if (!(n > 0) || !Number.isFinite(n))
    throw new PodcryptError("EINVAL", `PODCRYPT_WG_TIME_SCALE must be a positive number, got "${raw}"`);
  return n;
}

const toPrefixText = (p: IpPrefix): string => formatPrefix(p);

const handoverAnswerSchema = z.object({
  ok: z.literal(true),
  handover: z.object({ fds: handedFdsSchema, device: deviceHandoverSchema }),
});

const refusalSchema = z.object({ ok: z.literal(false), error: z.string() });

/**
 * Why a handover answer was not taken, without any of its values: an answer that is not a refusal
 * may still carry the device's private key and session keys, so only the refusal's own message or
 * the paths of the fields that did not match are named.
 */
export function handoverFailure(answer: unknown, error: z.ZodError): string {
  const refusal = refusalSchema.safeParse(answer);
  if (refusal.success) return refusal.data.error;
  const paths = error.issues.slice(0, 3).map((i) => i.path.join(".") || "(answer)");
  return `unexpected answer (fields ${paths.join(", ")} do not match)`;
}

/**
 * Maps the UAPI port onto a {@link Device} and its {@link WireguardDatapath}: the device keeps the
 * configuration, the data path owns the socket (listen port and fwmark are applied there first,
 * so a port in use leaves the device unchanged).
 */
export class DeviceUapiAdapter implements UapiDevice {
  constructor(
    private readonly device: Device,
    private readonly datapath: WireguardDatapath,
  ) {}

  state(): UapiDeviceState {
    return {
      privateKey: this.device.privateKey,
      listenPort: this.datapath.listenPort,
      fwmark: this.device.fwmark,
      peers: this.device.peers().map((p) => ({
        publicKey: p.publicKey,
        presharedKey: p.presharedKey,
        endpoint: p.endpoint,
        lastHandshakeNs: BigInt(p.lastHandshakeTimeSec) * 1_000_000_000n + BigInt(p.lastHandshakeTimeNsec),
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        persistentKeepalive: p.persistentKeepaliveInterval,
        allowedIps: p.allowedIps.map((a) => parsePrefix(`${a.address}/${a.cidr}`)!),
      })),
    };
  }

  publicKey(): Buffer | undefined {
    return this.device.publicKey;
  }

  setPrivateKey(key: Buffer | undefined): void {
    this.device.setPrivateKey(key);
  }

  setListenPort(port: number): void {
    try {
      const bound = this.datapath.setListenPort(port);
      this.device.listenPort = bound;
    } catch (e) {
      throw new UapiError(UapiErrno.PORT_IN_USE, `failed to bind port ${port}`, { cause: e });
    }
  }

  setFwmark(mark: number): void {
    try {
      this.datapath.setFwmark(mark);
    } catch (e) {
      throw new UapiError(UapiErrno.PORT_IN_USE, "failed to set fwmark", { cause: e });
    }
    this.device.fwmark = mark;
  }

  removeAllPeers(): void {
    this.device.removeAllPeers();
  }

  hasPeer(publicKey: Buffer): boolean {
    return this.device.hasPeer(publicKey);
  }

  upsertPeer(u: UapiPeerUpdate): void {
    try {
      if (!this.device.upsertPeer(u.publicKey)) return;
      if (u.presharedKey !== undefined) this.device.setPresharedKey(u.publicKey, u.presharedKey ?? undefined);
      if (u.endpoint !== undefined) this.device.setEndpoint(u.publicKey, u.endpoint);
      if (u.replaceAllowedIps) this.device.replaceAllowedIps(u.publicKey, u.allowedIps.map(toPrefixText));
      else for (const a of u.allowedIps) this.device.addAllowedIp(u.publicKey, toPrefixText(a));
      // Last, as wireguard-go's handlePostConfig: turning it on sends a keepalive to the endpoint.
      if (u.persistentKeepalive !== undefined)
        this.device.setPersistentKeepalive(u.publicKey, u.persistentKeepalive);
    } catch (e) {
      if (isValidationError(e)) throw new UapiError(UapiErrno.INVALID, e.message, { cause: e });
      throw e;
    }
  }

  removePeer(publicKey: Buffer): void {
    this.device.removePeer(publicKey);
  }
}

/** Options of {@link WireguardDaemon}. */
export interface WireguardDaemonOptions {
  readonly ifname: string;
  readonly logger: Logger;
  /** Tunnel MTU. Default the data path's (1420). */
  readonly mtu?: number;
  /** UAPI socket directory. Default /var/run/wireguard. */
  readonly socketDir?: string;
  /** Status socket directory. Default {@link DEFAULT_STATUS_DIR}. */
  readonly statusDir?: string;
  /** Clock for the core and the data path. Default the system clock scaled by PODCRYPT_WG_TIME_SCALE. */
  readonly clock?: Clock;
  /** Keep the TUN device when the daemon ends (see WireguardDatapathOptions.persistent). Default false. */
  readonly persistent?: boolean;
  /**
   * Take over from the daemon running on this interface (a planned restart, see
   * {@link WireguardDaemon.start}) instead of creating the interface and socket. Default false.
   */
  readonly takeOver?: boolean;
}

/** Events of {@link WireguardDaemon}. */
export interface WireguardDaemonEvents {
  /** The TUN interface was deleted: the daemon should shut down. */
  "interface-gone": [];
  /** A successor took the interface, socket and sessions over: the daemon should exit. */
  "handed-over": [];
}

/**
 * One userspace WireGuard interface: creates the TUN device and UDP socket (port 0 until `wg set
 * listen-port`, like wireguard-go), then serves the UAPI and status sockets. `close()` removes
 * both sockets and the interface.
 */
export class WireguardDaemon extends EventEmitter<WireguardDaemonEvents> {
  readonly device: Device;
  readonly datapath: WireguardDatapath;
  readonly uapi: UapiServer;
  private readonly status: OwnerOnlySocketServer;
  private closed = false;
  private readonly clock: Clock;

  constructor(private readonly options: WireguardDaemonOptions) {
    super();
    const clock = options.clock ?? scaledClock(timeScaleFromEnv());
    this.clock = clock;
    this.device = new Device({ clock, random: (n) => randomBytes(n) });
    this.datapath = new WireguardDatapath({
      ifname: options.ifname,
      listenPort: 0,
      core: this.device,
      logger: options.logger.child({ part: "datapath" }),
      clock,
      ...(options.mtu !== undefined ? { mtu: options.mtu } : {}),
      ...(options.persistent === true ? { persistent: true } : {}),
    });
    this.uapi = new UapiServer({
      ifname: options.ifname,
      device: new DeviceUapiAdapter(this.device, this.datapath),
      logger: options.logger.child({ part: "uapi" }),
      ...(options.socketDir !== undefined ? { socketDir: options.socketDir } : {}),
      onHandover: (socket) => this.handOver(socket),
    });
    this.status = new OwnerOnlySocketServer(statusSocketPath(options.ifname, options.statusDir), (socket) => {
      socket.on("error", () => socket.destroy());
      socket.end(JSON.stringify(this.snapshot()) + "\n");
    });
  }

  /** The status socket's path (`/var/run/podcrypt/wireguard/IFNAME.sock` by default). */
  get statusPath(): string {
    return this.status.path;
  }

  /**
   * Opens the interface and socket, then the UAPI and status sockets. On failure nothing stays open.
   *
   * With `takeOver` (a planned restart) it asks the daemon serving the UAPI socket to hand over
   * (`handover=1`, podcrypt's extension of the UAPI): that daemon stops reading, sending and its
   * timers, answers with its TUN and UDP fds and its device (key, peers, live sessions with their
   * send counters, replay windows and timers) and stops listening; this one takes duplicates of the
   * fds (pidfd_getfd: the same open files, nothing queued in the kernel is lost), goes on with the
   * sessions (no handshake; counters continue, never go back), listens, and lets the old daemon
   * go, which then exits. The state travels only over the 0600 UAPI socket and is never logged.
   */
  async start(): Promise<void> {
    this.datapath.on("interface-gone", () => this.emit("interface-gone"));
    await startOrTakeOver({
      takeOver: this.options.takeOver === true,
      path: this.uapi.path,
      request: "handover=1\n",
      resume: (answer) => {
        const r = handoverAnswerSchema.safeParse(answer);
        if (!r.success)
          throw new PodcryptError(
            "EHANDOVER",
            `the WireGuard daemon at ${this.uapi.path} refused to hand over: ${handoverFailure(answer, r.error)}`,
          );
        const clock = this.clock;
        this.datapath.start(r.data.handover.fds);
        this.device.takeOver(r.data.handover.device, clock.now());
        this.datapath.setFwmark(this.device.fwmark);
        this.options.logger.info(
          { from: r.data.handover.fds.pid, peers: r.data.handover.device.peers.length },
          "took over the interface, socket and sessions of the previous daemon",
        );
      },
      fresh: () => this.datapath.start(),
      listen: async () => {
        this.device.listenPort = this.datapath.listenPort;
        await this.uapi.listen();
        await this.status.listen();
      },
      close: () => this.close(),
    });
  }

  /**
   * Hands everything to a successor (see {@link start}): stops the packet path and the device for
   * good (every session gives its counter space away: this daemon can never send on it again),
   * stops listening on both sockets (the successor listens next) and answers on `socket` with one
   * JSON line. Emits `handed-over` when the successor closes the connection, having taken the fds.
   */
  private handOver(socket: Socket): void {
    let fds: HandedFds;
    try {
      fds = this.datapath.freeze();
    } catch (e) {
      socket.write(JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) }) + "\n");
      return;
    }
    const device = this.device.handOver(this.clock.now());
    this.uapi.stopListening();
    this.status.stopListening();
    this.options.logger.info({ peers: device.peers.length }, "handing over to a successor daemon");
    socket.once("close", () => this.emit("handed-over"));
    socket.write(JSON.stringify({ ok: true, handover: { fds, device } }) + "\n");
  }

  /** Counters and peers for the status socket (public keys only). */
  snapshot(): DaemonStatus {
    const { drops, ...datapath } = this.datapath.counters();
    const pub = this.device.publicKey;
    return {
      ifname: this.options.ifname,
      pid: process.pid,
      listenPort: this.datapath.listenPort,
      publicKey: pub === undefined ? null : pub.toString("base64"),
      drops,
      coreDrops: this.device.drops().total,
      datapath,
      peers: this.device.peers().map((p) => ({
        publicKey: p.publicKey.toString("base64"),
        endpoint: p.endpoint === undefined ? null : formatEndpoint(p.endpoint),
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        lastHandshake: p.lastHandshakeTimeSec,
        drops: p.drops,
      })),
    };
  }

  /** Closes the sockets (removing their files) and the interface. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.uapi.close();
    await this.status.close();
    this.datapath.close();
  }
}
