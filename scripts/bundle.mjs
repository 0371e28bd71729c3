// Bundles the compiled CLI (dist/src/cli/main.js) into dist/bundle/: one entry and a chunk per
// command file (code splitting keeps the lazy command loading of src/cli/main.ts), so a process
// reads a few files instead of hundreds. Under emulation (test/vm) every module file costs
// milliseconds of resolution and reads over 9p: `podcrypt agent --help` went from 13 s to 4 s.
// bin/podcrypt runs the bundle when it is newer than the last TypeScript build (dist/.tsbuildinfo),
// else dist/src/cli/main.js. Run after `tsc -p tsconfig.build.json` (`npm run build` does).
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { readdir, rm, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "dist", "bundle");

/**
 * etcd3 loads its .proto files from `${__dirname}/../proto` at import; in an ES module bundle
 * there is no __dirname, so the path is resolved from the package instead.
 */
const etcdProtoPath = {
  name: "etcd3-proto-path",
  setup(b) {
    b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      const from = "`${__dirname}/../proto/rpc.proto`";
      if (!source.includes(from)) throw new Error(`${args.path}: the rpc.proto path changed`);
      return { contents: source.replace(from, 'require.resolve("etcd3/proto/rpc.proto")'), loader: "js" };
    });
  },
};

const result = await build({
  entryPoints: { main: join(root, "dist", "src", "cli", "main.js") },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  chunkNames: "chunks/[name]-[hash]",
  // The Kubernetes client is large and used only with the kubernetes datastore; it stays a
  // package import (loaded on demand by src/cli/datastore.ts).
  external: ["@kubernetes/client-node"],
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: {
    js: "import { createRequire as __podcryptRequire } from 'node:module'; const require = __podcryptRequire(import.meta.url);",
  },
  plugins: [etcdProtoPath],
  metafile: true,
  logLevel: "warning",
});

// A daemon started before this build loads its command's chunks lazily, later: the chunks of
// earlier builds stay for a day (their names carry a content hash, so nothing is overwritten).
const current = new Set(Object.keys(result.metafile.outputs).map((f) => resolve(f)));
const chunks = join(outdir, "chunks");
const dayAgo = Date.now() - 24 * 3600 * 1000;
for (const name of await readdir(chunks)) {
  const file = join(chunks, name);
  if (!current.has(file) && (await stat(file)).mtimeMs < dayAgo) await rm(file);
}
