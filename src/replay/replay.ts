/**
 * The sliding-window anti-replay filter of RFC 6479 ("IPsec Anti-Replay Algorithm without Bit
 * Shifting"), the one implementation behind both data planes: ESP sequence numbers (RFC 4303
 * section 3.4.3, src/esp/replay.ts) and WireGuard transport counters (whitepaper 5.4.6, kernel
 * `counter_validate`, wireguard-go `replay/replay.go`; src/wireguard/replay.ts).
 *
 * The bitmap is a ring of 32-bit blocks, so sliding the window clears whole blocks instead of
 * shifting a bitmap. `size` is the window W: the numbers in (highest - W, highest] that were not
 * seen are still accepted once. The ring holds one block more than W needs, RFC 6479's spare
 * block ("redundant bits", section 2), so the block being entered never overlaps one still inside
 * the window.
 *
 * Numbers start at 1 (0 is never valid: ESP's first packet carries 1, WireGuard counters are
 * passed plus one) and are plain JS numbers, exact up to 2^53 - 1.
 */
const BLOCK_BITS = 32;

/** RFC 6479 anti-replay window over numbers >= 1. */
export class ReplayWindow {
  /** Window size W in numbers. */
  readonly size: number;
  private readonly ring: Uint32Array;
  /** Highest number recorded so far (0 = none yet). */
  private top = 0;

  /** @param size the window W, an integer >= 1 (callers validate their protocol's bounds). */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`replay window size must be >= 1, got ${size}`);
    this.size = size;
    this.ring = new Uint32Array(Math.ceil((size - 1) / BLOCK_BITS) + 1);
  }

  /** Highest number recorded so far; 0 before the first. */
  get highest(): number {
    return this.top;
  }

  /** Forgets everything (a new key). */
  reset(): void {
    this.ring.fill(0);
    this.top = 0;
  }

  /**
   * Would `seq` be accepted? Cheap enough to call before authenticating, to drop replays early
   * (RFC 4303 section 3.4.3); only {@link update} records.
   */
  check(seq: number): boolean {
    if (seq <= 0) return false;
    if (seq > this.top) return true;
    if (seq <= this.top - this.size) return false;
    const block = Math.floor(seq / BLOCK_BITS) % this.ring.length;
    const bit = 1 << (seq % BLOCK_BITS);
    return (this.ring[block]! & bit) === 0;
  }

  /**
   * Records `seq`; call only after the packet authenticated, or a forger could advance the window.
   * Returns false, changing nothing, when it is a replay or too old.
   */
  update(seq: number): boolean {
    if (!this.check(seq)) return false;
    if (seq > this.top) {
      const current = Math.floor(this.top / BLOCK_BITS);
      const next = Math.floor(seq / BLOCK_BITS);
      const clear = Math.min(next - current, this.ring.length);
      for (let i = 1; i <= clear; i++) this.ring[(current + i) % this.ring.length] = 0;
      this.top = seq;
    }
    const block = Math.floor(seq / BLOCK_BITS) % this.ring.length;
    this.ring[block] = this.ring[block]! | (1 << (seq % BLOCK_BITS));
    return true;
  }

  /** The window's whole state (highest number and bitmap), for handing it to a successor process. */
  snapshot(): ReplaySnapshot {
    return { highest: this.top, ring: [...this.ring] };
  }

  /**
   * Takes over a window {@link snapshot} made (of a window of the same size): numbers it saw stay
   * refused. Throws RangeError on a snapshot that does not fit.
   */
  restore(s: ReplaySnapshot): void {
    if (!Number.isSafeInteger(s.highest) || s.highest < 0)
      throw new RangeError(`replay snapshot: highest must be a safe integer >= 0, got ${s.highest}`);
    if (
      s.ring.length !== this.ring.length ||
      !s.ring.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff_ffff)
    )
      throw new RangeError(`replay snapshot: ring must be ${this.ring.length} 32-bit words`);
    this.ring.set(s.ring);
    this.top = s.highest;
  }
}

/** A replay window's state ({@link ReplayWindow.snapshot}). */
export interface ReplaySnapshot {
  readonly highest: number;
  readonly ring: number[];
}
