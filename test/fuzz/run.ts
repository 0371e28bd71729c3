/**
 * `npm run fuzz -- [--target NAME|all] [--seconds N] [--iterations N] [--seed N]`: runs fuzz
 * targets for longer than `npm test` does (default: every target, 60 s each, a fresh seed).
 * A crash's input is saved under test/fuzz/regressions/TARGET/ (commit it with the fix; every
 * run replays it) and the command that reproduces the run is printed. Exit status 1 on a crash.
 */
import { parseArgs } from "node:util";
import { describeCrash, fuzz } from "./engine.js";
import { allTargets } from "./targets.js";

const { values } = parseArgs({
  options: {
    target: { type: "string", default: "all" },
    seconds: { type: "string" },
    iterations: { type: "string" },
    seed: { type: "string" },
  },
});
const targets = allTargets().filter((t) => values.target === "all" || t.name === values.target);
if (targets.length === 0) {
  console.error(
    `unknown target ${values.target}; targets: ${allTargets()
      .map((t) => t.name)
      .join(", ")}`,
  );
  process.exit(2);
}
const seed = values.seed === undefined ? Math.floor(Math.random() * 0x7fffffff) : Number(values.seed);
const iterations = values.iterations === undefined ? undefined : Number(values.iterations);
const seconds =
  values.seconds === undefined ? (iterations === undefined ? 60 : undefined) : Number(values.seconds);
let crashed = false;
for (const t of targets) {
  const started = Date.now();
  const s = fuzz(t, {
    seed,
    ...(iterations === undefined ? {} : { iterations }),
    ...(seconds === undefined ? {} : { seconds }),
  });
  const secs = (Date.now() - started) / 1000;
  console.log(
    `${t.name}: ${s.iterations} inputs in ${secs.toFixed(1)} s (${Math.round(s.iterations / secs)}/s), seed ${seed}, ` +
      `${s.outcomes} outcomes, corpus ${s.corpus}${s.crash === undefined ? ", no crash" : ""}`,
  );
  if (s.crash !== undefined) {
    crashed = true;
    console.error(describeCrash(s.crash));
  }
}
process.exit(crashed ? 1 : 0);
