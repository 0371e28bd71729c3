// Microbenchmark: WireGuard transport-data seal/open, native batch (OpenSSL EVP in C++, one call
// per batch) against node:crypto createCipheriv per packet. Prints packets/s and Gbit/s of
// plaintext at each packet size; `--json` prints the rows as JSON instead.
//
//   npx tsx bench/micro/aead.ts [--json] [--seconds S] [--batch N]
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { native } from "../../src/native.js";

interface Row {
  impl: string;
  op: "seal" | "open";
  size: number;
  packetsPerSecond: number;
  gbitPerSecond: number;
}

const args = process.argv.slice(2);
const json = args.includes("--json");
const seconds = Number(args[args.indexOf("--seconds") + 1] ?? "") || 0.5;
const batch = Number(args[args.indexOf("--batch") + 1] ?? "") || 128;
const sizes = [64, 512, 1420];
const addon = native();
const key = randomBytes(32);

/** Runs `fn` (which processes `perCall` packets) for about `seconds`; packets per second. */
function measure(perCall: number, fn: () => void): number {
  for (let i = 0; i < 20; i++) fn();
  let calls = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < 16; i++) fn();
    calls += 16;
    elapsed = process.hrtime.bigint() - start;
  }
  return (calls * perCall) / (Number(elapsed) / 1e9);
}

function nonce(counter: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32LE(counter >>> 0, 4);
  return n;
}

const rows: Row[] = [];
const row = (impl: string, op: "seal" | "open", size: number, pps: number): void => {
  rows.push({ impl, op, size, packetsPerSecond: Math.round(pps), gbitPerSecond: (pps * size * 8) / 1e9 });
};

for (const size of sizes) {
  const slot = Math.ceil((16 + size + 32) / 64) * 64;
  const arena = Buffer.alloc(slot * batch);
  const offsets = new Uint32Array(batch).map((_, i) => i * slot);
  const lengths = new Uint32Array(batch);
  const keyIndex = new Uint32Array(batch);
  const receivers = new Uint32Array(batch).fill(7);
  const counters = new Float64Array(batch);
  const ok = new Uint8Array(batch);
  const plain = randomBytes(size);
  let counter = 0;

  row(
    "native batch",
    "seal",
    size,
    measure(batch, () => {
      lengths.fill(size);
      for (let i = 0; i < batch; i++) counters[i] = counter++;
      addon.sealBatch(arena, offsets, lengths, key, keyIndex, receivers, counters, 1420, batch);
    }),
  );

  // Open needs genuine messages: seal once and restore the ciphertext before every round.
  lengths.fill(size);
  for (let i = 0; i < batch; i++) plain.copy(arena, offsets[i]! + 16);
  addon.sealBatch(arena, offsets, lengths, key, keyIndex, receivers, counters, 1420, batch);
  const sealedArena = Buffer.from(arena);
  const sealedLengths = Uint32Array.from(lengths);
  row(
    "native batch",
    "open",
    size,
    measure(batch, () => {
      sealedArena.copy(arena);
      lengths.set(sealedLengths);
      if (addon.openBatch(arena, offsets, lengths, key, keyIndex, counters, ok, batch) !== batch)
        throw new Error("open failed");
    }),
  );

  const padded = Buffer.concat([plain, Buffer.alloc((16 - (size % 16)) % 16)]);
  row(
    "node:crypto per packet",
    "seal",
    size,
    measure(1, () => {
      const c = createCipheriv("chacha20-poly1305", key, nonce(counter++), { authTagLength: 16 });
      c.update(padded);
      c.final();
      c.getAuthTag();
    }),
  );

  const c = createCipheriv("chacha20-poly1305", key, nonce(1), { authTagLength: 16 });
  const ct = Buffer.concat([c.update(padded), c.final()]);
  const tag = c.getAuthTag();
  row(
    "node:crypto per packet",
    "open",
    size,
    measure(1, () => {
      const d = createDecipheriv("chacha20-poly1305", key, nonce(1), { authTagLength: 16 });
      d.setAuthTag(tag);
      d.update(ct);
      d.final();
    }),
  );
}

if (json) {
  process.stdout.write(JSON.stringify({ batch, seconds, rows }, null, 2) + "\n");
} else {
  const base = new Map(
    rows.filter((r) => r.impl.startsWith("node")).map((r) => [`${r.op}/${r.size}`, r.packetsPerSecond]),
  );
  console.log(`ChaCha20-Poly1305 WireGuard transport data, batch ${batch}, ${seconds}s per cell`);
  console.log("impl                     op    bytes   packets/s   Gbit/s   vs node:crypto");
  for (const r of rows) {
    const ratio = r.packetsPerSecond / (base.get(`${r.op}/${r.size}`) ?? r.packetsPerSecond);
    console.log(
      `${r.impl.padEnd(24)} ${r.op.padEnd(5)} ${String(r.size).padStart(5)} ${String(r.packetsPerSecond).padStart(11)}` +
        `   ${r.gbitPerSecond.toFixed(2).padStart(6)}   ${ratio.toFixed(2)}x`,
    );
  }
}
