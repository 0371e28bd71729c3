import type { Endpoint } from "../../src/wireguard/contract.js";
import { UapiErrno, UapiError, type UapiErrnoValue } from "../../src/wireguard/uapi/errors.js";
import { formatPrefix, maskPrefix, type IpPrefix } from "../../src/wireguard/uapi/ip.js";
import type {
  UapiDevice,
  UapiDeviceState,
  UapiPeerState,
  UapiPeerUpdate,
} from "../../src/wireguard/uapi/types.js";
import { publicFromPrivate } from "../../src/keys/x25519.js";

interface MemoryPeer {
  publicKey: Buffer;
  presharedKey: Buffer | undefined;
  endpoint: Endpoint | undefined;
  persistentKeepalive: number;
  allowedIps: IpPrefix[];
  lastHandshakeNs: bigint;
  rxBytes: bigint;
  txBytes: bigint;
}

/**
 * A stateful in-memory WireGuard device for UAPI tests: it keeps configuration the way
 * wireguard-go does (allowed IPs masked and owned by one peer at a time, a listen port that can be
 * in use) and supports fault injection. Not a call recorder: tests assert on its state.
 */
export class MemoryUapiDevice implements UapiDevice {
  private privateKey: Buffer | undefined;
  private listenPort = 0;
  private fwmark = 0;
  private readonly peers = new Map<string, MemoryPeer>();
  /** Ports some other socket holds: binding them fails with -EADDRINUSE. */
  readonly portsInUse = new Set<number>();
  private failNext: { op: string; errno: UapiErrnoValue } | undefined;
  /** The port chosen when 0 is requested. */
  ephemeralPort = 40000;

  /** Makes the next call of `op` (a method name) throw a UapiError with `errno`. */
  failNextCall(op: keyof UapiDevice, errno: UapiErrnoValue = UapiErrno.UNKNOWN): void {
    this.failNext = { op, errno };
  }

  private maybeFail(op: string): void {
    if (this.failNext?.op === op) {
      const { errno } = this.failNext;
      this.failNext = undefined;
      throw new UapiError(errno, `injected failure in ${op}`);
    }
  }

  /** Sets a peer's traffic counters and handshake time, as the data path would. */
  recordTraffic(publicKey: Buffer, rx: bigint, tx: bigint, lastHandshakeNs: bigint): void {
    const p = this.peers.get(publicKey.toString("hex"));
    if (p === undefined) throw new Error("no such peer");
    p.rxBytes = rx;
    p.txBytes = tx;
    p.lastHandshakeNs = lastHandshakeNs;
  }

  state(): UapiDeviceState {
    this.maybeFail("state");
    const peers: UapiPeerState[] = [...this.peers.values()].map((p) => ({
      ...p,
      allowedIps: [...p.allowedIps],
    }));
    return { privateKey: this.privateKey, listenPort: this.listenPort, fwmark: this.fwmark, peers };
  }

  publicKey(): Buffer | undefined {
    return this.privateKey === undefined ? undefined : publicFromPrivate(this.privateKey);
  }

  setPrivateKey(key: Buffer | undefined): void {
    this.maybeFail("setPrivateKey");
    this.privateKey = key === undefined ? undefined : Buffer.from(key);
    // As wireguard-go: a peer whose key is now our own public key is removed.
    const own = this.publicKey();
    if (own !== undefined) this.peers.delete(own.toString("hex"));
  }

  setListenPort(port: number): void {
    this.maybeFail("setListenPort");
    if (port !== 0 && this.portsInUse.has(port)) throw new Error(`bind: address already in use (${port})`);
    this.listenPort = port === 0 ? this.ephemeralPort : port;
  }

  setFwmark(mark: number): void {
    this.maybeFail("setFwmark");
    this.fwmark = mark;
  }

  removeAllPeers(): void {
    this.maybeFail("removeAllPeers");
    this.peers.clear();
  }

  hasPeer(publicKey: Buffer): boolean {
    return this.peers.has(publicKey.toString("hex"));
  }

  upsertPeer(u: UapiPeerUpdate): void {
    this.maybeFail("upsertPeer");
    const id = u.publicKey.toString("hex");
    let p = this.peers.get(id);
    if (p === undefined) {
      p = {
        publicKey: Buffer.from(u.publicKey),
        presharedKey: undefined,
        endpoint: undefined,
        persistentKeepalive: 0,
        allowedIps: [],
        lastHandshakeNs: 0n,
        rxBytes: 0n,
        txBytes: 0n,
      };
      this.peers.set(id, p);
    }
    if (u.presharedKey !== undefined)
      p.presharedKey = u.presharedKey === null ? undefined : Buffer.from(u.presharedKey);
    if (u.endpoint !== undefined) p.endpoint = { ...u.endpoint };
    if (u.persistentKeepalive !== undefined) p.persistentKeepalive = u.persistentKeepalive;
    if (u.replaceAllowedIps) p.allowedIps = [];
    for (const raw of u.allowedIps) {
      const prefix = maskPrefix(raw);
      const text = formatPrefix(prefix);
      // An allowed IP belongs to one peer: inserting it moves it (cryptokey routing table).
      for (const other of this.peers.values())
        other.allowedIps = other.allowedIps.filter((a) => formatPrefix(a) !== text);
      p.allowedIps.push(prefix);
    }
  }

  removePeer(publicKey: Buffer): void {
    this.maybeFail("removePeer");
    this.peers.delete(publicKey.toString("hex"));
  }
}
