/**
 * Anti-replay window of an inbound ESP SA, RFC 4303 section 3.4.3: the RFC 6479 ring of
 * src/replay/replay.ts with ESP's bounds on its size.
 *
 * `size` is the number of sequence numbers below the highest one seen that are still accepted
 * (the RFC's window size W). Default 1024, as Cilium installs its XFRM states with; any multiple of
 * 32 from 32 to 65536. The ring holds `size + 32` bits: RFC 6479's spare block, so the block being
 * entered never overlaps one still inside the window.
 *
 * Sequence numbers are plain numbers: 32-bit without ESN, and with ESN the 64-bit value, which
 * this implementation bounds to 2^53 - 1 (see `MAX_ESN_SEQUENCE` in sa.ts).
 */
import { ReplayWindow as Rfc6479Window } from "../replay/replay.js";

export const DEFAULT_REPLAY_WINDOW = 1024;

/** The replay window of one inbound SA: `check` before the ICV, `update` after it verified. */
export class ReplayWindow extends Rfc6479Window {
  constructor(size: number = DEFAULT_REPLAY_WINDOW) {
    if (!Number.isInteger(size) || size < 32 || size > 65536 || size % 32 !== 0) {
      throw new RangeError(`replay window size must be a multiple of 32 in 32..65536, got ${size}`);
    }
    super(size);
  }
}
