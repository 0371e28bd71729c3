/**
 * Protocol constants of WireGuard (whitepaper section 6.1 "Preliminaries" and the reference
 * implementations: wireguard-go `device/constants.go`, the kernel's `messages.h`). Times are in
 * milliseconds because every time in podcrypt's cores is a monotonic millisecond count.
 */

/** Whitepaper 6.1: a sending keypair is rekeyed after this many messages (2^60). */
export const REKEY_AFTER_MESSAGES = 2 ** 60;

/**
 * Whitepaper 6.1: a keypair may never send or receive this many messages (2^64 - 2^13 - 1).
 * Exact as a bigint; {@link REJECT_AFTER_MESSAGES} is the nearest double, adequate for the
 * comparisons the core makes because JS counters stay far below 2^53 in practice.
 */
export const REJECT_AFTER_MESSAGES_EXACT = 2n ** 64n - 2n ** 13n - 1n;
/** Whitepaper 6.1: {@link REJECT_AFTER_MESSAGES_EXACT} as a number (rounds to 2^64). */
export const REJECT_AFTER_MESSAGES = Number(REJECT_AFTER_MESSAGES_EXACT);

/**
 * The send counter at which a keypair stops sending. Counters are JS numbers, exact only up to
 * 2^53, far below REJECT_AFTER_MESSAGES: a counter past 2^53 would repeat a ChaCha20-Poly1305
 * nonce. The 2^13 margin covers a batch the data path seals after one `sendKeypair` check.
 */
export const SEND_COUNTER_LIMIT = Math.min(REJECT_AFTER_MESSAGES, 2 ** 53 - 2 ** 13);
/**
 * The send counter at which the core starts a new handshake: REKEY_AFTER_MESSAGES (whitepaper
 * 6.2), brought forward to 2^20 messages before {@link SEND_COUNTER_LIMIT} because JS counters
 * cannot reach 2^60.
 */
export const REKEY_SEND_COUNTER = Math.min(REKEY_AFTER_MESSAGES, SEND_COUNTER_LIMIT - 2 ** 20);

/** Whitepaper 6.1: an initiator starts a new handshake when its keypair is this old (120 s). */
export const REKEY_AFTER_TIME = 120_000;
/** Whitepaper 6.1: keypairs older than this are never used (180 s). */
export const REJECT_AFTER_TIME = 180_000;
/** Whitepaper 6.1: stop retrying a handshake after this long (90 s). */
export const REKEY_ATTEMPT_TIME = 90_000;
/** Whitepaper 6.1: retransmit an unanswered initiation after this long (5 s), plus jitter. */
export const REKEY_TIMEOUT = 5_000;
/** Whitepaper 6.1: upper bound of the random jitter added to REKEY_TIMEOUT (333 ms). */
export const REKEY_TIMEOUT_JITTER_MAX = 333;
/** Whitepaper 6.1: send a passive keepalive after receiving data and sending nothing for 10 s. */
export const KEEPALIVE_TIMEOUT = 10_000;
/** Whitepaper 5.4.7: cookie secret rotation and cookie lifetime at the initiator (120 s). */
export const COOKIE_REFRESH_TIME = 120_000;
/**
 * wireguard-go `HandshakeInitationRate`: a peer's initiations consumed closer together than this
 * (1 s / 50 = 20 ms) are dropped as a flood (whitepaper 5.1, "handshake flood").
 */
export const HANDSHAKE_INITIATION_RATE = 20;
/** Number of initiation retransmissions before giving up (REKEY_ATTEMPT_TIME / REKEY_TIMEOUT). */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
/** Whitepaper 6.3: all key material of a peer is erased after 3 x REJECT_AFTER_TIME without a new session. */
export const ZERO_KEY_MATERIAL_AFTER = 3 * REJECT_AFTER_TIME;

/**
 * Under-load threshold of the responder (whitepaper 5.3): more handshake messages than this within
 * one second make the device demand a valid mac2. wireguard-go uses a queue-depth test
 * (QueueHandshakeSize / 8 = 128); a rate gives the same effect without a queue in a pure core.
 */
export const UNDER_LOAD_HANDSHAKES_PER_SECOND = 128;
/** How long a device stays "under load" after the threshold was crossed (wireguard-go UnderLoadAfterTime, 1 s). */
export const UNDER_LOAD_AFTER_TIME = 1_000;
/** wireguard-go ratelimiter: handshakes per second accepted from one source address when under load. */
export const RATELIMIT_PACKETS_PER_SECOND = 20;
/** wireguard-go ratelimiter: burst allowance per source address. */
export const RATELIMIT_BURST = 5;

/** Message types (whitepaper 5.4.2 - 5.4.7). */
export const MESSAGE_INITIATION = 1;
export const MESSAGE_RESPONSE = 2;
export const MESSAGE_COOKIE_REPLY = 3;
export const MESSAGE_TRANSPORT = 4;

/** Sizes in bytes of the four messages (whitepaper 5.4.2 - 5.4.6). */
export const MESSAGE_INITIATION_SIZE = 148;
export const MESSAGE_RESPONSE_SIZE = 92;
export const MESSAGE_COOKIE_REPLY_SIZE = 64;
export const MESSAGE_TRANSPORT_HEADER_SIZE = 16;
/** Poly1305 tag length. */
export const AEAD_TAG_SIZE = 16;
/** Smallest transport message: header plus the tag of an empty (keepalive) payload. */
export const MESSAGE_TRANSPORT_MIN_SIZE = MESSAGE_TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE;
/** Whitepaper 5.4.6: plaintext is zero-padded to a multiple of 16 bytes. */
export const PADDING_MULTIPLE = 16;

/** X25519 key length, also the length of a preshared key. */
export const KEY_SIZE = 32;
/** BLAKE2s-128 MAC length used for mac1, mac2 and cookies. */
export const MAC_SIZE = 16;
/** TAI64N timestamp length. */
export const TIMESTAMP_SIZE = 12;

/** Whitepaper 5.4: the Noise protocol name hashed into the initial chaining key. */
export const NOISE_CONSTRUCTION = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/** Whitepaper 5.4: the identifier mixed into the initial hash. */
export const WG_IDENTIFIER = "WireGuard v1 zx2c4 Jason@zx2c4.com";
/** Whitepaper 5.4.4: label of the mac1 key. */
export const WG_LABEL_MAC1 = "mac1----";
/** Whitepaper 5.4.7: label of the cookie encryption key. */
export const WG_LABEL_COOKIE = "cookie--";
