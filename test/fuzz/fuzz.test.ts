/**
 * The fuzz targets (test/fuzz/targets.ts), bounded: every committed crash input first, then a
 * fixed number of mutated inputs per target from a seed (PODCRYPT_FUZZ_SEED, else a fresh one,
 * printed on failure with the command that reproduces the run). Longer runs: `npm run fuzz`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { describeCrash, fuzz, regressionInputs } from "./engine.js";
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
