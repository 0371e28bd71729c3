#!/usr/bin/env node
// The import rules of src/ (docs/architecture.md, "What may import what"), run by `npm run lint`:
//   1. no import cycle between the folders of src/ (src/agent, src/controller, src/dataplane/xfrm,
//      ...: every folder holding a .ts file, a file of src/ itself counting as the folder "src");
//      a subfolder is part of its parent (src/cli/manifests may use src/cli's config types, and
//      src/datastore/etcd src/datastore's), so an import of an enclosing folder is no edge;
//      type-only imports count, test files (*.test.ts) do not;
//   2. no kernel data-plane backend imports a userspace one (src/dataplane/wireguard-kernel and
//      src/dataplane/xfrm never import src/dataplane/*-userspace or src/dataplane/userspace).
//   3. product code never imports test/ or bench/ (the fakes of test/support stay out of the
//      product bundle).
// Prints every violation and exits 1, or prints nothing and exits 0.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import process from "node:process";

const repo = join(import.meta.dirname, "..");
const src = join(repo, "src");
const KERNEL = ["dataplane/wireguard-kernel", "dataplane/xfrm"];
const USERSPACE = /^dataplane\/([^/]*-userspace|userspace)(\/|$)/;
// Static imports and re-exports (`... from "x"`, `import "x"`) and dynamic `import("x")`.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g;

/** Every product .ts file under `dir` (tests excluded). */
function* sources(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) yield path;
  }
}

/** The folder of a file, relative to src/ ("src" for src/ itself). */
const folderOf = (file) => relative(src, dirname(file)) || "src";

const edges = new Map(); // folder -> Map(imported folder -> first file:line importing it)
const problems = [];
for (const file of sources(src)) {
  const from = folderOf(file);
  const lines = readFileSync(file, "utf8").split("\n");
  lines.forEach((line, i) => {
    for (const m of line.matchAll(SPECIFIER)) {
      if (!m[1].startsWith(".")) continue;
      const target = resolve(dirname(file), m[1]);
      const where = `${relative(repo, file)}:${i + 1}`;
      for (const outside of ["test", "bench"])
        if (target.startsWith(join(repo, outside) + "/"))
          problems.push(`${where}: product code imports ${relative(repo, target)}`);
      if (!target.startsWith(src + "/")) continue;
      const to = folderOf(target);
      if (KERNEL.some((k) => from === k || from.startsWith(`${k}/`)) && USERSPACE.test(to)) {
        problems.push(`${where}: kernel backend src/${from} imports userspace src/${to}`);
      }
      if (to === from || to === "src" || from.startsWith(`${to}/`)) continue;
      if (!edges.has(from)) edges.set(from, new Map());
      if (!edges.get(from).has(to)) edges.get(from).set(to, where);
    }
  });
}

// Tarjan's strongly connected components: every component of more than one folder is a cycle.
let index = 0;
const stack = [];
const state = new Map(); // folder -> { index, low, onStack }
function connect(v) {
  const s = { index, low: index, onStack: true };
  index++;
  state.set(v, s);
  stack.push(v);
  for (const w of edges.get(v)?.keys() ?? []) {
    if (!state.has(w)) {
      connect(w);
      s.low = Math.min(s.low, state.get(w).low);
    } else if (state.get(w).onStack) {
      s.low = Math.min(s.low, state.get(w).index);
    }
  }
  if (s.low !== s.index) return;
  const component = [];
  let w;
  do {
    w = stack.pop();
    state.get(w).onStack = false;
    component.push(w);
  } while (w !== v);
  if (component.length < 2) return;
  const members = new Set(component);
  const why = [];
  for (const a of component.sort()) {
    for (const [b, where] of edges.get(a) ?? [])
      if (members.has(b)) why.push(`  src/${a} -> src/${b} (${where})`);
  }
  problems.push(`import cycle between ${component.map((f) => `src/${f}`).join(", ")}:\n${why.join("\n")}`);
}
for (const v of [...edges.keys()].sort()) if (!state.has(v)) connect(v);

for (const p of problems) process.stderr.write(`${p}\n`);
process.exit(problems.length === 0 ? 0 : 1);
