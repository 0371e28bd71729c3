/**
 * Transport keypairs (whitepaper 5.4.5 - 5.4.6) and the previous/current/next slots of a peer, as
 * wireguard-go's `keypair.go`: a responder's fresh keypair waits in `next` until the initiator's
 * first data message proves the initiator derived it too (whitepaper 5.4.6, "key confirmation").
 */
import { REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, SEND_COUNTER_LIMIT } from "./constants.js";
import type { TransportKeypair } from "./contract.js";
import type { SessionKeys } from "./noise.js";
import { ReplayWindow } from "./replay.js";

/** One session's keys, counters and replay window. */
export class Keypair<P = unknown> implements TransportKeypair {
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly sendKey: Buffer;
  readonly recvKey: Buffer;
  sendCounter = 0;
  /** Monotonic ms when the session was derived. */
  readonly created: number;
  /** True when we initiated the handshake (only initiators rekey on time, whitepaper 6.2). */
  readonly isInitiator: boolean;
  readonly replay = new ReplayWindow();

  constructor(
    keys: SessionKeys,
    created: number,
    readonly peer: P,
  ) {
    this.localIndex = keys.localIndex;
    this.remoteIndex = keys.remoteIndex;
    this.sendKey = keys.sendKey;
    this.recvKey = keys.recvKey;
    this.isInitiator = keys.isInitiator;
    this.created = created;
  }

  /**
   * Whitepaper 6.1: may still send at `now` (younger than REJECT_AFTER_TIME, counter under
   * REJECT_AFTER_MESSAGES and under {@link SEND_COUNTER_LIMIT}, where JS numbers stay exact).
   */
  canSend(now: number): boolean {
    return now - this.created < REJECT_AFTER_TIME && this.sendCounter < SEND_COUNTER_LIMIT;
  }

  /** Whitepaper 6.1: may still receive at `now`. */
  canReceive(now: number): boolean {
    return now - this.created < REJECT_AFTER_TIME;
  }

  /** Forbids further sending (wireguard-go ExpireCurrentKeypairs), receiving stays possible. */
  expireSending(): void {
    this.sendCounter = REJECT_AFTER_MESSAGES;
  }

  /**
   * Hands the rest of the counter space to a successor (a daemon's planned restart): returns the
   * next counter to use and forbids this object to send again, so no (key, nonce) pair is used by
   * both daemons. The successor sends from the returned counter on.
   */
  handOff(): number {
    const next = this.sendCounter;
    this.expireSending();
    return next;
  }

  /** Erases the keys. */
  zero(): void {
    this.sendKey.fill(0);
    this.recvKey.fill(0);
  }
}

/** The three keypair slots of a peer (wireguard-go `Keypairs`). */
export class Keypairs<P = unknown> {
  previous: Keypair<P> | undefined;
  current: Keypair<P> | undefined;
  next: Keypair<P> | undefined;

  /** All present keypairs. */
  all(): Keypair<P>[] {
    return [this.previous, this.current, this.next].filter((k): k is Keypair<P> => k !== undefined);
  }
}
