/**
 * Wire format of WireGuard's four messages (whitepaper sections 5.4.2 - 5.4.7). Integers are
 * little-endian; the first byte is the type and the next three are reserved zeros. Decoders are
 * for packet data: they return undefined for anything malformed and never throw.
 */
import {
  AEAD_TAG_SIZE,
  MAC_SIZE,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_INITIATION,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE,
  MESSAGE_RESPONSE_SIZE,
  MESSAGE_TRANSPORT,
  MESSAGE_TRANSPORT_HEADER_SIZE,
  MESSAGE_TRANSPORT_MIN_SIZE,
} from "./constants.js";

/** Whitepaper 5.4.2: handshake initiation (148 bytes). */
export interface MessageInitiation {
  sender: number;
  /** 32 bytes, the initiator's ephemeral public key. */
  ephemeral: Buffer;
  /** 48 bytes: AEAD of the initiator's static public key. */
  encryptedStatic: Buffer;
  /** 28 bytes: AEAD of the TAI64N timestamp. */
  encryptedTimestamp: Buffer;
  mac1: Buffer;
  mac2: Buffer;
}

/** Whitepaper 5.4.3: handshake response (92 bytes). */
export interface MessageResponse {
  sender: number;
  receiver: number;
  ephemeral: Buffer;
  /** 16 bytes: AEAD of the empty string. */
  encryptedNothing: Buffer;
  mac1: Buffer;
  mac2: Buffer;
}

/** Whitepaper 5.4.7: cookie reply (64 bytes). */
export interface MessageCookieReply {
  receiver: number;
  /** 24 bytes, the XChaCha20 nonce. */
  nonce: Buffer;
  /** 32 bytes: XAEAD of the 16-byte cookie. */
  encryptedCookie: Buffer;
}

/** Whitepaper 5.4.6: transport data message header; `payload` is ciphertext || tag. */
export interface MessageTransport {
  receiver: number;
  counter: bigint;
  payload: Buffer;
}

/** The message type of a datagram (1..4) when its header is well formed, else undefined. */
export function messageType(b: Buffer): number | undefined {
  if (b.length < 4 || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) return undefined;
  const t = b[0]!;
  return t >= MESSAGE_INITIATION && t <= MESSAGE_TRANSPORT ? t : undefined;
}

function header(type: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b[0] = type;
  return b;
}

function put(b: Buffer, at: number, part: Buffer, len: number): void {
  if (part.length !== len) throw new RangeError(`field must be ${len} bytes`);
  part.copy(b, at);
}

/** Encodes an initiation; mac1/mac2 may be zero-filled and computed afterwards over the bytes. */
export function encodeInitiation(m: MessageInitiation): Buffer {
  const b = header(MESSAGE_INITIATION, MESSAGE_INITIATION_SIZE);
  b.writeUInt32LE(m.sender >>> 0, 4);
  put(b, 8, m.ephemeral, 32);
  put(b, 40, m.encryptedStatic, 32 + AEAD_TAG_SIZE);
  put(b, 88, m.encryptedTimestamp, 12 + AEAD_TAG_SIZE);
  put(b, 116, m.mac1, MAC_SIZE);
  put(b, 132, m.mac2, MAC_SIZE);
  return b;
}

/** Decodes an initiation (exactly 148 bytes); fields are copies. */
export function decodeInitiation(b: Buffer): MessageInitiation | undefined {
  if (b.length !== MESSAGE_INITIATION_SIZE || messageType(b) !== MESSAGE_INITIATION) return undefined;
  return {
    sender: b.readUInt32LE(4),
    ephemeral: Buffer.from(b.subarray(8, 40)),
    encryptedStatic: Buffer.from(b.subarray(40, 88)),
    encryptedTimestamp: Buffer.from(b.subarray(88, 116)),
    mac1: Buffer.from(b.subarray(116, 132)),
    mac2: Buffer.from(b.subarray(132, 148)),
  };
}

/** Encodes a response. */
export function encodeResponse(m: MessageResponse): Buffer {
  const b = header(MESSAGE_RESPONSE, MESSAGE_RESPONSE_SIZE);
  b.writeUInt32LE(m.sender >>> 0, 4);
  b.writeUInt32LE(m.receiver >>> 0, 8);
  put(b, 12, m.ephemeral, 32);
  put(b, 44, m.encryptedNothing, AEAD_TAG_SIZE);
  put(b, 60, m.mac1, MAC_SIZE);
  put(b, 76, m.mac2, MAC_SIZE);
  return b;
}

/** Decodes a response (exactly 92 bytes). */
export function decodeResponse(b: Buffer): MessageResponse | undefined {
  if (b.length !== MESSAGE_RESPONSE_SIZE || messageType(b) !== MESSAGE_RESPONSE) return undefined;
  return {
    sender: b.readUInt32LE(4),
    receiver: b.readUInt32LE(8),
    ephemeral: Buffer.from(b.subarray(12, 44)),
    encryptedNothing: Buffer.from(b.subarray(44, 60)),
    mac1: Buffer.from(b.subarray(60, 76)),
    mac2: Buffer.from(b.subarray(76, 92)),
  };
}

/** Encodes a cookie reply. */
export function encodeCookieReply(m: MessageCookieReply): Buffer {
  const b = header(MESSAGE_COOKIE_REPLY, MESSAGE_COOKIE_REPLY_SIZE);
  b.writeUInt32LE(m.receiver >>> 0, 4);
  put(b, 8, m.nonce, 24);
  put(b, 32, m.encryptedCookie, MAC_SIZE + AEAD_TAG_SIZE);
  return b;
}

/** Decodes a cookie reply (exactly 64 bytes). */
export function decodeCookieReply(b: Buffer): MessageCookieReply | undefined {
  if (b.length !== MESSAGE_COOKIE_REPLY_SIZE || messageType(b) !== MESSAGE_COOKIE_REPLY) return undefined;
  return {
    receiver: b.readUInt32LE(4),
    nonce: Buffer.from(b.subarray(8, 32)),
    encryptedCookie: Buffer.from(b.subarray(32, 64)),
  };
}

/** Encodes a transport message: 16-byte header then `payload` (ciphertext || tag). */
export function encodeTransport(m: MessageTransport): Buffer {
  const b = Buffer.alloc(MESSAGE_TRANSPORT_HEADER_SIZE + m.payload.length);
  b[0] = MESSAGE_TRANSPORT;
  b.writeUInt32LE(m.receiver >>> 0, 4);
  b.writeBigUInt64LE(m.counter, 8);
  m.payload.copy(b, MESSAGE_TRANSPORT_HEADER_SIZE);
  return b;
}

/** Decodes a transport message (at least 32 bytes); `payload` is a view into `b`, not a copy. */
export function decodeTransport(b: Buffer): MessageTransport | undefined {
  if (b.length < MESSAGE_TRANSPORT_MIN_SIZE || messageType(b) !== MESSAGE_TRANSPORT) return undefined;
  return {
    receiver: b.readUInt32LE(4),
    counter: b.readBigUInt64LE(8),
    payload: b.subarray(MESSAGE_TRANSPORT_HEADER_SIZE),
  };
}
