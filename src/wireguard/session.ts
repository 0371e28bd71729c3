/**
 * Encryption of one transport data message (whitepaper 5.4.6) in TypeScript over node:crypto.
 * The production data path seals and opens in native batches; these helpers are the reference
 * used by the core's round-trip tests and by tools.
 */
import { AEAD_TAG_SIZE, MESSAGE_TRANSPORT_HEADER_SIZE, PADDING_MULTIPLE } from "./constants.js";
import type { TransportKeypair } from "./contract.js";
import { aeadDecrypt, aeadEncrypt } from "./crypto.js";
import { decodeTransport, encodeTransport } from "./messages.js";

/**
 * Whitepaper 5.4.6: pads `plaintext` with zeros to a multiple of 16 (not past `mtu` when given),
 * encrypts it with the keypair's send key and next counter, and returns the whole message.
 */
export function sealTransport(
  keypair: TransportKeypair,
  plaintext: Buffer,
  mtu = Number.POSITIVE_INFINITY,
): Buffer {
  const padded = Math.min(
    Math.ceil(plaintext.length / PADDING_MULTIPLE) * PADDING_MULTIPLE,
    Math.max(mtu, plaintext.length),
  );
  const body = Buffer.alloc(padded);
  plaintext.copy(body);
  const counter = keypair.sendCounter++;
  return encodeTransport({
    receiver: keypair.remoteIndex,
    counter: BigInt(counter),
    payload: aeadEncrypt(keypair.sendKey, counter, body, Buffer.alloc(0)),
  });
}

/** An opened transport message: the padded plaintext and the counter to check for replay. */
export interface OpenedTransport {
  readonly receiver: number;
  readonly counter: number;
  readonly plaintext: Buffer;
}

/** The receiver index of a transport message (to find the keypair), or undefined when malformed. */
export function transportReceiver(message: Buffer): number | undefined {
  return decodeTransport(message)?.receiver;
}

/** Decrypts a transport message with `recvKey`; undefined when malformed or not authentic. */
export function openTransport(recvKey: Buffer, message: Buffer): OpenedTransport | undefined {
  const m = decodeTransport(message);
  if (m === undefined || m.payload.length < AEAD_TAG_SIZE) return undefined;
  if (m.counter > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  const counter = Number(m.counter);
  const plaintext = aeadDecrypt(recvKey, counter, m.payload, Buffer.alloc(0));
  return plaintext === undefined ? undefined : { receiver: m.receiver, counter, plaintext };
}

/** Size of a transport message carrying `plaintextLength` bytes (padded to 16). */
export function transportSize(plaintextLength: number): number {
  return (
    MESSAGE_TRANSPORT_HEADER_SIZE +
    Math.ceil(plaintextLength / PADDING_MULTIPLE) * PADDING_MULTIPLE +
    AEAD_TAG_SIZE
  );
}
