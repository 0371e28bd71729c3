/**
 * The seam between the pure WireGuard protocol core (src/wireguard: handshake, cookies, timers,
 * keypairs, cryptokey routing) and the packet-moving data path (src/dataplane/wireguard-userspace:
 * TUN, UDP, batched AEAD in native code). The core owns every decision; the data path owns the
 * bytes. Neither imports the other's internals: only these types.
 */

/** A UDP endpoint of a peer (IPv4 "1.2.3.4" or IPv6 "fd00::1", never bracketed). */
export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * A transport keypair as the data path needs it (WireGuard whitepaper section 5.4.5/5.4.6).
 * `sendCounter` is advanced by the data path as it encrypts; the core reads it for
 * REKEY_AFTER_MESSAGES / REJECT_AFTER_MESSAGES.
 */
export interface TransportKeypair {
  /** Our index: receivers put it in the data message header we receive. */
  readonly localIndex: number;
  /** The peer's index: we put it in the data messages we send. */
  readonly remoteIndex: number;
  /** 32-byte ChaCha20-Poly1305 key for sending. */
  readonly sendKey: Buffer;
  /** 32-byte ChaCha20-Poly1305 key for receiving. */
  readonly recvKey: Buffer;
  /** Next nonce to use for sending. */
  sendCounter: number;
}

/** The peer a packet belongs to, as seen by the data path. Counters are added to by the data path. */
export interface DatapathPeer {
  /** Stable small integer id of the peer inside this device. */
  readonly id: number;
  /** Current endpoint, or undefined until configured or learned (roaming). */
  readonly endpoint: Endpoint | undefined;
  rxBytes: number;
  txBytes: number;
}

/** Why the data path dropped a packet (counted per reason, exported in status and metrics). */
export type DropReason =
  | "no-route" // TUN packet whose destination no peer's allowed IPs cover
  | "no-endpoint" // peer has no endpoint yet
  | "no-keypair" // no valid sending keypair (packet staged for after the handshake, or dropped if full)
  | "unknown-index" // data message for a receiver index we do not have
  | "auth-failed" // AEAD open failed
  | "replay" // counter already seen or older than the window
  | "expired-keypair" // keypair past REJECT_AFTER_TIME / REJECT_AFTER_MESSAGES
  | "bad-source" // decrypted packet's source address not in the peer's allowed IPs
  | "malformed" // wrong size, unknown type, bad IP header
  | "cookie-required" // handshake dropped under load without a valid mac2
  | "handshake-failed"; // handshake message that did not authenticate or decrypt

/**
 * What the data path calls on the core. Every method is synchronous and does no I/O; anything to
 * send comes back through the `transmit` callback the data path registers.
 */
export interface DatapathCore {
  /** Registers the function the core uses to send handshake, cookie and keepalive messages. */
  setTransmit(transmit: (to: Endpoint, message: Buffer) => void): void;

  /** Cryptokey routing, outbound: the peer whose allowed IPs hold this IP packet's destination. */
  peerForDestination(ipPacket: Buffer, offset: number, length: number): DatapathPeer | undefined;

  /**
   * The keypair to send data to `peer` with now, or undefined. Calling it may start a handshake
   * (no keypair, or REKEY_AFTER_TIME/MESSAGES passed on an initiator keypair). When undefined, the
   * data path stages the packet and retries after `onKeypairReady` fires for this peer.
   */
  sendKeypair(peer: DatapathPeer, now: number): TransportKeypair | undefined;

  /** Inbound: the keypair and peer for a data message's receiver index, if still valid at `now`. */
  receiveKeypair(
    receiverIndex: number,
    now: number,
  ): { keypair: TransportKeypair; peer: DatapathPeer } | undefined;

  /**
   * Anti-replay (RFC 6479 window) for an authenticated data message: true when `counter` is new,
   * and then it is recorded. Call only after the AEAD tag verified.
   */
  acceptCounter(keypair: TransportKeypair, counter: number): boolean;

  /** Cryptokey routing, inbound: is this decrypted packet's source in `peer`'s allowed IPs? */
  sourceAllowed(peer: DatapathPeer, ipPacket: Buffer, offset: number, length: number): boolean;

  /**
   * After a batch: an authenticated data message (length 0 = keepalive) arrived from `from` on
   * `keypair`. Updates the endpoint (roaming), timers, confirms a responder's keypair.
   */
  dataReceived(
    peer: DatapathPeer,
    keypair: TransportKeypair,
    from: Endpoint,
    plaintextLength: number,
    now: number,
  ): void;

  /** After a batch: data (length 0 = keepalive) was sent to `peer`. Drives keepalive timers. */
  dataSent(peer: DatapathPeer, plaintextLength: number, now: number): void;

  /** A handshake initiation, response or cookie reply datagram (types 1, 2, 3) arrived. */
  handleControl(message: Buffer, from: Endpoint, now: number): void;

  /** Registers the callback fired when a peer gets a new sending keypair (flush staged packets). */
  onKeypairReady(callback: (peer: DatapathPeer) => void): void;

  /**
   * Registers the callback the core uses to ask for a keepalive (an empty transport data message,
   * whitepaper 6.5) to `peer`: passive keepalives, persistent keepalives, and the initiator's key
   * confirmation after a handshake when no data went out on the new keypair (whitepaper 5.4.6).
   * The data path encrypts and sends it like data (`sendKeypair`, then `dataSent(peer, 0, now)`);
   * when `sendKeypair` returns undefined the core has started a handshake and nothing is sent.
   * Optional so that test cores without timers need not implement it; the real core does.
   */
  onKeepalive?(callback: (peer: DatapathPeer) => void): void;

  /**
   * Registers the callback fired when the core gave up on a handshake with `peer` after
   * REKEY_ATTEMPT_TIME (whitepaper 6.4): the data path drops the packets it staged for it
   * (counting them as "no-keypair"). Optional like `onKeepalive`.
   */
  onHandshakeGaveUp?(callback: (peer: DatapathPeer) => void): void;

  /** Runs the timers (retransmit, rekey, keepalive, zeroing); call every ~100 ms and after batches. */
  tick(now: number): void;

  /** Counts a dropped packet. */
  drop(reason: DropReason, peer?: DatapathPeer): void;
}
