/**
 * Sliding-window anti-replay filter of RFC 6479 ("IPsec Anti-Replay Algorithm without Bit
 * Shifting"), as WireGuard uses it for transport data counters (whitepaper 5.4.6; kernel
 * `counter_validate`, wireguard-go `replay/replay.go`).
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
import { REJECT_AFTER_MESSAGES } from "./constants.js";

const WORD_BITS = 32;
const WORD_SHIFT_DIV = WORD_BITS;

/** Default total bits of the ring (a power of two). */
export const REPLAY_RING_BITS = 2048;
/** Default window: counters this far behind the newest are still accepted once. */
export const REPLAY_WINDOW_SIZE = REPLAY_RING_BITS - WORD_BITS;

/** RFC 6479 anti-replay window for one receiving keypair. */
export class ReplayWindow {
  private readonly ring: Uint32Array;
  private readonly mask: number;
  /** Newest accepted counter plus one (0 = nothing accepted yet), as the kernel keeps it. */
  private top = 0;
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
    this.ring = new Uint32Array(ringBits / WORD_BITS);
    this.mask = this.ring.length - 1;
    this.windowSize = ringBits - WORD_BITS;
    this.limit = limit;
  }

  /** Forgets everything (a new keypair). */
  reset(): void {
    this.ring.fill(0);
    this.top = 0;
  }

  /**
   * True when `counter` was not seen and is not older than the window; it is then recorded.
   * Call only after the message authenticated, or a forger could advance the window.
   */
  accept(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= this.limit) return false;
    const c = counter + 1;
    if (c + this.windowSize < this.top) return false;
    const index = Math.floor(c / WORD_SHIFT_DIV);
    if (c > this.top) {
      const current = Math.floor(this.top / WORD_SHIFT_DIV);
      const steps = Math.min(index - current, this.ring.length);
      for (let i = 1; i <= steps; i++) this.ring[(current + i) & this.mask] = 0;
      this.top = c;
    }
    const word = index & this.mask;
    const bit = 1 << (c - index * WORD_SHIFT_DIV);
    const old = this.ring[word]!;
    if ((old & bit) !== 0) return false;
    this.ring[word] = old | bit;
    return true;
  }
}
