import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFile, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, extname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { isRevisionGoneError } from "../../src/datastore/index.js";
import { LocalDatastore } from "../../src/datastore/local/index.js";
import { runConformance, sampleNode, waitFor } from "./conformance.js";

const here = dirname(fileURLToPath(import.meta.url));
const ext = extname(fileURLToPath(import.meta.url));

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "podcrypt-local-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

runConformance("local", async () => {
  const store = await LocalDatastore.open({ dir });
  return { store, close: () => store.close() };
});

describe("local specifics", () => {
  it("sees a change made by another process", { timeout: 30_000 }, async () => {
    const store = await LocalDatastore.open({ dir });
    try {
      const nodes = store.collection("nodes");
      const seen: string[] = [];
      const w = await nodes.watch((await nodes.list()).revision, {
        event: (e) => void seen.push(`${e.type} ${e.key}`),
        gone: () => assert.fail("unexpected gone"),
      });
      const child = spawn(
        process.execPath,
        // The writer beside this file: .ts when run from source (through tsx), .js from dist/.
        [...(ext === ".ts" ? ["--import", "tsx"] : []), join(here, `local-writer${ext}`), dir, "from-child"],
        {
          stdio: "inherit",
        },
      );
      const code = await new Promise<number | null>((r) => child.once("exit", r));
      assert.equal(code, 0);
      await waitFor(() => seen.includes("ADDED from-child"), 10_000, "the child's write");
      await w.close();
      await nodes.delete("from-child");
    } finally {
      await store.close();
    }
  });

  it("a watch from a compacted revision gets gone; relisting recovers", async () => {
    const small = await mkdtemp(join(tmpdir(), "podcrypt-local-small-"));
    const store = await LocalDatastore.open({ dir: small, maxJournalEntries: 8 });
    try {
      const nodes = store.collection("nodes");
      const start = (await nodes.list()).revision;
      for (let i = 0; i < 12; i++) await nodes.create(sampleNode(`n${i}`));
      let gone: unknown;
      await nodes.watch(start, { event: () => {}, gone: (e) => void (gone = e) });
      await waitFor(() => gone !== undefined, 5_000, "gone");
      assert.ok(isRevisionGoneError(gone));
      const relist = await nodes.list();
      assert.equal(relist.items.length, 12);
      const seen: string[] = [];
      const w = await nodes.watch(relist.revision, { event: (e) => void seen.push(e.key), gone: () => {} });
      await nodes.delete("n0");
      await waitFor(() => seen.length === 1, 5_000, "event after relist");
      await w.close();
    } finally {
      await store.close();
      await rm(small, { recursive: true, force: true });
    }
  });

  it("repairs a writer that died after its commit point, and keeps files 0600", async () => {
    const d = await mkdtemp(join(tmpdir(), "podcrypt-local-crash-"));
    try {
      const a = await LocalDatastore.open({ dir: d });
      await a.collection("nodes").create(sampleNode("before"));
      await a.close();
      // Simulate a crash: the journal line is written, the object file and state are not.
      const entry = {
        rev: 2,
        kind: "nodes",
        key: "after",
        type: "PUT",
        created: true,
        value: sampleNode("after"),
      };
      await appendFile(join(d, "journal.jsonl"), JSON.stringify(entry) + "\n");
      const b = await LocalDatastore.open({ dir: d });
      const list = await b.collection("nodes").list();
      assert.deepEqual(
        list.items.map((i) => i.key),
        ["after", "before"],
      );
      assert.equal(list.revision, "2");
      const mode = (await stat(join(d, "objects", "nodes", "after.json"))).mode & 0o777;
      assert.equal(mode, 0o600);
      await b.close();
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
