/**
 * The anti-replay filter of WireGuard's transport data counters (whitepaper 5.4.6; kernel
 * `counter_validate`, wireguard-go `replay/replay.go`): the RFC 6479 ring of src/replay/replay.ts,
 * sized by its ring and fed counters plus one (they start at 0, the ring's numbers at 1).
 *
 * The bitmap is a ring of 32-bit words. With the default 2048 bits the window is 2048 - 32 = 2016
 * counters: one word of the ring is always the one being cleared as the window advances, so it
 * cannot hold history (RFC 6479 section 2, "redundant bits"). The kernel uses the same construction
 * with 64-bit words; the window size is a local choice of the receiver and does not affect interop.
 *
 * Counters are JS numbers. Counters that are not safe integers, and counters at or above `limit`
 * (REJECT_AFTER_MESSAGES, capped at 2^53 where numbers stop being exact), are rejected: a sender
 * would need 2^53 messages on one keypair to reach it, far past REKEY_AFTER_MESSAGES.
 */
import { ReplayWindow as Rfc6479Window, type ReplaySnapshot } from "../replay/replay.js";
import { REJECT_AFTER_MESSAGES } from "./constants.js";

const WORD_BITS = 32;

/** Default total bits of the ring (a power of two). */
export const REPLAY_RING_BITS = 2048;
/** Default window: counters this far behind the newest are still accepted once. */
export const REPLAY_WINDOW_SIZE = REPLAY_RING_BITS - WORD_BITS;

/** RFC 6479 anti-replay window for one receiving keypair. */
export class ReplayWindow {
  private readonly window: Rfc6479Window;
  /** Window size in counters. */
  readonly windowSize: number;
  private readonly limit: number;

  /**
   * @param ringBits total bitmap bits, a power of two >= 64 (default 2048)
   * @param limit first counter that is always rejected (default REJECT_AFTER_MESSAGES capped at 2^53)
   */
  constructor(ringBits = REPLAY_RING_BITS, limit = Math.min(REJECT_AFTER_MESSAGES, Number.MAX_SAFE_INTEGER)) {
    if (ringBits < 64 || (ringBits & (ringBits - 1)) !== 0)
      throw new RangeError("ringBits must be a power of two >= 64");
    this.windowSize = ringBits - WORD_BITS;
    // Counter n is number n + 1, and `windowSize` counters behind the newest are still accepted:
    // a window of windowSize + 1 numbers, whose ring is exactly `ringBits` bits.
    this.window = new Rfc6479Window(this.windowSize + 1);
    this.limit = limit;
  }

  /** Forgets everything (a new keypair). */
  reset(): void {
    this.window.reset();
  }

  /**
   * True when `counter` was not seen and is not older than the window; it is then recorded.
   * Call only after the message authenticated, or a forger could advance the window.
   */
  accept(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= this.limit) return false;
    return this.window.update(counter + 1);
  }

  /** The window's state, for a daemon handing its sessions to a successor. */
  snapshot(): ReplaySnapshot {
    return this.window.snapshot();
  }

  /** Takes over a {@link snapshot} of a window of the same size (RangeError otherwise). */
  restore(s: ReplaySnapshot): void {
    this.window.restore(s);
  }
}
