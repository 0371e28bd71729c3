import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { DockerfileParser, type Copy, type From } from "dockerfile-ast";
import { projectRoot } from "../../src/paths.js";

// No Docker engine runs here, so the image is not built in tests: this checks what can be checked.
const root = projectRoot();
const text = readFileSync(join(root, "Dockerfile"), "utf8");
const dockerfile = DockerfileParser.parse(text);
const instructions = dockerfile.getInstructions();
const ignored = readFileSync(join(root, ".dockerignore"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l !== "" && !l.startsWith("#"));
const KEYWORDS = new Set([
  "FROM",
  "RUN",
  "COPY",
  "WORKDIR",
  "ENV",
  "ENTRYPOINT",
  "CMD",
  "ARG",
  "LABEL",
  "USER",
  "EXPOSE",
]);

describe("Dockerfile", () => {
  it("parses, and every instruction is a known one with arguments", () => {
    assert.ok(instructions.length > 10);
    for (const i of instructions) {
      assert.ok(
        KEYWORDS.has(i.getKeyword()),
        `unexpected ${i.getKeyword()} on line ${i.getRange().start.line + 1}`,
      );
      assert.ok(i.getArguments().length > 0, `${i.getKeyword()} without arguments`);
    }
  });

  it("builds on node:20-bookworm-slim in two stages, the runtime from the same base", () => {
    const froms = instructions.filter((i) => i.getKeyword() === "FROM") as From[];
    assert.deepEqual(
      froms.map((f) => f.getImage()),
      ["node:20-bookworm-slim", "node:20-bookworm-slim"],
    );
    assert.equal(froms[0]!.getBuildStage(), "build");
  });

  it("copies only files that exist and are not excluded by .dockerignore", () => {
    const copies = instructions.filter((i) => i.getKeyword() === "COPY") as Copy[];
    for (const c of copies) {
      if (c.getFromFlag() !== null) {
        assert.equal(c.getFromFlag()!.getValue(), "build");
        continue;
      }
      const args = c.getArguments().map((a) => a.getValue());
      for (const src of args.slice(0, -1)) {
        assert.ok(existsSync(join(root, src)), `COPY ${src}: no such file`);
        assert.ok(
          !ignored.some((p) => src === p || src.startsWith(`${p}/`)),
          `COPY ${src} is in .dockerignore`,
        );
      }
    }
  });

  it("npm ci builds (lifecycle scripts), and the runtime has the data-plane tools and the entrypoint", () => {
    assert.match(text, /RUN npm ci && npm prune --omit=dev/);
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    assert.ok(
      pkg.scripts["prepare"] && pkg.scripts["install"],
      "npm ci must compile TypeScript and the addon",
    );
    const runtimeRun = instructions
      .filter((i) => i.getKeyword() === "RUN")
      .at(-1)!
      .getArgumentsContent()!;
    for (const tool of ["iproute2", "nftables", "wireguard-tools"])
      assert.match(runtimeRun, new RegExp(`\\b${tool}\\b`));
    const entry = instructions.find((i) => i.getKeyword() === "ENTRYPOINT")!;
    assert.equal(entry.getArgumentsContent(), '["/opt/podcrypt/bin/podcrypt"]');
    assert.ok(existsSync(join(root, "bin/podcrypt")));
  });
});
