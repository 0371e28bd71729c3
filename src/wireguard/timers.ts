/**
 * Per-peer timers of WireGuard (whitepaper section 6; wireguard-go `timers.go`) as deadlines that
 * `Device.tick(now)` polls, the way boringtun keeps an array of timestamps instead of OS timers.
 * Each event hook below says when to call it.
 */
import { KEEPALIVE_TIMEOUT, REKEY_TIMEOUT, ZERO_KEY_MATERIAL_AFTER } from "./constants.js";

/** Names of the five timers, as in wireguard-go. */
export type TimerName =
  "retransmitHandshake" | "sendKeepalive" | "newHandshake" | "zeroKeyMaterial" | "persistentKeepalive";

/** The deadlines (monotonic ms, undefined = not armed) and counters of one peer. */
export class PeerTimers {
  retransmitHandshake: number | undefined;
  sendKeepalive: number | undefined;
  newHandshake: number | undefined;
  zeroKeyMaterial: number | undefined;
  persistentKeepalive: number | undefined;
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;

  /** @param jitter returns 0..REKEY_TIMEOUT_JITTER_MAX ms (injected randomness) */
  constructor(private readonly jitter: () => number) {}

  /** Call after sending a data message with a non-empty payload. */
  dataSent(now: number): void {
    if (this.newHandshake === undefined)
      this.newHandshake = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + this.jitter();
  }

  /** Call after receiving a data message with a non-empty payload. */
  dataReceived(now: number): void {
    if (this.sendKeepalive === undefined) this.sendKeepalive = now + KEEPALIVE_TIMEOUT;
    else this.needAnotherKeepalive = true;
  }

  /** Call after sending any authenticated packet (handshake, keepalive or data). */
  anyAuthenticatedPacketSent(): void {
    this.sendKeepalive = undefined;
  }

  /** Call after receiving any authenticated packet (handshake, keepalive or data). */
  anyAuthenticatedPacketReceived(): void {
    this.newHandshake = undefined;
  }

  /** Call after a handshake initiation was sent. */
  handshakeInitiated(now: number): void {
    this.retransmitHandshake = now + REKEY_TIMEOUT + this.jitter();
  }

  /** Call after a handshake completed (response consumed, or the responder's keypair confirmed). */
  handshakeComplete(): void {
    this.retransmitHandshake = undefined;
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
  }

  /** Call after a session was derived (keys erased after 3 x REJECT_AFTER_TIME without a new one). */
  sessionDerived(now: number): void {
    this.zeroKeyMaterial = now + ZERO_KEY_MATERIAL_AFTER;
  }

  /** Call after any authenticated packet was sent or received (persistent keepalive restarts). */
  anyAuthenticatedPacketTraversal(now: number, persistentKeepaliveSeconds: number): void {
    if (persistentKeepaliveSeconds > 0) this.persistentKeepalive = now + persistentKeepaliveSeconds * 1000;
  }

  /** Disarms everything (peer removed or key material zeroed). */
  stopAll(): void {
    this.retransmitHandshake = undefined;
    this.sendKeepalive = undefined;
    this.newHandshake = undefined;
    this.zeroKeyMaterial = undefined;
    this.persistentKeepalive = undefined;
  }

  /** Whether a deadline passed at `now` (what {@link takeDue} would return is not empty). */
  anyDue(now: number): boolean {
    return (
      (this.retransmitHandshake !== undefined && now >= this.retransmitHandshake) ||
      (this.sendKeepalive !== undefined && now >= this.sendKeepalive) ||
      (this.newHandshake !== undefined && now >= this.newHandshake) ||
      (this.zeroKeyMaterial !== undefined && now >= this.zeroKeyMaterial) ||
      (this.persistentKeepalive !== undefined && now >= this.persistentKeepalive)
    );
  }

  /** The timers whose deadline passed at `now`, disarmed, in a fixed order. */
  takeDue(now: number): TimerName[] {
    const due: TimerName[] = [];
    for (const name of [
      "retransmitHandshake",
      "sendKeepalive",
      "newHandshake",
      "zeroKeyMaterial",
      "persistentKeepalive",
    ] as const) {
      const at = this[name];
      if (at !== undefined && now >= at) {
        this[name] = undefined;
        due.push(name);
      }
    }
    return due;
  }

  /** The earliest armed deadline, for callers that want to sleep precisely. */
  nextDeadline(): number | undefined {
    const all = [
      this.retransmitHandshake,
      this.sendKeepalive,
      this.newHandshake,
      this.zeroKeyMaterial,
      this.persistentKeepalive,
    ];
    let min: number | undefined;
    for (const t of all) if (t !== undefined && (min === undefined || t < min)) min = t;
    return min;
  }
}
