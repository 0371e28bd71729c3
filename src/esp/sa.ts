/**
 * ESP security associations (RFC 4303 section 3.3 and 3.4; RFC 4301 section 4.4.2 for the SAD
 * fields) for AES-GCM (RFC 4106). An SA is one direction of one node pair under one key ID.
 *
 * Explicit IV choice (RFC 4106 section 3.1 requires it unique per key, and allows a counter): the
 * 8-byte IV is the SA's 64-bit sequence number, big-endian (high 32 bits zero without ESN). The
 * sequence number never repeats within an SA (RFC 4303 section 3.3.3: it must not cycle, and
 * `OutboundSa.nextSequence` stops at exhaustion), and each SA has its own key, so (key, IV) is
 * unique without any randomness on the packet path.
 */
import { ValidationError } from "../errors/index.js";
import { DEFAULT_ICV_LENGTH, GCM_KEY_LENGTH, GCM_SALT_LENGTH, isIcvLength, type IcvLength } from "./gcm.js";
import { DEFAULT_REPLAY_WINDOW, ReplayWindow } from "./replay.js";

/** Highest 32-bit sequence number; an SA without ESN must be replaced before it (section 3.3.3). */
export const MAX_SEQUENCE = 0xffff_ffff;
/**
 * Highest sequence number with ESN. RFC 4303 allows 2^64 - 1; we stop at 2^53 - 1 so sequence
 * numbers stay exact JavaScript numbers (at 10 million packets per second that is 28 years).
 */
export const MAX_ESN_SEQUENCE = Number.MAX_SAFE_INTEGER;

/**
 * Default "rekey soon" point as a fraction of the sequence space: after 3/4 of it the SA reports
 * `rekeySoon` so the controller rotates early (docs/design.md#keys-and-rotation) with a quarter of the space
 * (about 1.07e9 packets without ESN: over 20 minutes at 800k packets/s) still left for the
 * make-before-break phases.
 */
export const DEFAULT_REKEY_FRACTION = 0.75;

/** The smallest SPI a sender may use: 1..255 are reserved by IANA (RFC 4303 section 2.1). */
export const MIN_SPI = 256;

/** What both directions of an SA are built from. Keys are never logged (see `describeSa`). */
export interface SaParams {
  /** Security Parameters Index, 256..2^32-1 (RFC 4303 section 2.1). */
  spi: number;
  /** Key generation 1..15 (the controller's epoch modulo 15, see src/keys/spi.ts). */
  keyId: number;
  /** AES-128 key, 16 bytes. */
  key: Buffer;
  /** RFC 4106 salt, 4 bytes. */
  salt: Buffer;
  /** ICV length in bytes; default 16. */
  icvLength?: IcvLength;
  /** Extended (64-bit) sequence numbers, RFC 4303 section 2.2.1; default false. */
  esn?: boolean;
  /** Name of the peer node, for status and the SA database. */
  peer: string;
  /** Outer source address of the packets this SA protects (tshark's esp_sa "src"), if known. */
  srcAddress?: string;
  /** Outer destination address (tshark's esp_sa "dst"), if known. */
  dstAddress?: string;
  /** Creation time, monotonic ms from the injected clock. */
  createdAt: number;
}

/** Fields and counters common to inbound and outbound SAs. */
abstract class SaBase {
  readonly spi: number;
  readonly keyId: number;
  readonly key: Buffer;
  readonly salt: Buffer;
  readonly icvLength: IcvLength;
  readonly esn: boolean;
  readonly peer: string;
  readonly srcAddress: string | undefined;
  readonly dstAddress: string | undefined;
  readonly createdAt: number;
  /** Inner (plaintext) bytes protected by this SA. */
  bytes = 0;
  /** Packets protected by this SA. */
  packets = 0;
  /** Monotonic ms of the last packet, or undefined. */
  lastUsedAt: number | undefined;

  constructor(p: SaParams) {
    if (!Number.isInteger(p.spi) || p.spi < MIN_SPI || p.spi > 0xffff_ffff) {
      throw new ValidationError("spi", `must be an integer in ${MIN_SPI}..4294967295`);
    }
    if (!Number.isInteger(p.keyId) || p.keyId < 1 || p.keyId > 15) {
      throw new ValidationError("keyId", "must be an integer in 1..15");
    }
    if (p.key.length !== GCM_KEY_LENGTH) {
      throw new ValidationError("key", `must be ${GCM_KEY_LENGTH} bytes, got ${p.key.length}`);
    }
    if (p.salt.length !== GCM_SALT_LENGTH) {
      throw new ValidationError("salt", `must be ${GCM_SALT_LENGTH} bytes, got ${p.salt.length}`);
    }
    const icv = p.icvLength ?? DEFAULT_ICV_LENGTH;
    if (!isIcvLength(icv)) throw new ValidationError("icvLength", "must be 8, 12 or 16 bytes");
    this.spi = p.spi;
    this.keyId = p.keyId;
    // Own copies: the caller may reuse or wipe its buffers.
    this.key = Buffer.from(p.key);
    this.salt = Buffer.from(p.salt);
    this.icvLength = icv;
    this.esn = p.esn ?? false;
    this.peer = p.peer;
    this.srcAddress = p.srcAddress;
    this.dstAddress = p.dstAddress;
    this.createdAt = p.createdAt;
  }

  /** Highest sequence number this SA may use. */
  get maxSequence(): number {
    return this.esn ? MAX_ESN_SEQUENCE : MAX_SEQUENCE;
  }

  /** Records one packet of `bytes` inner bytes at `now`. */
  account(bytes: number, now: number): void {
    this.bytes += bytes;
    this.packets += 1;
    this.lastUsedAt = now;
  }
}

/** Options of an outbound SA. */
export interface OutboundSaParams extends SaParams {
  /**
   * Sequence number from which `rekeySoon` is true. Default: `DEFAULT_REKEY_FRACTION` of the
   * sequence space. Must be below the maximum.
   */
  rekeyThreshold?: number;
}

/** Sending side: owns the sequence counter (RFC 4303 section 3.3.3). */
export class OutboundSa extends SaBase {
  readonly direction = "out" as const;
  /** Sequence number at which `rekeySoon` turns true. */
  readonly rekeyThreshold: number;
  /** Last sequence number used; 0 before the first packet (the first packet carries 1). */
  private seq = 0;

  constructor(p: OutboundSaParams) {
    super(p);
    const threshold = p.rekeyThreshold ?? Math.floor(this.maxSequence * DEFAULT_REKEY_FRACTION);
    if (!Number.isInteger(threshold) || threshold < 1 || threshold >= this.maxSequence) {
      throw new ValidationError("rekeyThreshold", `must be an integer in 1..${this.maxSequence - 1}`);
    }
    this.rekeyThreshold = threshold;
  }

  /** Last sequence number sent. */
  get sequence(): number {
    return this.seq;
  }

  /** True once the counter reached the rekey threshold: rotate now, while the SA still works. */
  get rekeySoon(): boolean {
    return this.seq >= this.rekeyThreshold;
  }

  /** True when no sequence number is left: the SA can send nothing more. */
  get exhausted(): boolean {
    return this.seq >= this.maxSequence;
  }

  /**
   * Takes the next sequence number, or undefined at exhaustion (hard stop: RFC 4303 section
   * 3.3.3 forbids cycling; the caller drops with reason "seq-exhausted").
   */
  nextSequence(): number | undefined {
    if (this.seq >= this.maxSequence) return undefined;
    this.seq += 1;
    return this.seq;
  }

  /**
   * Hands the rest of the sequence space to a successor (a daemon's planned restart): returns the
   * last sequence number used and leaves this SA exhausted, so this object can never number (and
   * so never encrypt under this key and nonce) another packet. The successor continues after the
   * returned number ({@link skipTo}).
   */
  handOff(): number {
    const last = this.seq;
    this.seq = this.maxSequence;
    return last;
  }

  /** Test and restore hook: continue numbering after `seq` (e.g. to exercise exhaustion). */
  skipTo(seq: number): void {
    if (!Number.isInteger(seq) || seq < this.seq || seq > this.maxSequence) {
      throw new RangeError(`cannot move sequence from ${this.seq} to ${seq}`);
    }
    this.seq = seq;
  }
}

/** Options of an inbound SA. */
export interface InboundSaParams extends SaParams {
  /** Anti-replay window size (RFC 4303 section 3.4.3); default 1024. */
  replayWindow?: number;
}

/** Receiving side: owns the anti-replay window and the drop counters of its SPI. */
export class InboundSa extends SaBase {
  readonly direction = "in" as const;
  readonly replay: ReplayWindow;
  /** Packets dropped as replays (counted here and in the database totals). */
  replayDrops = 0;
  /** Packets whose ICV did not verify. */
  authFailures = 0;

  constructor(p: InboundSaParams) {
    super(p);
    this.replay = new ReplayWindow(p.replayWindow ?? DEFAULT_REPLAY_WINDOW);
  }

  /**
   * The full sequence number of a packet carrying the low 32 bits `low`. Without ESN that is
   * `low`. With ESN the high half is inferred from the window as RFC 4303 Appendix A2.2 does:
   * a low value below the window's bottom means the high half has advanced.
   */
  fullSequence(low: number): number {
    if (!this.esn) return low;
    const top = this.replay.highest;
    const w = this.replay.size;
    const th = Math.floor(top / 0x1_0000_0000);
    const tl = top % 0x1_0000_0000;
    let hi: number;
    if (tl >= w - 1) {
      // Case A: the window lies within one high-order block.
      hi = low >= tl - w + 1 ? th : th + 1;
    } else {
      // Case B: the window straddles a high-order boundary.
      hi = low >= (tl - w + 1 + 0x1_0000_0000) % 0x1_0000_0000 && th > 0 ? th - 1 : th;
    }
    return hi * 0x1_0000_0000 + low;
  }
}

export type Sa = InboundSa | OutboundSa;

/** What `status` shows of an SA (never the key). */
export interface SaInfo {
  direction: "in" | "out";
  peer: string;
  spi: number;
  keyId: number;
  bytes: number;
  packets: number;
  createdAt: number;
  lastUsedAt: number | undefined;
  /** Outbound: last sequence number sent. Inbound: highest sequence number accepted. */
  sequence: number;
  rekeySoon: boolean;
  replayDrops: number;
  authFailures: number;
}

/** A loggable summary of an SA, without key material. */
export function describeSa(sa: Sa): SaInfo {
  const out = sa.direction === "out";
  return {
    direction: sa.direction,
    peer: sa.peer,
    spi: sa.spi,
    keyId: sa.keyId,
    bytes: sa.bytes,
    packets: sa.packets,
    createdAt: sa.createdAt,
    lastUsedAt: sa.lastUsedAt,
    sequence: out ? sa.sequence : sa.replay.highest,
    rekeySoon: out ? sa.rekeySoon : false,
    replayDrops: out ? 0 : sa.replayDrops,
    authFailures: out ? 0 : sa.authFailures,
  };
}

/** SPI as people and tshark write it: 0x followed by 8 hex digits. */
export function formatSpi(spi: number): string {
  return `0x${spi.toString(16).padStart(8, "0")}`;
}
