/**
 * Anti-replay window, RFC 4303 section 3.4.3, kept as a ring of 32-bit blocks as RFC 6479
 * describes so that sliding the window clears whole blocks instead of shifting a bitmap.
 *
 * `size` is the number of sequence numbers below the highest one seen that are still accepted
 * (the RFC's window size W). Default 1024, as Cilium installs its XFRM states with; any multiple of
 * 32 from 32 to 65536. The ring holds `size + 32` bits: RFC 6479's spare block, so the block being
 * entered never overlaps one still inside the window.
 *
 * Sequence numbers are plain numbers: 32-bit without ESN, and with ESN the 64-bit value, which
 * this implementation bounds to 2^53 - 1 (see `MAX_ESN_SEQUENCE` in sa.ts).
 */
export const DEFAULT_REPLAY_WINDOW = 1024;

const BLOCK_BITS = 32;

export class ReplayWindow {
  /** Window size W in sequence numbers. */
  readonly size: number;
  private readonly ring: Uint32Array;
  /** Highest sequence number authenticated so far (0 = none yet). */
  private top = 0;

  constructor(size: number = DEFAULT_REPLAY_WINDOW) {
    if (!Number.isInteger(size) || size < 32 || size > 65536 || size % BLOCK_BITS !== 0) {
      throw new RangeError(`replay window size must be a multiple of 32 in 32..65536, got ${size}`);
    }
    this.size = size;
    this.ring = new Uint32Array(size / BLOCK_BITS + 1);
  }

  /** Highest sequence number accepted so far; 0 before the first. */
  get highest(): number {
    return this.top;
  }

  /**
   * Would `seq` be accepted? Call before the ICV check to drop replays cheaply (RFC 4303
   * section 3.4.3: "duplicates are rejected ... before performing any integrity check").
   * Sequence number 0 is never valid: the first packet of an SA carries 1 (section 3.3.3).
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
   * Records `seq` after its ICV verified (the window is updated only then: section 3.4.3).
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
}
