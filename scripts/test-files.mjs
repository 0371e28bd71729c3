#!/usr/bin/env node
// Lists the compiled test files of one tier, one per line, sorted (files marked `// test-runs-long`
// first): `node scripts/test-files.mjs TIER`.
// Node 20's test runner expands no globs, so npm scripts and scripts/test.sh take their file lists
// from here.
//
// A test's tier is what it needs, declared by a line `// test-tier: TIER` in the first 30 lines of
// its source (src/, test/ or bench/ `*.test.ts`), wherever the file lives:
//   unit   (no marker) needs neither root nor network namespaces: pure code, fakes, the Kubernetes
//          API test server, a real etcd on 127.0.0.1, tshark on a file; runs as any user
//   netns  root: network namespaces, TUN, veth, nftables, the local cluster
//   vm     the kernel data planes, inside the qemu VM (test/vm/run.sh)
// A test without a marker that imports the namespace tooling of test/ (NetnsLab, the local
// cluster's or the fault harness's CLI runners) needs root all the same: it is `netns`, so a
// new cluster test that forgot its marker still runs alone, as root.
// The list is taken from the sources, so a deleted test's stale file in dist/ does not run.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import process from "node:process";

const TIERS = ["unit", "netns", "vm"];
const ROOTS = ["src", "test", "bench"];
const MARKER = /^\s*\/\/\s*test-tier:\s*(\S+)/;
const LONG_MARKER = /^\s*\/\/\s*test-runs-long\b/;
const HEADER_LINES = 30;
const NAMESPACE_TOOLING =
  /from "(?:\.\.?\/)+(?:test\/)?(?:support\/netns|localcluster\/run-cli|faults\/harness|run-cli|harness|netns)\.js"/;

const repo = join(import.meta.dirname, "..");
const wanted = process.argv[2];
if (!TIERS.includes(wanted ?? "")) {
  process.stderr.write(`usage: scripts/test-files.mjs ${TIERS.join("|")}\n`);
  process.exit(2);
}

/** Every `*.test.ts` under `dir`, depth first. */
function* testSources(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* testSources(path);
    else if (entry.name.endsWith(".test.ts")) yield path;
  }
}

/**
 * The tier `source` declares; without a marker `netns` when it imports the namespace tooling, else
 * `unit`. An unknown tier is an error naming the file.
 */
function tierOf(source) {
  const text = readFileSync(source, "utf8");
  const header = text.split("\n", HEADER_LINES);
  for (const line of header) {
    const m = MARKER.exec(line);
    if (m === null) continue;
    if (!TIERS.includes(m[1])) {
      process.stderr.write(
        `${relative(repo, source)}: unknown test tier "${m[1]}" (one of ${TIERS.join(", ")})\n`,
      );
      process.exit(2);
    }
    return m[1];
  }
  return NAMESPACE_TOOLING.test(text) ? "netns" : "unit";
}

/**
 * Whether `source` says `// test-runs-long` in its header: a file that takes the longest by design
 * (an etcd outage and the waits around it, an exhaustive search). Those are listed first, so that a tier running
 * several files at a time starts them at once instead of last (longest first keeps the whole run
 * close to its longest file).
 */
function runsLong(source) {
  return readFileSync(source, "utf8")
    .split("\n", HEADER_LINES)
    .some((line) => LONG_MARKER.test(line));
}

const long = [];
const rest = [];
for (const root of ROOTS) {
  for (const source of testSources(join(repo, root))) {
    if (tierOf(source) !== wanted) continue;
    const compiled = join("dist", relative(repo, source)).replace(/\.ts$/, ".js");
    (runsLong(source) ? long : rest).push(compiled);
  }
}
for (const f of [...long.sort(), ...rest.sort()]) process.stdout.write(`${f}\n`);
