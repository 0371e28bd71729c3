import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { generatePrivateKey, publicFromPrivate } from "../keys/x25519.js";
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSession,
  Handshake,
  HandshakeState,
  INITIAL_CHAIN_KEY,
  INITIAL_HASH,
  type HandshakeEnv,
  type StaticIdentity,
} from "./noise.js";

const identity = (): StaticIdentity => {
  const privateKey = generatePrivateKey(randomBytes);
  return { privateKey, publicKey: publicFromPrivate(privateKey) };
};

let nextIndex = 1;
const env = (wallNow = 1_700_000_000_000): HandshakeEnv => ({
  random: randomBytes,
  wallNow,
  newIndex: () => nextIndex++,
});

function pair(psk?: [Buffer, Buffer]): {
  a: StaticIdentity;
  b: StaticIdentity;
  ab: Handshake;
  ba: Handshake;
} {
  const a = identity();
  const b = identity();
  const ab = new Handshake(b.publicKey); // a's view of peer b
  const ba = new Handshake(a.publicKey);
  ab.precompute(a);
  ba.precompute(b);
  if (psk) {
    ab.presharedKey = psk[0];
    ba.presharedKey = psk[1];
  }
  return { a, b, ab, ba };
}

test("initial chaining key and hash are the published constants of the whitepaper construction", () => {
  // HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s") as in wireguard-go and the kernel (noise.c)
  assert.equal(
    INITIAL_CHAIN_KEY.toString("hex"),
    "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36",
  );
  assert.equal(
    INITIAL_HASH.toString("hex"),
    "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3",
  );
});

test("full IKpsk2 handshake derives matching transport keys", () => {
  const { a, b, ab, ba } = pair();
  const init = createInitiation(a, ab, env());
  assert.ok(init);
  assert.equal(ab.state, HandshakeState.InitiationCreated);
  const consumed = consumeInitiation(b, init, (pk) => (pk.equals(a.publicKey) ? ba : undefined), 0);
  assert.equal(consumed, ba);
  const resp = createResponse(ba, env());
  assert.ok(resp);
  assert.equal(resp.receiver, init.sender);
  assert.ok(consumeResponse(a, ab, resp));
  const ka = deriveSession(ab)!;
  const kb = deriveSession(ba)!;
  assert.ok(ka.isInitiator && !kb.isInitiator);
  assert.deepEqual(ka.sendKey, kb.recvKey);
  assert.deepEqual(ka.recvKey, kb.sendKey);
  assert.notDeepEqual(ka.sendKey, ka.recvKey);
  assert.equal(ka.remoteIndex, kb.localIndex);
  assert.equal(kb.remoteIndex, ka.localIndex);
  assert.equal(ab.state, HandshakeState.Zeroed);
  assert.ok(ab.chainKey.every((x) => x === 0));
});

test("preshared key: matching works, mismatch fails at the response", () => {
  const psk = randomBytes(32);
  let p = pair([psk, Buffer.from(psk)]);
  let init = createInitiation(p.a, p.ab, env())!;
  consumeInitiation(p.b, init, () => p.ba, 0);
  assert.ok(consumeResponse(p.a, p.ab, createResponse(p.ba, env())!));

  p = pair([psk, randomBytes(32)]);
  init = createInitiation(p.a, p.ab, env())!;
  assert.equal(
    consumeInitiation(p.b, init, () => p.ba, 0),
    p.ba,
    "PSK is only mixed in at the response",
  );
  assert.ok(!consumeResponse(p.a, p.ab, createResponse(p.ba, env())!));
  assert.equal(p.ab.state, HandshakeState.InitiationCreated);
});

test("replayed initiation is rejected; older timestamp rejected; flood within 20 ms rejected", () => {
  const { a, b, ab, ba } = pair();
  const init = createInitiation(a, ab, env(1_700_000_000_000))!;
  assert.equal(
    consumeInitiation(b, init, () => ba, 1000),
    ba,
  );
  assert.equal(
    consumeInitiation(b, init, () => ba, 5000),
    "replay",
  );
  const older = createInitiation(a, ab, env(1_600_000_000_000))!;
  assert.equal(
    consumeInitiation(b, older, () => ba, 6000),
    "replay",
  );
  const newer = createInitiation(a, ab, env(1_700_000_001_000))!;
  assert.equal(
    consumeInitiation(b, newer, () => ba, 6010),
    ba,
  );
  const newer2 = createInitiation(a, ab, env(1_700_000_002_000))!;
  assert.equal(
    consumeInitiation(b, newer2, () => ba, 6020),
    "flood",
  );
  assert.equal(
    consumeInitiation(b, newer2, () => ba, 6031),
    ba,
  );
});

test("tampered or misdirected initiations do not authenticate", () => {
  const { a, b, ab, ba } = pair();
  const init = createInitiation(a, ab, env())!;
  const bad = { ...init, encryptedStatic: Buffer.from(init.encryptedStatic) };
  bad.encryptedStatic[0]! ^= 1;
  assert.equal(
    consumeInitiation(b, bad, () => ba, 0),
    undefined,
  );
  const stranger = identity();
  assert.equal(
    consumeInitiation(stranger, init, () => ba, 0),
    undefined,
  );
  assert.equal(
    consumeInitiation(b, init, () => undefined, 0),
    undefined,
    "unknown peer",
  );
  assert.equal(
    consumeInitiation(b, { ...init, ephemeral: Buffer.alloc(32) }, () => ba, 0),
    undefined,
  );
  // a response is only consumed in InitiationCreated
  assert.equal(createResponse(ab, env()), undefined);
  assert.equal(deriveSession(ab), undefined);
});

test("no initiation without a usable static-static DH", () => {
  const a = identity();
  const hs = new Handshake(Buffer.alloc(32)); // low-order peer key
  hs.precompute(a);
  assert.equal(hs.precomputedStaticStatic, undefined);
  assert.equal(createInitiation(a, hs, env()), undefined);
});
