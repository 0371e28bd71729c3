/**
 * The WireGuard device core: static identity, peers, cryptokey routing, handshakes, cookies,
 * keypair rotation and timers (whitepaper sections 2 - 6; wireguard-go `device/`), without I/O.
 * It implements {@link DatapathCore} for the packet-moving data path and offers the configuration
 * API that the UAPI (`wg set` / `wg get`) maps onto.
 */
import type { Clock, RandomBytes } from "../clock.js";
import { ValidationError } from "../errors/index.js";
import { AllowedIps, parseAllowedIp, type AllowedIp } from "./allowed-ips.js";
import {
  KEEPALIVE_TIMEOUT,
  KEY_SIZE,
  MAX_TIMER_HANDSHAKES,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  REJECT_AFTER_TIME,
  REKEY_SEND_COUNTER,
  REKEY_AFTER_TIME,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
  ZERO_KEY_MATERIAL_AFTER,
} from "./constants.js";
import type { DatapathCore, DatapathPeer, DropReason, Endpoint, TransportKeypair } from "./contract.js";
import { CookieChecker, LoadDetector, RateLimiter } from "./cookie.js";
import { equalBytes, keyToHex } from "./crypto.js";
import { publicFromPrivate } from "../keys/x25519.js";
import { IndexTable } from "./index-table.js";
import { Keypair } from "./keypair.js";
import {
  decodeCookieReply,
  decodeInitiation,
  decodeResponse,
  encodeInitiation,
  encodeResponse,
  messageType,
} from "./messages.js";
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSession,
  HandshakeState,
  type Handshake,
  type HandshakeEnv,
  type StaticIdentity,
} from "./noise.js";
import { Peer } from "./peer.js";
import { ReplayWindow } from "./replay.js";
import {
  deviceHandoverSchema,
  type DeviceHandover,
  type HandedKeypair,
  type HandedPeer,
} from "./handover.js";

/** Options of a {@link Device}. */
export interface DeviceOptions {
  /** Monotonic time for config-path events and wall time for TAI64N / latest handshake. */
  readonly clock: Clock;
  /** Randomness for ephemeral keys, indices, cookie secrets and timer jitter. */
  readonly random: RandomBytes;
  /** Handshake messages per second above which mac2 is demanded (default 128, whitepaper 5.3). */
  readonly underLoadThreshold?: number;
}

/** A peer as `wg get` reports it (UAPI "get" keys). */
export interface PeerSnapshot {
  readonly publicKey: Buffer;
  /** The preshared key, for the UAPI `get` only (never log it); undefined when none. */
  readonly presharedKey: Buffer | undefined;
  readonly endpoint: Endpoint | undefined;
  readonly allowedIps: AllowedIp[];
  /** Latest handshake wall time; 0/0 when none. */
  readonly lastHandshakeTimeSec: number;
  readonly lastHandshakeTimeNsec: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Seconds, 0 = off. */
  readonly persistentKeepaliveInterval: number;
  /** Always 1. */
  readonly protocolVersion: number;
  readonly drops: Readonly<Partial<Record<DropReason, number>>>;
}

/** Drop counters of the device and of each peer. */
export interface DropSnapshot {
  readonly total: Readonly<Partial<Record<DropReason, number>>>;
  readonly peers: ReadonlyArray<{
    readonly publicKey: Buffer;
    readonly drops: Readonly<Partial<Record<DropReason, number>>>;
  }>;
}

const keyId = (k: Buffer): string => k.toString("hex");

function checkKey(key: Buffer, field: string): void {
  if (!Buffer.isBuffer(key) || key.length !== KEY_SIZE)
    throw new ValidationError(field, "must be a 32-byte key");
}

/**
 * A WireGuard interface's protocol state. Pure: time comes in as `now` (contract methods) or from
 * the injected clock (configuration methods); bytes go out through the `transmit` callback.
 */
export class Device implements DatapathCore {
  private readonly clock: Clock;
  private readonly random: RandomBytes;
  private identity: StaticIdentity | undefined;
  private readonly peersByKey = new Map<string, Peer>();
  private readonly peersById = new Map<number, Peer>();
  private nextPeerId = 1;
  private readonly allowedIps = new AllowedIps<Peer>();
  private readonly indexTable: IndexTable<Peer>;
  private readonly cookieChecker: CookieChecker;
  private readonly load: LoadDetector;
  private readonly rateLimiter = new RateLimiter();
  private readonly totalDrops: Partial<Record<DropReason, number>> = {};
  private transmitFn: (to: Endpoint, message: Buffer) => void = () => {};
  private readonly keypairReady: Array<(peer: DatapathPeer) => void> = [];
  private readonly keepalive: Array<(peer: DatapathPeer) => void> = [];
  private readonly gaveUp: Array<(peer: DatapathPeer) => void> = [];
  private listenPortValue = 0;
  private fwmarkValue = 0;
  /**
   * Random bytes for timer jitter, drawn 256 at a time: every data message sent after one was
   * received asks for a jitter (timers.dataSent), and a randomBytes call per packet (a Buffer, its
   * external memory, the GC work that follows) cost a lone packet's round trip tens of microseconds.
   */
  private jitterPool: Buffer = Buffer.alloc(0);
  private jitterAt = 0;
  /** Handed over to a successor ({@link handOver}): sends nothing any more. */
  private handedOver = false;

  constructor(options: DeviceOptions) {
    this.clock = options.clock;
    this.random = options.random;
    this.indexTable = new IndexTable(options.random);
    this.cookieChecker = new CookieChecker(options.random);
    this.load = new LoadDetector(options.underLoadThreshold);
  }

  // ---- configuration (mapped onto the UAPI by src/wireguard/uapi) ------------------------------

  /** The private key, or undefined (UAPI `private_key`; never log it). */
  get privateKey(): Buffer | undefined {
    return this.identity?.privateKey;
  }

  /** The public key derived from the private key, or undefined. */
  get publicKey(): Buffer | undefined {
    return this.identity?.publicKey;
  }

  /**
   * Sets or clears the private key (UAPI `private_key`; all zeros clears, as wireguard-go). Peers
   * with the new public key are removed; every peer's static-static DH is recomputed and its
   * sessions stop sending, so the next packet starts a handshake with the new identity.
   */
  setPrivateKey(key: Buffer | undefined): void {
    if (key !== undefined) checkKey(key, "private_key");
    const cleared = key === undefined || key.every((b) => b === 0);
    if (cleared) {
      if (this.identity === undefined) return;
    } else if (this.identity !== undefined && equalBytes(this.identity.privateKey, key)) return;
    this.identity?.privateKey.fill(0);
    if (cleared) this.identity = undefined;
    else {
      const privateKey = Buffer.from(key);
      this.identity = { privateKey, publicKey: publicFromPrivate(privateKey) };
      const self = this.peersByKey.get(keyId(this.identity.publicKey));
      if (self !== undefined) this.removePeer(self.publicKey);
    }
    this.cookieChecker.setPublicKey(this.identity?.publicKey);
    const now = this.clock.now();
    for (const peer of this.peersByKey.values()) {
      peer.handshake.precompute(this.identity);
      this.expireCurrentKeypairs(peer, now);
    }
  }

  /** UAPI `listen_port`: a plain value; the daemon binds the socket. */
  get listenPort(): number {
    return this.listenPortValue;
  }
  set listenPort(port: number) {
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new ValidationError("listen_port", "must be 0..65535");
    this.listenPortValue = port;
  }

  /** UAPI `fwmark`: a plain value (0 = off); the daemon sets SO_MARK. */
  get fwmark(): number {
    return this.fwmarkValue;
  }
  set fwmark(mark: number) {
    if (!Number.isInteger(mark) || mark < 0 || mark > 0xffffffff)
      throw new ValidationError("fwmark", "must be a 32-bit unsigned integer");
    this.fwmarkValue = mark;
  }

  /** True when a peer with this public key exists. */
  hasPeer(publicKey: Buffer): boolean {
    return this.peersByKey.has(keyId(publicKey));
  }

  /** The peer with this public key, if any (its fields are live state; do not mutate). */
  peer(publicKey: Buffer): Peer | undefined {
    return this.peersByKey.get(keyId(publicKey));
  }

  /**
   * Creates the peer if absent (UAPI `public_key`). Returns false, creating nothing, for our own
   * public key (wireguard-go ignores such a peer).
   */
  upsertPeer(publicKey: Buffer): boolean {
    checkKey(publicKey, "public_key");
    if (this.identity !== undefined && equalBytes(this.identity.publicKey, publicKey)) return false;
    const id = keyId(publicKey);
    if (this.peersByKey.has(id)) return true;
    const peer = new Peer(this.nextPeerId++, Buffer.from(publicKey), () => this.jitter());
    peer.handshake.precompute(this.identity);
    this.peersByKey.set(id, peer);
    this.peersById.set(peer.id, peer);
    return true;
  }

  /** UAPI `preshared_key` (undefined or all zeros clears). */
  setPresharedKey(publicKey: Buffer, psk: Buffer | undefined): void {
    const peer = this.mustPeer(publicKey);
    if (psk !== undefined) checkKey(psk, "preshared_key");
    const none = psk === undefined || psk.every((b) => b === 0);
    peer.presharedKey?.fill(0);
    peer.presharedKey = none ? undefined : Buffer.from(psk);
    peer.handshake.presharedKey = none ? Buffer.alloc(KEY_SIZE) : Buffer.from(psk);
  }

  /** UAPI `endpoint`. */
  setEndpoint(publicKey: Buffer, endpoint: Endpoint): void {
    const peer = this.mustPeer(publicKey);
    if (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535)
      throw new ValidationError("endpoint", "port must be 1..65535");
    peer.endpoint = { address: endpoint.address, port: endpoint.port };
  }

  /**
   * UAPI `persistent_keepalive_interval` in seconds (0 = off, at most 65535). Turning it on asks
   * for a keepalive at once, as wireguard-go does on a running device.
   */
  setPersistentKeepalive(publicKey: Buffer, seconds: number): void {
    const peer = this.mustPeer(publicKey);
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > 65535)
      throw new ValidationError("persistent_keepalive_interval", "must be 0..65535");
    const was = peer.persistentKeepalive;
    peer.persistentKeepalive = seconds;
    if (seconds === 0) peer.timers.persistentKeepalive = undefined;
    else if (was === 0) this.emit(this.keepalive, peer);
  }

  /** UAPI `replace_allowed_ips=true` followed by `allowed_ip` lines: sets exactly this list. */
  replaceAllowedIps(publicKey: Buffer, prefixes: readonly string[]): void {
    const peer = this.mustPeer(publicKey);
    const parsed = prefixes.map((p) => parseAllowedIp(p));
    this.allowedIps.removeByPeer(peer);
    for (const p of parsed) this.allowedIps.insert(p.address, p.cidr, peer);
  }

  /** UAPI `allowed_ip`: adds a prefix (moving it from another peer if needed). */
  addAllowedIp(publicKey: Buffer, prefix: string): void {
    const peer = this.mustPeer(publicKey);
    const p = parseAllowedIp(prefix);
    this.allowedIps.insert(p.address, p.cidr, peer);
  }

  /** UAPI `allowed_ip=-PREFIX`: removes the prefix if this peer owns it. */
  removeAllowedIp(publicKey: Buffer, prefix: string): void {
    const peer = this.mustPeer(publicKey);
    const p = parseAllowedIp(prefix);
    this.allowedIps.remove(p.address, p.cidr, peer);
  }

  /** UAPI `remove=true`: drops the peer, its allowed IPs, indices and keys. Absent is not an error. */
  removePeer(publicKey: Buffer): void {
    const peer = this.peersByKey.get(keyId(publicKey));
    if (peer === undefined) return;
    this.peersByKey.delete(keyId(publicKey));
    this.peersById.delete(peer.id);
    this.allowedIps.removeByPeer(peer);
    this.zeroKeyMaterial(peer);
    peer.timers.stopAll();
    peer.handshake.precomputedStaticStatic?.fill(0);
    peer.presharedKey?.fill(0);
    peer.handshake.presharedKey.fill(0);
  }

  /** UAPI `replace_peers=true`. */
  removeAllPeers(): void {
    for (const peer of [...this.peersByKey.values()]) this.removePeer(peer.publicKey);
  }

  /**
   * A planned restart: the identity, peers and live sessions for a successor daemon
   * ({@link takeOver}), as JSON. Every keypair hands its counter space over (Keypair.handOff) and
   * every timer stops: from here on this device sends nothing (no data, keepalive or handshake),
   * so no (key, nonce) pair is used by both daemons. A handshake in progress is not handed over
   * (the successor starts a new one if it is still needed). Call it once the data path reads and
   * sends nothing any more. Holds the private key and session keys: never log it.
   */
  handOver(now: number): DeviceHandover {
    const rel = (t: number | undefined): number | null => (t === undefined ? null : t - now);
    const peers = [...this.peersByKey.values()].map((p): HandedPeer => {
      const kps = p.keypairs;
      const slots: Array<[HandedKeypair["slot"], Keypair<Peer> | undefined]> = [
        ["previous", kps.previous],
        ["current", kps.current],
        ["next", kps.next],
        ["lingering", p.lingering],
      ];
      const keypairs = slots.flatMap(([slot, kp]): HandedKeypair[] =>
        kp === undefined
          ? []
          : [
              {
                slot,
                receivingOn: kp === p.receivingOn,
                localIndex: kp.localIndex,
                remoteIndex: kp.remoteIndex,
                sendKey: kp.sendKey.toString("hex"),
                recvKey: kp.recvKey.toString("hex"),
                sendCounter: kp.handOff(),
                ageMs: Math.max(0, now - kp.created),
                isInitiator: kp.isInitiator,
                replay: kp.replay.snapshot(),
              },
            ],
      );
      const t = p.timers;
      const handed: HandedPeer = {
        publicKey: p.publicKey.toString("hex"),
        presharedKey: p.presharedKey === undefined ? null : p.presharedKey.toString("hex"),
        endpoint: p.endpoint === undefined ? null : { ...p.endpoint },
        allowedIps: this.allowedIps.entriesFor(p).map((a) => `${a.address}/${a.cidr}`),
        persistentKeepalive: p.persistentKeepalive,
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        lastHandshakeWall: p.lastHandshakeWall ?? null,
        lastSentHandshakeAgoMs: Number.isFinite(p.lastSentHandshake)
          ? Math.max(0, now - p.lastSentHandshake)
          : null,
        sentDataOnCurrent: p.sentDataOnCurrent,
        lastTimestamp: p.handshake.lastTimestamp.toString("hex"),
        timers: {
          retransmitHandshake: rel(t.retransmitHandshake),
          sendKeepalive: rel(t.sendKeepalive),
          newHandshake: rel(t.newHandshake),
          zeroKeyMaterial: rel(t.zeroKeyMaterial),
          persistentKeepalive: rel(t.persistentKeepalive),
          handshakeAttempts: t.handshakeAttempts,
          needAnotherKeepalive: t.needAnotherKeepalive,
          sentLastMinuteHandshake: t.sentLastMinuteHandshake,
        },
        keypairs,
      };
      t.stopAll();
      return handed;
    });
    this.handedOver = true;
    return {
      privateKey: this.identity === undefined ? null : this.identity.privateKey.toString("hex"),
      fwmark: this.fwmarkValue,
      peers,
    };
  }

  /**
   * Takes over what a predecessor's {@link handOver} gave, into this fresh device (no key, no
   * peers): its sessions go on where the predecessor stopped (send counters after the last one it
   * used, replay windows, indices, timers), so the peers see no handshake. Validated as a whole
   * first: on error nothing changed.
   */
  takeOver(input: unknown, now: number): void {
    if (this.identity !== undefined || this.peersByKey.size > 0)
      throw new ValidationError("handover", "a device with a key or peers cannot take over another");
    const r = deviceHandoverSchema.safeParse(input);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new ValidationError(`handover.${issue?.path.join(".") ?? ""}`, issue?.message ?? "invalid");
    }
    const h = r.data;
    const indices = new Set<number>();
    h.peers.forEach((p, i) => {
      try {
        for (const kp of p.keypairs) new ReplayWindow().restore(kp.replay);
      } catch (e) {
        throw new ValidationError(`handover.peers[${i}].keypairs`, (e as Error).message, { cause: e });
      }
      p.allowedIps.forEach((a, j) => parseAllowedIp(a, `handover.peers[${i}].allowedIps[${j}]`));
      for (const kp of p.keypairs) {
        if (indices.has(kp.localIndex))
          throw new ValidationError(`handover.peers[${i}].keypairs`, `index ${kp.localIndex} twice`);
        indices.add(kp.localIndex);
      }
      const slots = p.keypairs.map((k) => k.slot);
      if (new Set(slots).size !== slots.length)
        throw new ValidationError(`handover.peers[${i}].keypairs`, "a slot twice");
    });
    if (h.privateKey !== null) this.setPrivateKey(Buffer.from(h.privateKey, "hex"));
    this.fwmarkValue = h.fwmark;
    const at = (d: number | null): number | undefined => (d === null ? undefined : now + d);
    for (const hp of h.peers) {
      const publicKey = Buffer.from(hp.publicKey, "hex");
      if (!this.upsertPeer(publicKey)) continue;
      const peer = this.peersByKey.get(keyId(publicKey))!;
      if (hp.presharedKey !== null) this.setPresharedKey(publicKey, Buffer.from(hp.presharedKey, "hex"));
      if (hp.endpoint !== null) peer.endpoint = { ...hp.endpoint };
      for (const a of hp.allowedIps) this.addAllowedIp(publicKey, a);
      peer.persistentKeepalive = hp.persistentKeepalive;
      peer.rxBytes = hp.rxBytes;
      peer.txBytes = hp.txBytes;
      peer.lastHandshakeWall = hp.lastHandshakeWall ?? undefined;
      peer.lastSentHandshake =
        hp.lastSentHandshakeAgoMs === null ? Number.NEGATIVE_INFINITY : now - hp.lastSentHandshakeAgoMs;
      peer.sentDataOnCurrent = hp.sentDataOnCurrent;
      peer.handshake.lastTimestamp = Buffer.from(hp.lastTimestamp, "hex");
      const t = peer.timers;
      t.retransmitHandshake = at(hp.timers.retransmitHandshake);
      t.sendKeepalive = at(hp.timers.sendKeepalive);
      t.newHandshake = at(hp.timers.newHandshake);
      t.zeroKeyMaterial = at(hp.timers.zeroKeyMaterial);
      t.persistentKeepalive = at(hp.timers.persistentKeepalive);
      t.handshakeAttempts = hp.timers.handshakeAttempts;
      t.needAnotherKeepalive = hp.timers.needAnotherKeepalive;
      t.sentLastMinuteHandshake = hp.timers.sentLastMinuteHandshake;
      for (const k of hp.keypairs) {
        const kp = new Keypair<Peer>(
          {
            localIndex: k.localIndex,
            remoteIndex: k.remoteIndex,
            sendKey: Buffer.from(k.sendKey, "hex"),
            recvKey: Buffer.from(k.recvKey, "hex"),
            isInitiator: k.isInitiator,
          },
          now - k.ageMs,
          peer,
        );
        kp.sendCounter = k.sendCounter;
        kp.replay.restore(k.replay);
        this.indexTable.adoptKeypair(k.localIndex, peer, kp);
        if (k.slot === "lingering") peer.lingering = kp;
        else peer.keypairs[k.slot] = kp;
        if (k.receivingOn) peer.receivingOn = kp;
      }
    }
  }

  /** Snapshot of every peer for UAPI `get` (contains preshared keys: never log it). */
  peers(): PeerSnapshot[] {
    return [...this.peersByKey.values()].map((p) => {
      const wall = p.lastHandshakeWall;
      const sec = wall === undefined ? 0 : Math.floor(wall / 1000);
      return {
        publicKey: Buffer.from(p.publicKey),
        presharedKey: p.presharedKey === undefined ? undefined : Buffer.from(p.presharedKey),
        endpoint: p.endpoint,
        allowedIps: this.allowedIps.entriesFor(p),
        lastHandshakeTimeSec: sec,
        lastHandshakeTimeNsec: wall === undefined ? 0 : Math.round((wall - sec * 1000) * 1e6),
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        persistentKeepaliveInterval: p.persistentKeepalive,
        protocolVersion: 1,
        drops: { ...p.drops },
      };
    });
  }

  /** Drop counters by reason, for the device and per peer. */
  drops(): DropSnapshot {
    return {
      total: { ...this.totalDrops },
      peers: [...this.peersByKey.values()].map((p) => ({
        publicKey: Buffer.from(p.publicKey),
        drops: { ...p.drops },
      })),
    };
  }

  /** Public key (hex) of a data path peer, for logs and status (never a secret). */
  peerKeyHex(peer: DatapathPeer): string | undefined {
    const p = this.peersById.get(peer.id);
    return p === undefined ? undefined : keyToHex(p.publicKey);
  }

  /** Input for the under-load decision from a data path that queues handshakes (whitepaper 5.3). */
  reportHandshakeQueueDepth(depth: number, now: number): void {
    this.load.reportQueueDepth(depth, now);
  }

  /** Whether the device currently demands mac2 (under load, whitepaper 5.3). */
  isUnderLoad(now: number): boolean {
    return this.load.isUnderLoad(now);
  }

  // ---- DatapathCore -----------------------------------------------------------------------

  setTransmit(transmit: (to: Endpoint, message: Buffer) => void): void {
    this.transmitFn = transmit;
  }

  onKeypairReady(callback: (peer: DatapathPeer) => void): void {
    this.keypairReady.push(callback);
  }

  onKeepalive(callback: (peer: DatapathPeer) => void): void {
    this.keepalive.push(callback);
  }

  onHandshakeGaveUp(callback: (peer: DatapathPeer) => void): void {
    this.gaveUp.push(callback);
  }

  peerForDestination(ipPacket: Buffer, offset: number, length: number): DatapathPeer | undefined {
    return this.allowedIps.lookupPacket(ipPacket, offset, length, "dst");
  }

  sourceAllowed(peer: DatapathPeer, ipPacket: Buffer, offset: number, length: number): boolean {
    const owner = this.allowedIps.lookupPacket(ipPacket, offset, length, "src");
    return owner !== undefined && owner.id === peer.id;
  }

  sendKeypair(dpPeer: DatapathPeer, now: number): TransportKeypair | undefined {
    const peer = this.peersById.get(dpPeer.id);
    if (peer === undefined) return undefined;
    const kp = peer.keypairs.current;
    if (kp !== undefined && kp.canSend(now)) {
      // whitepaper 6.2: rekey after REKEY_AFTER_MESSAGES (any end) or REKEY_AFTER_TIME (the initiator)
      if (kp.sendCounter >= REKEY_SEND_COUNTER || (kp.isInitiator && now - kp.created >= REKEY_AFTER_TIME))
        this.sendHandshakeInitiation(peer, false, now);
      return kp;
    }
    this.sendHandshakeInitiation(peer, false, now);
    return undefined;
  }

  receiveKeypair(
    receiverIndex: number,
    now: number,
  ): { keypair: TransportKeypair; peer: DatapathPeer } | undefined {
    const entry = this.indexTable.lookup(receiverIndex);
    const kp = entry?.keypair;
    if (kp === undefined || !kp.canReceive(now)) return undefined;
    return { keypair: kp, peer: kp.peer };
  }

  acceptCounter(keypair: TransportKeypair, counter: number): boolean {
    return keypair instanceof Keypair && keypair.replay.accept(counter);
  }

  dataReceived(
    dpPeer: DatapathPeer,
    keypair: TransportKeypair,
    from: Endpoint,
    plaintextLength: number,
    now: number,
  ): void {
    const peer = this.peersById.get(dpPeer.id);
    if (peer === undefined) return;
    // whitepaper 6.2: the initiator rekeys when its session nears REJECT_AFTER_TIME on receive
    const current = peer.keypairs.current;
    if (
      current !== undefined &&
      current.isInitiator &&
      !peer.timers.sentLastMinuteHandshake &&
      now - current.created >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    ) {
      peer.timers.sentLastMinuteHandshake = true;
      this.sendHandshakeInitiation(peer, false, now);
    }
    peer.timers.anyAuthenticatedPacketTraversal(now, peer.persistentKeepalive);
    peer.timers.anyAuthenticatedPacketReceived();
    if (keypair instanceof Keypair) peer.receivingOn = keypair as Keypair<Peer>;
    if (keypair === peer.keypairs.next) {
      // whitepaper 5.4.6: the initiator's first data message confirms the responder's keypair
      const kps = peer.keypairs;
      if (kps.previous !== undefined) this.retireKeypair(peer, kps.previous);
      kps.previous = kps.current;
      kps.current = kps.next;
      kps.next = undefined;
      peer.sentDataOnCurrent = false;
      this.handshakeComplete(peer);
      this.emit(this.keypairReady, peer);
    }
    // Roaming (whitepaper 2.1); the same endpoint keeps its object (no allocation per batch).
    if (peer.endpoint?.address !== from.address || peer.endpoint.port !== from.port)
      peer.endpoint = { address: from.address, port: from.port };
    if (plaintextLength > 0) peer.timers.dataReceived(now);
  }

  dataSent(dpPeer: DatapathPeer, plaintextLength: number, now: number): void {
    const peer = this.peersById.get(dpPeer.id);
    if (peer === undefined) return;
    peer.timers.anyAuthenticatedPacketTraversal(now, peer.persistentKeepalive);
    peer.timers.anyAuthenticatedPacketSent();
    if (plaintextLength > 0) {
      peer.timers.dataSent(now);
      peer.sentDataOnCurrent = true;
    }
  }

  handleControl(message: Buffer, from: Endpoint, now: number): void {
    if (this.handedOver) return;
    const type = messageType(message);
    if (type === MESSAGE_INITIATION || type === MESSAGE_RESPONSE) {
      const init = type === MESSAGE_INITIATION ? decodeInitiation(message) : undefined;
      const resp = type === MESSAGE_RESPONSE ? decodeResponse(message) : undefined;
      if (init === undefined && resp === undefined) return this.drop("malformed");
      if (this.identity === undefined || !this.cookieChecker.checkMac1(message))
        return this.drop("handshake-failed");
      if (this.load.record(now)) {
        if (!this.cookieChecker.checkMac2(message, from, now)) {
          const sender = (init ?? resp)!.sender;
          const reply = this.cookieChecker.createReply(message, sender, from, now);
          if (reply !== undefined) this.transmitFn(from, reply);
          return this.drop("cookie-required");
        }
        if (!this.rateLimiter.allow(from.address, now)) return this.drop("cookie-required");
      }
      if (init !== undefined) return this.handleInitiation(this.identity, init, from, now);
      return this.handleResponse(this.identity, resp!, from, now);
    }
    if (type === MESSAGE_COOKIE_REPLY) {
      const reply = decodeCookieReply(message);
      if (reply === undefined) return this.drop("malformed");
      const entry = this.indexTable.lookup(reply.receiver);
      if (entry === undefined) return this.drop("unknown-index");
      if (!entry.peer.cookieGenerator.consumeReply(reply, now))
        return this.drop("handshake-failed", entry.peer);
      return;
    }
    this.drop("malformed");
  }

  tick(now: number): void {
    if (this.handedOver) return;
    // The data path calls this after every wake-up: without a due timer it allocates nothing.
    let due = false;
    for (const peer of this.peersByKey.values()) {
      if (peer.timers.anyDue(now)) {
        due = true;
        break;
      }
    }
    if (!due) return;
    for (const peer of [...this.peersByKey.values()]) {
      for (const timer of peer.timers.takeDue(now)) {
        if (!this.peersById.has(peer.id)) break;
        switch (timer) {
          case "retransmitHandshake":
            if (peer.timers.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
              // whitepaper 6.4: give up after REKEY_ATTEMPT_TIME, drop staged packets
              peer.timers.sendKeepalive = undefined;
              this.emit(this.gaveUp, peer);
              if (peer.timers.zeroKeyMaterial === undefined)
                peer.timers.zeroKeyMaterial = now + ZERO_KEY_MATERIAL_AFTER;
            } else {
              peer.timers.handshakeAttempts++;
              this.sendHandshakeInitiation(peer, true, now);
            }
            break;
          case "sendKeepalive":
            this.emit(this.keepalive, peer);
            if (peer.timers.needAnotherKeepalive) {
              peer.timers.needAnotherKeepalive = false;
              peer.timers.sendKeepalive = now + KEEPALIVE_TIMEOUT;
            }
            break;
          case "newHandshake":
            // we sent data and heard nothing back for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
            this.sendHandshakeInitiation(peer, false, now);
            break;
          case "zeroKeyMaterial":
            this.zeroKeyMaterial(peer);
            break;
          case "persistentKeepalive":
            if (peer.persistentKeepalive > 0) this.emit(this.keepalive, peer);
            break;
        }
      }
    }
  }

  drop(reason: DropReason, dpPeer?: DatapathPeer): void {
    this.totalDrops[reason] = (this.totalDrops[reason] ?? 0) + 1;
    const peer = dpPeer === undefined ? undefined : this.peersById.get(dpPeer.id);
    if (peer !== undefined) peer.drops[reason] = (peer.drops[reason] ?? 0) + 1;
  }

  // ---- internals ------------------------------------------------------------------------------

  private jitter(): number {
    if (this.jitterAt + 2 > this.jitterPool.length) {
      this.jitterPool = Buffer.from(this.random(256));
      this.jitterAt = 0;
    }
    const r = this.jitterPool.readUInt16LE(this.jitterAt);
    this.jitterAt += 2;
    return r % (REKEY_TIMEOUT_JITTER_MAX + 1);
  }

  private env(now: number, peer: Peer): HandshakeEnv {
    void now;
    return {
      random: this.random,
      wallNow: this.clock.wallNow(),
      newIndex: (hs: Handshake) => {
        if (hs.localIndex !== 0) this.releaseHandshakeIndex(hs);
        return this.indexTable.newIndexForHandshake(peer, hs);
      },
    };
  }

  private releaseHandshakeIndex(hs: Handshake): void {
    const e = this.indexTable.lookup(hs.localIndex);
    if (e !== undefined && e.handshake === hs) this.indexTable.delete(hs.localIndex);
  }

  /** Forgets a forked initiation of `peer` (superseded by a newer one, or the peer's keys go). */
  private releasePendingInitiation(peer: Peer): void {
    const p = peer.pendingInitiation;
    if (p === undefined) return;
    this.releaseHandshakeIndex(p);
    p.clear();
    p.presharedKey.fill(0);
    p.precomputedStaticStatic?.fill(0);
    peer.pendingInitiation = undefined;
  }

  /** wireguard-go SendHandshakeInitiation: at most one initiation per REKEY_TIMEOUT. */
  private sendHandshakeInitiation(peer: Peer, isRetry: boolean, now: number): void {
    if (this.handedOver) return;
    if (!isRetry) peer.timers.handshakeAttempts = 0;
    if (this.identity === undefined) return;
    if (now - peer.lastSentHandshake < REKEY_TIMEOUT) return;
    peer.lastSentHandshake = now;
    this.releasePendingInitiation(peer);
    const msg = createInitiation(this.identity, peer.handshake, this.env(now, peer));
    if (msg === undefined) return;
    const raw = encodeInitiation(msg);
    peer.cookieGenerator.addMacs(raw, now);
    peer.timers.anyAuthenticatedPacketTraversal(now, peer.persistentKeepalive);
    peer.timers.anyAuthenticatedPacketSent();
    if (peer.endpoint !== undefined) this.transmitFn(peer.endpoint, raw);
    else this.drop("no-endpoint", peer);
    peer.timers.handshakeInitiated(now);
  }

  private handleInitiation(
    identity: StaticIdentity,
    msg: ReturnType<typeof decodeInitiation> & object,
    from: Endpoint,
    now: number,
  ): void {
    let found: Peer | undefined;
    let fork: Handshake | undefined;
    const r = consumeInitiation(
      identity,
      msg,
      (pk) => {
        const p = this.peersByKey.get(keyId(pk));
        if (p?.handshake.state === HandshakeState.InitiationCreated) fork = p.handshake.forkInitiation();
        found = p;
        return p?.handshake;
      },
      now,
    );
    if (r === undefined || typeof r === "string" || found === undefined) {
      fork?.clear();
      return this.drop("handshake-failed", found);
    }
    const peer = found;
    if (fork !== undefined) {
      // Both ends initiated at once. The reference implementations let the peer's initiation
      // overwrite ours and reject the response to it, so neither end gets a sending session until
      // a retry REKEY_TIMEOUT later (and the retries may collide again). Our initiation lives on
      // under its index instead: its response still completes a session of ours.
      this.releasePendingInitiation(peer);
      this.indexTable.rebind(fork.localIndex, fork);
      peer.handshake.localIndex = 0;
      peer.pendingInitiation = fork;
    }
    peer.timers.anyAuthenticatedPacketTraversal(now, peer.persistentKeepalive);
    peer.timers.anyAuthenticatedPacketReceived();
    peer.endpoint = { address: from.address, port: from.port };
    // send the response
    peer.lastSentHandshake = now;
    const resp = createResponse(peer.handshake, this.env(now, peer));
    if (resp === undefined) return this.drop("handshake-failed", peer);
    const raw = encodeResponse(resp);
    peer.cookieGenerator.addMacs(raw, now);
    const keys = deriveSession(peer.handshake);
    if (keys === undefined) return this.drop("handshake-failed", peer);
    this.beginSession(peer, new Keypair(keys, now, peer));
    peer.timers.sessionDerived(now);
    peer.timers.anyAuthenticatedPacketTraversal(now, peer.persistentKeepalive);
    peer.timers.anyAuthenticatedPacketSent();
    this.transmitFn(peer.endpoint, raw);
  }

  private handleResponse(
    identity: StaticIdentity,
    msg: ReturnType<typeof decodeResponse> & object,
    from: Endpoint,
    now: number,
  ): void {
    const entry = this.indexTable.lookup(msg.receiver);
    const hs = entry?.handshake;
    if (entry === undefined || hs === undefined) return this.drop("unknown-index");
    const peer = entry.peer;
    if (!consumeResponse(identity, hs, msg)) return this.drop("handshake-failed", peer);
    peer.endpoint = { address: from.address, port: from.port };
    peer.timers.anyAuthenticatedPacketTraversal(now, peer.persistentKeepalive);
    peer.timers.anyAuthenticatedPacketReceived();
    const keys = deriveSession(hs);
    if (keys === undefined) return this.drop("handshake-failed", peer);
    if (peer.pendingInitiation === hs) peer.pendingInitiation = undefined;
    this.beginSession(peer, new Keypair(keys, now, peer));
    peer.timers.sessionDerived(now);
    this.handshakeComplete(peer);
    this.emit(this.keypairReady, peer);
    // whitepaper 5.4.6: the initiator confirms the session with data, or with a keepalive
    if (!peer.sentDataOnCurrent) this.emit(this.keepalive, peer);
  }

  /** wireguard-go BeginSymmetricSession: slots the new keypair. */
  private beginSession(peer: Peer, kp: Keypair<Peer>): void {
    this.indexTable.swapToKeypair(kp.localIndex, kp);
    const kps = peer.keypairs;
    if (kp.isInitiator) {
      const previous = kps.previous;
      if (kps.next !== undefined) {
        kps.previous = kps.next;
        kps.next = undefined;
        if (kps.current !== undefined) this.retireKeypair(peer, kps.current);
      } else {
        kps.previous = kps.current;
      }
      if (previous !== undefined) this.retireKeypair(peer, previous);
      kps.current = kp;
      peer.sentDataOnCurrent = false;
    } else {
      if (kps.next !== undefined) this.retireKeypair(peer, kps.next);
      kps.next = kp;
      if (kps.previous !== undefined) this.retireKeypair(peer, kps.previous);
      kps.previous = undefined;
    }
  }

  private handshakeComplete(peer: Peer): void {
    // A session is up: an initiation still waiting beside it is no longer needed.
    this.releasePendingInitiation(peer);
    peer.timers.handshakeComplete();
    peer.lastHandshakeWall = this.clock.wallNow();
  }

  /**
   * Takes `kp` out of the slots. The keypair the peer was last seen sending on stays receivable
   * (lingering, outside the slots) until another one lingers in its place, REJECT_AFTER_TIME ends
   * it or the key material is erased, as `previous` does for a single initiator. The three slots
   * assume one initiator per session; after simultaneous initiations each end sends on the session
   * it initiated and receives on the one it answered, which sits in `previous`, and the next
   * handshake would free it while the peer still sends on it (wireguard-go and the kernel never
   * get there: they reject the response to an initiation that crossed the peer's).
   */
  private retireKeypair(peer: Peer, kp: Keypair<Peer>): void {
    if (kp !== peer.receivingOn) return this.deleteKeypair(kp);
    if (peer.lingering !== undefined && peer.lingering !== kp) this.deleteKeypair(peer.lingering);
    peer.lingering = kp;
  }

  private deleteKeypair(kp: Keypair<Peer>): void {
    const e = this.indexTable.lookup(kp.localIndex);
    if (e !== undefined && e.keypair === kp) this.indexTable.delete(kp.localIndex);
    kp.zero();
  }

  /** wireguard-go ExpireCurrentKeypairs: current/next stop sending; the handshake restarts. */
  private expireCurrentKeypairs(peer: Peer, now: number): void {
    this.releasePendingInitiation(peer);
    this.releaseHandshakeIndex(peer.handshake);
    peer.handshake.clear();
    peer.lastSentHandshake = now - REKEY_TIMEOUT - 1000;
    peer.keypairs.current?.expireSending();
    peer.keypairs.next?.expireSending();
  }

  /** Whitepaper 6.3: erase all keys of a peer after 3 x REJECT_AFTER_TIME without a new session. */
  private zeroKeyMaterial(peer: Peer): void {
    this.releasePendingInitiation(peer);
    for (const kp of peer.keypairs.all()) this.deleteKeypair(kp);
    if (peer.lingering !== undefined) this.deleteKeypair(peer.lingering);
    peer.lingering = peer.receivingOn = undefined;
    peer.keypairs.previous = peer.keypairs.current = peer.keypairs.next = undefined;
    this.releaseHandshakeIndex(peer.handshake);
    peer.handshake.clear();
  }

  private emit(callbacks: ReadonlyArray<(peer: DatapathPeer) => void>, peer: Peer): void {
    for (const cb of callbacks) cb(peer);
  }

  private mustPeer(publicKey: Buffer): Peer {
    checkKey(publicKey, "public_key");
    const peer = this.peersByKey.get(keyId(publicKey));
    if (peer === undefined) throw new ValidationError("public_key", "no such peer");
    return peer;
  }
}
