/**
 * A small deterministic mutation fuzzer for podcrypt's decoders and parsers.
 *
 * Why not a library: fast-check and jsfuzz would be new dependencies that every checkout and the
 * image would have to install, and neither gives more than this needs. fast-check generates from
 * arbitraries (structure we would have to describe twice, once in zod and once for it) and shrinks,
 * which matters less than keeping the failing input; jsfuzz needs its own instrumenting runner
 * outside node:test. What finds bugs in decoders is starting from valid inputs (real handshake
 * messages, real ESP packets, valid configs) and mutating them in ways that keep most of the
 * structure, which this does: byte-level mutators (bit flips, interesting integers at any width,
 * truncation, extension, duplication, splicing two corpus entries, dictionary tokens) plus each
 * target's own structure-aware mutator (JSON/YAML values, message fields). Without coverage
 * feedback, inputs whose outcome (the drop reason, the error code, ...) was not seen before join
 * the pool, so the search keeps the inputs that reached a new place.
 *
 * Deterministic: a run is a function of (target, seed, iteration count); the seed is printed with
 * every failure. A crash's input is written to test/fuzz/regressions/TARGET/, which every run
 * replays first.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../src/paths.js";

/** xorshift128+ style PRNG (32-bit halves), seeded with splitmix32: fast and reproducible. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  /** A uniform uint32 (xoshiro128**). */
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    return r;
  }

  /** A uniform integer in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.below(list.length)]!;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Integers decoders trip over: boundaries of every width, both endiannesses are tried. */
const INTERESTING = [
  0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff,
];

/** Byte-level mutation of `input` (never in place); `splice` is another corpus entry. */
export function mutateBytes(input: Buffer, rng: Rng, splice: Buffer, dictionary: readonly Buffer[]): Buffer {
  let b = Buffer.from(input);
  const rounds = 1 + rng.below(rng.chance(0.2) ? 16 : 4);
  for (let r = 0; r < rounds; r++) {
    const at = b.length === 0 ? 0 : rng.below(b.length);
    switch (rng.below(11)) {
      case 0: // flip a bit
        if (b.length > 0) b[at] = b[at]! ^ (1 << rng.below(8));
        break;
      case 1: // random byte
        if (b.length > 0) b[at] = rng.below(256);
        break;
      case 2: {
        // interesting integer, 1/2/4 bytes, either endianness
        const width = rng.pick([1, 2, 4]);
        if (b.length >= at + width) {
          const v = rng.pick(INTERESTING) >>> 0;
          if (width === 1) b[at] = v & 0xff;
          else if (width === 2) {
            if (rng.chance(0.5)) b.writeUInt16BE(v & 0xffff, at);
            else b.writeUInt16LE(v & 0xffff, at);
          } else if (rng.chance(0.5)) b.writeUInt32BE(v, at);
          else b.writeUInt32LE(v, at);
        }
        break;
      }
      case 3: // truncate
        b = b.subarray(0, rng.below(b.length + 1));
        break;
      case 4: // extend with random bytes
        b = Buffer.concat([b, rng.bytes(1 + rng.below(rng.chance(0.1) ? 2048 : 32))]);
        break;
      case 5: {
        // delete a range
        const len = 1 + rng.below(Math.max(1, Math.min(32, b.length - at)));
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
        break;
      }
      case 6: {
        // duplicate a range in place
        const len = 1 + rng.below(Math.max(1, Math.min(64, b.length - at)));
        b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
        break;
      }
      case 7: {
        // splice: our head, the other entry's tail
        const cut = rng.below(splice.length + 1);
        b = Buffer.concat([b.subarray(0, at), splice.subarray(cut)]);
        break;
      }
      case 8: // arithmetic on a byte
        if (b.length > 0) b[at] = (b[at]! + rng.below(71) - 35) & 0xff;
        break;
      case 9: {
        // insert a dictionary token
        if (dictionary.length === 0) break;
        const tok = rng.pick(dictionary);
        b = Buffer.concat([b.subarray(0, at), tok, b.subarray(at)]);
        break;
      }
      default: {
        // overwrite with a dictionary token
        if (dictionary.length === 0) break;
        const tok = rng.pick(dictionary);
        b = Buffer.concat([b.subarray(0, at), tok, b.subarray(Math.min(b.length, at + tok.length))]);
      }
    }
  }
  return b;
}

/**
 * One fuzz target. `check` runs the code under test on an input and throws {@link FuzzFailure}
 * (an invariant broken) or lets any unexpected exception out: both are crashes. What is expected
 * (the documented validation error, a counted drop) it returns as an outcome label, which steers
 * the corpus.
 */
export interface FuzzTarget {
  readonly name: string;
  /** Valid inputs the mutations start from. */
  seeds(): Buffer[];
  /** Tokens worth inserting (keywords, magic values). */
  readonly dictionary?: readonly Buffer[];
  /** A structure-aware mutation, chosen for about half the iterations. */
  mutate?(input: Buffer, rng: Rng): Buffer;
  /** Mutated inputs of the bounded run in `npm test` (a second or two of work). */
  readonly bounded: number;
  /** Runs the input; returns an outcome label; throws on a crash. */
  check(input: Buffer): string;
}

/** An invariant the code under test broke (as opposed to an exception it threw). */
export class FuzzFailure extends Error {
  override readonly name = "FuzzFailure";
}

/** Throws FuzzFailure with `message` unless `cond`. */
export function invariant(cond: boolean, message: string): asserts cond {
  if (!cond) throw new FuzzFailure(message);
}

/** Where a target's crash inputs live. */
export function regressionDir(target: string): string {
  return join(projectRoot(), "test", "fuzz", "regressions", target);
}

/** The committed crash inputs of `target` (replayed before every run). */
export function regressionInputs(target: string): { file: string; input: Buffer }[] {
  const dir = regressionDir(target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".bin"))
    .sort()
    .map((f) => ({ file: join(dir, f), input: readFileSync(join(dir, f)) }));
}

/** A crash: the input (saved as `file`), what was thrown, and how to reproduce it. */
export interface FuzzCrash {
  target: string;
  seed: number;
  iteration: number;
  file: string;
  error: unknown;
}

export interface FuzzStats {
  target: string;
  seed: number;
  iterations: number;
  corpus: number;
  outcomes: number;
  crash?: FuzzCrash;
}

/** Saves a crashing input under regressions/TARGET/ (named by its hash); returns the path. */
export function saveCrash(target: string, input: Buffer): string {
  const dir = regressionDir(target);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${createHash("sha256").update(input).digest("hex").slice(0, 16)}.bin`);
  writeFileSync(file, input);
  return file;
}

/**
 * Runs `target` from `seed` until `iterations` inputs or `seconds` have passed (whichever is
 * given, iterations first), stopping at the first crash, whose input it saves.
 */
export function fuzz(
  target: FuzzTarget,
  o: { seed: number; iterations?: number; seconds?: number; save?: boolean },
): FuzzStats {
  const rng = new Rng(o.seed);
  const corpus = target.seeds();
  if (corpus.length === 0) throw new Error(`${target.name}: no seeds`);
  const outcomes = new Set<string>();
  const dictionary = target.dictionary ?? [];
  const deadline = o.seconds === undefined ? Infinity : Date.now() + o.seconds * 1000;
  const limit = o.iterations ?? Infinity;
  let i = 0;
  const crash = (input: Buffer, error: unknown): FuzzStats => {
    const file = o.save === false ? "(not saved)" : saveCrash(target.name, input);
    return {
      target: target.name,
      seed: o.seed,
      iterations: i,
      corpus: corpus.length,
      outcomes: outcomes.size,
      crash: { target: target.name, seed: o.seed, iteration: i, file, error },
    };
  };
  for (const seedInput of corpus) {
    try {
      outcomes.add(target.check(seedInput));
    } catch (error) {
      return crash(seedInput, error);
    }
  }
  for (; i < limit; i++) {
    if ((i & 63) === 0 && Date.now() > deadline) break;
    const base = rng.pick(corpus);
    const input =
      target.mutate !== undefined && rng.chance(0.5)
        ? target.mutate(base, rng)
        : mutateBytes(base, rng, rng.pick(corpus), dictionary);
    let outcome: string;
    try {
      outcome = target.check(input);
    } catch (error) {
      return crash(input, error);
    }
    if (!outcomes.has(outcome)) {
      outcomes.add(outcome);
      if (corpus.length < 4096) corpus.push(input);
    }
  }
  return { target: target.name, seed: o.seed, iterations: i, corpus: corpus.length, outcomes: outcomes.size };
}

/** A crash as one paragraph: what, where the input is, and the command that reproduces the run. */
export function describeCrash(c: FuzzCrash): string {
  const e =
    c.error instanceof Error
      ? `${c.error.name}: ${c.error.message}\n${c.error.stack ?? ""}`
      : String(c.error);
  return (
    `fuzz target ${c.target} crashed at iteration ${c.iteration} (seed ${c.seed}); input saved as ${c.file} ` +
    `(replayed by every run from now on; commit it with the fix). Reproduce: ` +
    `npm run fuzz -- --target ${c.target} --seed ${c.seed} --iterations ${c.iteration + 1}\n${e}`
  );
}
