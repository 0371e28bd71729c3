/**
 * Denial-of-service mitigation of WireGuard (whitepaper sections 5.3, 5.4.4 and 5.4.7): mac1 on
 * every handshake message, and under load a cookie that binds the sender's address, returned in a
 * cookie reply and proven by mac2. As wireguard-go's `cookie.go` and `ratelimiter.go`.
 */
import type { RandomBytes } from "../clock.js";
import {
  COOKIE_REFRESH_TIME,
  MAC_SIZE,
  RATELIMIT_BURST,
  RATELIMIT_PACKETS_PER_SECOND,
  UNDER_LOAD_AFTER_TIME,
  UNDER_LOAD_HANDSHAKES_PER_SECOND,
  WG_LABEL_COOKIE,
  WG_LABEL_MAC1,
} from "./constants.js";
import type { Endpoint } from "./contract.js";
import { equalBytes, hash, mac, xaeadDecrypt, xaeadEncrypt } from "./crypto.js";
import { parseIp } from "./ip.js";
import { encodeCookieReply, type MessageCookieReply } from "./messages.js";

/** Whitepaper 5.4.4: the mac1 key of a receiver, HASH(LABEL_MAC1 || S_pub). */
export const mac1Key = (publicKey: Buffer): Buffer => hash(Buffer.from(WG_LABEL_MAC1), publicKey);
/** Whitepaper 5.4.7: the cookie encryption key of a receiver, HASH(LABEL_COOKIE || S_pub). */
export const cookieKey = (publicKey: Buffer): Buffer => hash(Buffer.from(WG_LABEL_COOKIE), publicKey);

/** The bytes a cookie binds: the source IP address then the port (big-endian). */
export function endpointBytes(ep: Endpoint): Buffer {
  const ip = parseIp(ep.address) ?? Buffer.from(ep.address);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(ep.port & 0xffff);
  return Buffer.concat([ip, port]);
}

/**
 * Responder side (whitepaper 5.4.7): checks mac1 and mac2 of received handshake messages and makes
 * cookie replies. The cookie secret is random and replaced when older than COOKIE_REFRESH_TIME.
 */
export class CookieChecker {
  private mac1Key: Buffer | undefined;
  private cookieKey: Buffer | undefined;
  private secret: Buffer;
  private secretSetAt: number | undefined;

  constructor(private readonly random: RandomBytes) {
    this.secret = Buffer.alloc(32);
  }

  /** Binds the checker to the device's public key (undefined: no key, nothing authenticates). */
  setPublicKey(publicKey: Buffer | undefined): void {
    this.mac1Key = publicKey === undefined ? undefined : mac1Key(publicKey);
    this.cookieKey = publicKey === undefined ? undefined : cookieKey(publicKey);
  }

  /** Whitepaper 5.4.4: mac1 = MAC(HASH(LABEL_MAC1 || S_pub), msg_alpha) where alpha ends before mac1. */
  checkMac1(msg: Buffer): boolean {
    if (this.mac1Key === undefined) return false;
    const end = msg.length - 2 * MAC_SIZE;
    return equalBytes(mac(this.mac1Key, msg.subarray(0, end)), msg.subarray(end, end + MAC_SIZE));
  }

  /** Whitepaper 5.4.4: mac2 = MAC(cookie, msg_beta) with the cookie of `src`; false with a stale secret. */
  checkMac2(msg: Buffer, src: Endpoint, now: number): boolean {
    if (this.secretSetAt === undefined || now - this.secretSetAt > COOKIE_REFRESH_TIME) return false;
    const cookie = mac(this.secret, endpointBytes(src));
    const end = msg.length - MAC_SIZE;
    return equalBytes(mac(cookie, msg.subarray(0, end)), msg.subarray(end));
  }

  /** Whitepaper 5.4.7: the cookie reply to `msg` (whose sender index is `receiver`) from `src`. */
  createReply(msg: Buffer, receiver: number, src: Endpoint, now: number): Buffer | undefined {
    if (this.cookieKey === undefined) return undefined;
    if (this.secretSetAt === undefined || now - this.secretSetAt > COOKIE_REFRESH_TIME) {
      this.secret = Buffer.from(this.random(32));
      this.secretSetAt = now;
    }
    const cookie = mac(this.secret, endpointBytes(src));
    const nonce = Buffer.from(this.random(24));
    const end = msg.length - 2 * MAC_SIZE;
    const msgMac1 = msg.subarray(end, end + MAC_SIZE);
    const encryptedCookie = xaeadEncrypt(this.cookieKey, nonce, cookie, msgMac1);
    return encodeCookieReply({ receiver, nonce, encryptedCookie });
  }
}

/**
 * Initiator side (whitepaper 5.4.4, 5.4.7), one per peer: writes mac1 and mac2 into outgoing
 * handshake messages, and stores the cookie from a cookie reply for COOKIE_REFRESH_TIME.
 */
export class CookieGenerator {
  private readonly mac1Key: Buffer;
  private readonly cookieKey: Buffer;
  private cookie: Buffer | undefined;
  private cookieSetAt = 0;
  private lastMac1: Buffer | undefined;

  constructor(peerPublicKey: Buffer) {
    this.mac1Key = mac1Key(peerPublicKey);
    this.cookieKey = cookieKey(peerPublicKey);
  }

  /** Writes mac1 (always) and mac2 (while a fresh cookie is held, else zeros) into `msg` in place. */
  addMacs(msg: Buffer, now: number): void {
    const mac1At = msg.length - 2 * MAC_SIZE;
    const mac2At = msg.length - MAC_SIZE;
    const m1 = mac(this.mac1Key, msg.subarray(0, mac1At));
    m1.copy(msg, mac1At);
    this.lastMac1 = m1;
    if (this.cookie !== undefined && now - this.cookieSetAt < COOKIE_REFRESH_TIME) {
      mac(this.cookie, msg.subarray(0, mac2At)).copy(msg, mac2At);
    } else {
      msg.fill(0, mac2At);
    }
  }

  /** Decrypts a cookie reply to our last message; true when it authenticated and the cookie is stored. */
  consumeReply(reply: MessageCookieReply, now: number): boolean {
    if (this.lastMac1 === undefined) return false;
    const cookie = xaeadDecrypt(this.cookieKey, reply.nonce, reply.encryptedCookie, this.lastMac1);
    if (cookie === undefined) return false;
    this.lastMac1 = undefined;
    this.cookie = cookie;
    this.cookieSetAt = now;
    return true;
  }

  /** True while a cookie is held and fresh (for tests and status). */
  hasCookie(now: number): boolean {
    return this.cookie !== undefined && now - this.cookieSetAt < COOKIE_REFRESH_TIME;
  }
}

/**
 * Decides when the responder is "under load" (whitepaper 5.3): more than `threshold` handshake
 * messages within one second, or a reported queue depth at or above `queueThreshold`. The state
 * lasts UNDER_LOAD_AFTER_TIME after the last trigger, as wireguard-go's `underLoadUntil`.
 */
export class LoadDetector {
  private windowStart = Number.NEGATIVE_INFINITY;
  private count = 0;
  private underLoadUntil = Number.NEGATIVE_INFINITY;

  constructor(
    readonly threshold = UNDER_LOAD_HANDSHAKES_PER_SECOND,
    readonly queueThreshold = 128,
  ) {}

  /** Counts one handshake message at `now` and returns whether the device is under load. */
  record(now: number): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.count = 0;
    }
    this.count++;
    if (this.count > this.threshold) this.underLoadUntil = now + UNDER_LOAD_AFTER_TIME;
    return this.isUnderLoad(now);
  }

  /** Input from a data path that queues handshakes: a deep queue means load. */
  reportQueueDepth(depth: number, now: number): void {
    if (depth >= this.queueThreshold) this.underLoadUntil = now + UNDER_LOAD_AFTER_TIME;
  }

  isUnderLoad(now: number): boolean {
    return now < this.underLoadUntil;
  }
}

/**
 * Token bucket per source address for handshakes that carried a valid mac2 under load
 * (wireguard-go `ratelimiter.go`: 20 per second, burst 5; IPv6 sources grouped by /64).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = 0;

  constructor(
    readonly perSecond = RATELIMIT_PACKETS_PER_SECOND,
    readonly burst = RATELIMIT_BURST,
  ) {}

  /** True when a handshake from `address` may be processed at `now`. */
  allow(address: string, now: number): boolean {
    const ip = parseIp(address);
    const key = ip === undefined ? address : (ip.length === 16 ? ip.subarray(0, 8) : ip).toString("hex");
    if (now - this.lastSweep > 1000) {
      for (const [k, b] of this.buckets) if (now - b.at > 1000) this.buckets.delete(k);
      this.lastSweep = now;
    }
    const b = this.buckets.get(key);
    if (b === undefined) {
      this.buckets.set(key, { tokens: this.burst - 1, at: now });
      return true;
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) * this.perSecond) / 1000);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
