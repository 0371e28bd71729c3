/**
 * A configured peer (whitepaper section 2: a public key, allowed IPs and an endpoint) with its
 * handshake, cookie generator, keypairs, timers and counters (wireguard-go `peer.go`).
 */
import type { DatapathPeer, DropReason, Endpoint } from "./contract.js";
import { CookieGenerator } from "./cookie.js";
import { Keypairs, type Keypair } from "./keypair.js";
import { Handshake } from "./noise.js";
import { PeerTimers } from "./timers.js";

/** One peer of a {@link Device}. The data path sees it through {@link DatapathPeer}. */
export class Peer implements DatapathPeer {
  endpoint: Endpoint | undefined;
  rxBytes = 0;
  txBytes = 0;
  /** Configured preshared key, or undefined (the handshake then uses 32 zero bytes). */
  presharedKey: Buffer | undefined;
  /** Persistent keepalive interval in seconds; 0 = off (whitepaper 6.5). */
  persistentKeepalive = 0;
  readonly handshake: Handshake;
  /**
   * Our initiation that was in flight when the peer's own initiation arrived and `handshake`
   * went on to answer it: its response is still accepted (see Device.handleInitiation).
   */
  pendingInitiation: Handshake | undefined;
  readonly cookieGenerator: CookieGenerator;
  readonly keypairs = new Keypairs<Peer>();
  /** The keypair the peer was last seen sending on (a data message authenticated with it). */
  receivingOn: Keypair<Peer> | undefined;
  /**
   * {@link receivingOn} after it left the slots: still receivable, packets the peer sent on it
   * before it moved on may still be in flight (see Device.retireKeypair).
   */
  lingering: Keypair<Peer> | undefined;
  readonly timers: PeerTimers;
  /** Wall-clock ms of the latest completed handshake, or undefined. */
  lastHandshakeWall: number | undefined;
  /** Monotonic ms of the last handshake message we sent (initiations at most every REKEY_TIMEOUT). */
  lastSentHandshake = Number.NEGATIVE_INFINITY;
  /** True once a non-empty data message went out on the current keypair (no confirmation keepalive needed). */
  sentDataOnCurrent = false;
  readonly drops: Partial<Record<DropReason, number>> = {};

  constructor(
    readonly id: number,
    readonly publicKey: Buffer,
    jitter: () => number,
  ) {
    this.handshake = new Handshake(publicKey);
    this.cookieGenerator = new CookieGenerator(publicKey);
    this.timers = new PeerTimers(jitter);
  }
}
