/**
 * The Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake of WireGuard (whitepaper section 5.4.2 -
 * 5.4.5), as paired Create/Consume functions in the manner of wireguard-go's `noise-protocol.go`.
 * Pure: randomness, time and index allocation are passed in; lookups are callbacks. Consumers of
 * packet data return undefined for anything that does not authenticate and never throw on it.
 */
import type { RandomBytes } from "../clock.js";
import {
  HANDSHAKE_INITIATION_RATE,
  KEY_SIZE,
  MAC_SIZE,
  NOISE_CONSTRUCTION,
  TIMESTAMP_SIZE,
  WG_IDENTIFIER,
} from "./constants.js";
import { aeadDecrypt, aeadEncrypt, dh, hash, kdf, tai64n, tai64nAfter } from "./crypto.js";
import { generatePrivateKey, publicFromPrivate } from "../keys/x25519.js";
import type { MessageInitiation, MessageResponse } from "./messages.js";

/** Whitepaper 5.4: C_i = HASH(CONSTRUCTION). */
export const INITIAL_CHAIN_KEY = hash(Buffer.from(NOISE_CONSTRUCTION));
/** Whitepaper 5.4: H_i = HASH(C_i || IDENTIFIER). */
export const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, Buffer.from(WG_IDENTIFIER));

const EMPTY = Buffer.alloc(0);
const mixHash = (h: Buffer, data: Uint8Array): Buffer => hash(h, data);
const mixKey = (c: Buffer, data: Uint8Array): Buffer => kdf(1, c, data)[0]!;

/** The device's static key pair (whitepaper 5.4: S_priv, S_pub). */
export interface StaticIdentity {
  readonly privateKey: Buffer;
  readonly publicKey: Buffer;
}

/** Where a peer's handshake stands (wireguard-go `handshakeState`). */
export enum HandshakeState {
  Zeroed = 0,
  InitiationCreated = 1,
  InitiationConsumed = 2,
  ResponseCreated = 3,
  ResponseConsumed = 4,
}

/** Per-peer handshake state (whitepaper 5.4; one per peer, reused across handshakes). */
export class Handshake {
  state = HandshakeState.Zeroed;
  hash: Buffer = Buffer.alloc(32);
  chainKey: Buffer = Buffer.alloc(32);
  /** Q, 32 zero bytes when no preshared key is configured (whitepaper 5.2). */
  presharedKey: Buffer = Buffer.alloc(KEY_SIZE);
  localEphemeral: Buffer = Buffer.alloc(KEY_SIZE);
  localIndex = 0;
  remoteIndex = 0;
  remoteEphemeral: Buffer = Buffer.alloc(KEY_SIZE);
  /** DH(S_priv_local, S_pub_remote), undefined without a private key or for a low-order peer key. */
  precomputedStaticStatic: Buffer | undefined;
  /** Greatest TAI64N timestamp consumed from this peer (replay protection, whitepaper 5.1). */
  lastTimestamp: Buffer = Buffer.alloc(TIMESTAMP_SIZE);
  /** Monotonic ms of the last consumed initiation (flood protection), or undefined. */
  lastInitiationConsumed: number | undefined;

  constructor(readonly remoteStatic: Buffer) {}

  /** Recomputes the static-static DH after the local private key changed (wireguard-go SetPrivateKey). */
  precompute(identity: StaticIdentity | undefined): void {
    this.precomputedStaticStatic?.fill(0);
    this.precomputedStaticStatic =
      identity === undefined ? undefined : dh(identity.privateKey, this.remoteStatic);
  }

  /**
   * A copy of an initiation in flight (state InitiationCreated) that can still consume its
   * response once this handshake goes on to answer the peer's own initiation: see
   * Device.handleInitiation (simultaneous initiations).
   */
  forkInitiation(): Handshake {
    const f = new Handshake(this.remoteStatic);
    f.state = this.state;
    f.hash = Buffer.from(this.hash);
    f.chainKey = Buffer.from(this.chainKey);
    f.presharedKey = Buffer.from(this.presharedKey);
    f.localEphemeral = Buffer.from(this.localEphemeral);
    f.localIndex = this.localIndex;
    f.precomputedStaticStatic =
      this.precomputedStaticStatic === undefined ? undefined : Buffer.from(this.precomputedStaticStatic);
    return f;
  }

  /** Erases the ephemeral state of an in-progress handshake (keeps timestamps and static data). */
  clear(): void {
    this.hash.fill(0);
    this.chainKey.fill(0);
    this.localEphemeral.fill(0);
    this.remoteEphemeral.fill(0);
    this.localIndex = 0;
    this.remoteIndex = 0;
    this.state = HandshakeState.Zeroed;
  }
}

/** Inputs that make a handshake step pure. */
export interface HandshakeEnv {
  readonly random: RandomBytes;
  /** Wall-clock ms, for the TAI64N timestamp of an initiation. */
  readonly wallNow: number;
  /** Allocates a fresh local index for this handshake (and releases the previous one). */
  readonly newIndex: (hs: Handshake) => number;
}

/**
 * Whitepaper 5.4.2, initiator: fills `hs` and returns the initiation with zero mac1/mac2 (the
 * cookie generator adds them). Undefined when the static-static DH is unusable.
 */
export function createInitiation(
  identity: StaticIdentity,
  hs: Handshake,
  env: HandshakeEnv,
): MessageInitiation | undefined {
  if (hs.precomputedStaticStatic === undefined) return undefined;
  const ephemeralPrivate = generatePrivateKey(env.random);
  const ephemeral = publicFromPrivate(ephemeralPrivate);
  let h = mixHash(INITIAL_HASH, hs.remoteStatic);
  let c = mixKey(INITIAL_CHAIN_KEY, ephemeral);
  h = mixHash(h, ephemeral);
  const es = dh(ephemeralPrivate, hs.remoteStatic);
  if (es === undefined) return undefined;
  let k: Buffer;
  [c, k] = kdf(2, c, es) as [Buffer, Buffer];
  const encryptedStatic = aeadEncrypt(k, 0, identity.publicKey, h);
  h = mixHash(h, encryptedStatic);
  [c, k] = kdf(2, c, hs.precomputedStaticStatic) as [Buffer, Buffer];
  const encryptedTimestamp = aeadEncrypt(k, 0, tai64n(env.wallNow), h);
  h = mixHash(h, encryptedTimestamp);
  hs.localEphemeral = ephemeralPrivate;
  hs.hash = h;
  hs.chainKey = c;
  hs.localIndex = env.newIndex(hs);
  hs.state = HandshakeState.InitiationCreated;
  return {
    sender: hs.localIndex,
    ephemeral,
    encryptedStatic,
    encryptedTimestamp,
    mac1: Buffer.alloc(MAC_SIZE),
    mac2: Buffer.alloc(MAC_SIZE),
  };
}

/** Why {@link consumeInitiation} rejected an initiation that authenticated. */
export type InitiationRejection = "replay" | "flood";

/**
 * Whitepaper 5.4.2, responder: authenticates an initiation, finds the peer by the decrypted static
 * key and records the handshake. Returns the peer's Handshake, a rejection reason for an
 * authentic replayed or flooding initiation, or undefined when it does not authenticate.
 */
export function consumeInitiation(
  identity: StaticIdentity,
  msg: MessageInitiation,
  lookupPeer: (staticPublic: Buffer) => Handshake | undefined,
  now: number,
): Handshake | InitiationRejection | undefined {
  let h = mixHash(INITIAL_HASH, identity.publicKey);
  h = mixHash(h, msg.ephemeral);
  let c = mixKey(INITIAL_CHAIN_KEY, msg.ephemeral);
  const es = dh(identity.privateKey, msg.ephemeral);
  if (es === undefined) return undefined;
  let k: Buffer;
  [c, k] = kdf(2, c, es) as [Buffer, Buffer];
  const peerStatic = aeadDecrypt(k, 0, msg.encryptedStatic, h);
  if (peerStatic === undefined) return undefined;
  h = mixHash(h, msg.encryptedStatic);
  const hs = lookupPeer(peerStatic);
  if (hs === undefined || hs.precomputedStaticStatic === undefined) return undefined;
  [c, k] = kdf(2, c, hs.precomputedStaticStatic) as [Buffer, Buffer];
  const timestamp = aeadDecrypt(k, 0, msg.encryptedTimestamp, h);
  if (timestamp === undefined) return undefined;
  h = mixHash(h, msg.encryptedTimestamp);
  if (!tai64nAfter(timestamp, hs.lastTimestamp)) return "replay";
  if (hs.lastInitiationConsumed !== undefined && now - hs.lastInitiationConsumed <= HANDSHAKE_INITIATION_RATE)
    return "flood";
  hs.hash = h;
  hs.chainKey = c;
  hs.remoteIndex = msg.sender;
  hs.remoteEphemeral = Buffer.from(msg.ephemeral);
  hs.lastTimestamp = timestamp;
  hs.lastInitiationConsumed = now;
  hs.state = HandshakeState.InitiationConsumed;
  return hs;
}

/** Whitepaper 5.4.3, responder: the response to a consumed initiation (mac1/mac2 zero). */
export function createResponse(hs: Handshake, env: HandshakeEnv): MessageResponse | undefined {
  if (hs.state !== HandshakeState.InitiationConsumed) return undefined;
  const ephemeralPrivate = generatePrivateKey(env.random);
  const ephemeral = publicFromPrivate(ephemeralPrivate);
  let h = mixHash(hs.hash, ephemeral);
  let c = mixKey(hs.chainKey, ephemeral);
  const ee = dh(ephemeralPrivate, hs.remoteEphemeral);
  const se = dh(ephemeralPrivate, hs.remoteStatic);
  if (ee === undefined || se === undefined) return undefined;
  c = mixKey(c, ee);
  c = mixKey(c, se);
  const [c2, tau, k] = kdf(3, c, hs.presharedKey) as [Buffer, Buffer, Buffer];
  h = mixHash(h, tau);
  const encryptedNothing = aeadEncrypt(k, 0, EMPTY, h);
  h = mixHash(h, encryptedNothing);
  hs.localEphemeral = ephemeralPrivate;
  hs.hash = h;
  hs.chainKey = c2;
  hs.localIndex = env.newIndex(hs);
  hs.state = HandshakeState.ResponseCreated;
  return {
    sender: hs.localIndex,
    receiver: hs.remoteIndex,
    ephemeral,
    encryptedNothing,
    mac1: Buffer.alloc(MAC_SIZE),
    mac2: Buffer.alloc(MAC_SIZE),
  };
}

/**
 * Whitepaper 5.4.3, initiator: authenticates a response to our initiation `hs` (found through the
 * response's receiver index). True when it authenticated and `hs` is now ResponseConsumed.
 */
export function consumeResponse(identity: StaticIdentity, hs: Handshake, msg: MessageResponse): boolean {
  if (hs.state !== HandshakeState.InitiationCreated) return false;
  let h = mixHash(hs.hash, msg.ephemeral);
  let c = mixKey(hs.chainKey, msg.ephemeral);
  const ee = dh(hs.localEphemeral, msg.ephemeral);
  const se = dh(identity.privateKey, msg.ephemeral);
  if (ee === undefined || se === undefined) return false;
  c = mixKey(c, ee);
  c = mixKey(c, se);
  const [c2, tau, k] = kdf(3, c, hs.presharedKey) as [Buffer, Buffer, Buffer];
  h = mixHash(h, tau);
  if (aeadDecrypt(k, 0, msg.encryptedNothing, h) === undefined) return false;
  h = mixHash(h, msg.encryptedNothing);
  hs.hash = h;
  hs.chainKey = c2;
  hs.remoteIndex = msg.sender;
  hs.state = HandshakeState.ResponseConsumed;
  return true;
}

/** The output of a completed handshake (whitepaper 5.4.5). */
export interface SessionKeys {
  readonly sendKey: Buffer;
  readonly recvKey: Buffer;
  readonly isInitiator: boolean;
  readonly localIndex: number;
  readonly remoteIndex: number;
}

/**
 * Whitepaper 5.4.5: (T_send, T_recv) = KDF2(C, empty), swapped for the responder; then erases the
 * handshake's chaining key, hash and ephemeral key. Undefined unless a response was created or consumed.
 */
export function deriveSession(hs: Handshake): SessionKeys | undefined {
  let isInitiator: boolean;
  if (hs.state === HandshakeState.ResponseConsumed) isInitiator = true;
  else if (hs.state === HandshakeState.ResponseCreated) isInitiator = false;
  else return undefined;
  const [t1, t2] = kdf(2, hs.chainKey, EMPTY) as [Buffer, Buffer];
  const keys: SessionKeys = {
    sendKey: isInitiator ? t1 : t2,
    recvKey: isInitiator ? t2 : t1,
    isInitiator,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
  };
  hs.clear();
  return keys;
}
