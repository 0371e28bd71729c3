/**
 * What a userspace WireGuard daemon hands its successor in a planned restart (docs/design.md, "A
 * planned restart (an upgrade)"): the device's identity and peers with their live sessions, so
 * the successor serves on without a handshake. Produced by `Device.handOver`, taken by
 * `Device.takeOver`. Times are relative (ms ago, ms from now): each process has its own monotonic
 * clock. Holds the private key and session keys: it travels only over the daemon's 0600 control
 * socket and is never logged.
 */
import { z } from "zod";

const key = z.string().regex(/^[0-9a-f]{64}$/, "must be 32 bytes of hex");
const count = z.number().int().min(0);
/** A timer deadline in ms from the hand-over, or null when disarmed. */
const deadline = z.number().nullable();

/** One session: keys, indices, the next send counter and the replay window. */
export const handedKeypairSchema = z.object({
  /** Where the peer kept it: its slot (previous, current, next) or `lingering`. */
  slot: z.enum(["previous", "current", "next", "lingering"]),
  /** The keypair the peer was last seen sending on. */
  receivingOn: z.boolean(),
  localIndex: z.number().int().min(0).max(0xffff_ffff),
  remoteIndex: z.number().int().min(0).max(0xffff_ffff),
  sendKey: key,
  recvKey: key,
  /** The next counter to send with (the predecessor sends nothing more on this keypair). */
  sendCounter: count,
  ageMs: z.number().min(0),
  isInitiator: z.boolean(),
  replay: z.object({ highest: count, ring: z.array(count) }),
});

export const handedPeerSchema = z.object({
  publicKey: key,
  presharedKey: key.nullable(),
  endpoint: z.object({ address: z.string().min(1), port: z.number().int().min(1).max(65535) }).nullable(),
  allowedIps: z.array(z.string()),
  persistentKeepalive: z.number().int().min(0).max(65535),
  rxBytes: count,
  txBytes: count,
  lastHandshakeWall: z.number().nullable(),
  /** ms since the last handshake message sent, null for never. */
  lastSentHandshakeAgoMs: z.number().min(0).nullable(),
  sentDataOnCurrent: z.boolean(),
  /** The newest TAI64N timestamp of an initiation accepted from the peer (replayed ones stay refused). */
  lastTimestamp: z.string().regex(/^[0-9a-f]{24}$/),
  timers: z.object({
    retransmitHandshake: deadline,
    sendKeepalive: deadline,
    newHandshake: deadline,
    zeroKeyMaterial: deadline,
    persistentKeepalive: deadline,
    handshakeAttempts: count,
    needAnotherKeepalive: z.boolean(),
    sentLastMinuteHandshake: z.boolean(),
  }),
  keypairs: z.array(handedKeypairSchema),
});

export const deviceHandoverSchema = z.object({
  privateKey: key.nullable(),
  fwmark: z.number().int().min(0).max(0xffff_ffff),
  peers: z.array(handedPeerSchema),
});
export type DeviceHandover = z.infer<typeof deviceHandoverSchema>;
export type HandedPeer = z.infer<typeof handedPeerSchema>;
export type HandedKeypair = z.infer<typeof handedKeypairSchema>;
