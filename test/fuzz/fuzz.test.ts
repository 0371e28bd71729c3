/**
 * The fuzz targets (test/fuzz/targets.ts), bounded: every committed crash input first, then a
 * fixed number of mutated inputs per target from a seed (PODCRYPT_FUZZ_SEED, else a fresh one,
 * printed on failure with the command that reproduces the run). Longer runs: `npm run fuzz`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeCrash, fuzz, invariant, regressionInputs, type FuzzTarget } from "./engine.js";
import { allTargets } from "./targets.js";

/** Overrides every target's own bounded count (`bounded`, a second or two of work each). */
const ITERATIONS = process.env["PODCRYPT_FUZZ_ITERATIONS"];
const SEED = Number(process.env["PODCRYPT_FUZZ_SEED"] ?? Math.floor(Math.random() * 0x7fffffff));

describe(`fuzz targets (seed ${SEED})`, () => {
  for (const target of allTargets()) {
    const iterations = ITERATIONS === undefined ? target.bounded : Number(ITERATIONS);
    it(`${target.name}: the committed crash inputs, then ${iterations} mutated inputs`, () => {
      for (const { file, input } of regressionInputs(target.name)) {
        try {
          target.check(input);
        } catch (e) {
          assert.fail(`${target.name}: regression input ${file} crashes again: ${String(e)}`);
        }
      }
      const stats = fuzz(target, { seed: SEED, iterations });
      if (stats.crash !== undefined) assert.fail(describeCrash(stats.crash));
      assert.equal(stats.iterations, iterations);
      assert.ok(stats.outcomes > 1, `${target.name}: the inputs reached only one outcome`);
    });
  }
});

describe("fuzz engine", () => {
  // A planted bug: a "decoder" that breaks on a length byte past the buffer's end.
  const planted: FuzzTarget = {
    name: "planted",
    bounded: 0,
    seeds: () => [Buffer.from([3, 1, 2, 3]), Buffer.from([0])],
    check(b) {
      const n = b[0] ?? 0;
      invariant(n <= b.length - 1, `length byte ${n} past the end`);
      return `len ${n}`;
    },
  };

  it("finds a planted bug, deterministically from its seed, and reproduces it", () => {
    const first = fuzz(planted, { seed: 77, iterations: 10_000, save: false });
    assert.ok(first.crash !== undefined, "the planted bug was found");
    assert.match(String(first.crash.error), /FuzzFailure: length byte \d+ past the end/);
    const again = fuzz(planted, { seed: 77, iterations: 10_000, save: false });
    assert.equal(again.crash?.iteration, first.crash.iteration, "same seed, same run");
    assert.match(describeCrash(first.crash), /--target planted --seed 77 --iterations \d+/);
  });
});
