import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { isPodcryptError } from "../errors/index.js";
import { KeyStore, type KeyFileWarning } from "./keystore.js";
import { encodeKey, publicFromPrivate } from "./x25519.js";

const root = await fs.mkdtemp(path.join(tmpdir(), "podcrypt-keystore-"));
after(() => fs.rm(root, { recursive: true, force: true }));
let n = 0;
const rnd = (len: number): Buffer => Buffer.alloc(len, ++n);

describe("KeyStore", () => {
  it("stores one 0600 file per epoch in a 0700 directory and finds them after a restart", async () => {
    const dir = path.join(root, "a", "keys");
    const ks = new KeyStore(dir, rnd);
    const one = await ks.ensure(1);
    const two = await ks.ensure(2);
    assert.notDeepEqual(one.privateKey, two.privateKey);
    assert.deepEqual(one.publicKey, publicFromPrivate(one.privateKey));
    assert.deepEqual((await fs.readdir(dir)).sort(), ["epoch-1.key", "epoch-2.key"]);
    assert.equal((await fs.stat(path.join(dir, "epoch-1.key"))).mode & 0o777, 0o600);
    assert.equal((await fs.stat(dir)).mode & 0o777, 0o700);
    assert.equal(
      (await fs.readFile(path.join(dir, "epoch-2.key"), "utf8")).trim(),
      encodeKey(two.privateKey),
    );

    const restarted = new KeyStore(dir, () => assert.fail("must not generate on load"));
    assert.deepEqual(await restarted.load(), [1, 2]);
    assert.deepEqual(restarted.get(1), one);
    assert.deepEqual(await restarted.ensure(2), two, "ensure keeps an existing key");
  });

  it("ensure is idempotent under concurrency and never replaces a key on disk", async () => {
    const dir = path.join(root, "b");
    const ks = new KeyStore(dir, rnd);
    const [x, y] = await Promise.all([ks.ensure(5), ks.ensure(5)]);
    assert.deepEqual(x, y);
    const other = new KeyStore(dir, rnd);
    assert.deepEqual(await other.ensure(5), x, "a second store reads the file, does not overwrite it");
  });

  it("retire unlinks; retireBefore removes older epochs; absent is fine", async () => {
    const dir = path.join(root, "c");
    const ks = new KeyStore(dir, rnd);
    for (const e of [3, 4, 5, 6]) await ks.ensure(e);
    await ks.retire(3);
    await ks.retire(3);
    assert.deepEqual(await ks.retireBefore(6), [4, 5]);
    assert.deepEqual(ks.epochs(), [6]);
    assert.deepEqual(await fs.readdir(dir), ["epoch-6.key"]);
    const fresh = new KeyStore(dir, rnd);
    assert.deepEqual(await fresh.load(), [6]);
  });

  it("load removes crash leftovers and ignores foreign files", async () => {
    const dir = path.join(root, "d");
    const ks = new KeyStore(dir, rnd);
    await ks.ensure(1);
    await fs.writeFile(path.join(dir, ".epoch-2.key.abc.tmp"), "half");
    await fs.writeFile(path.join(dir, "README"), "not a key");
    assert.deepEqual(await new KeyStore(dir).load(), [1]);
    assert.deepEqual((await fs.readdir(dir)).sort(), ["README", "epoch-1.key"]);
  });

  // An unusable key file must neither stop the node (the agent used to exit and stay down) nor be
  // used: it is moved aside, 0600, with a warning that names the file and the problem, never the
  // content, and a fresh key takes its place.
  for (const [what, spoil] of [
    ["corrupt (not base64 of 32 bytes)", (f: string) => fs.writeFile(f, "garbage that is not a key\n")],
    ["truncated", (f: string) => fs.truncate(f, 20)],
    ["empty", (f: string) => fs.writeFile(f, "")],
    ["readable by group (may have leaked)", (f: string) => fs.chmod(f, 0o640)],
  ] as const) {
    for (const via of ["load", "ensure"] as const) {
      it(`a key file that is ${what} is moved aside and replaced (${via})`, async () => {
        const dir = path.join(root, `spoilt-${via}-${what.replace(/\W+/g, "-")}`);
        const old = await new KeyStore(dir, rnd).ensure(3);
        const file = path.join(dir, "epoch-3.key");
        await spoil(file);
        const content = await fs.readFile(file, "utf8");
        const warnings: KeyFileWarning[] = [];
        const ks = new KeyStore(dir, rnd, (w) => warnings.push(w));
        if (via === "load") assert.deepEqual(await ks.load(), [], "the unusable key is not loaded");
        const fresh = await ks.ensure(3);
        assert.notDeepEqual(fresh.privateKey, old.privateKey, "a fresh key, not the spoilt one");
        assert.equal(warnings.length, 1);
        const w = warnings[0]!;
        assert.equal(w.epoch, 3);
        assert.equal(w.file, file);
        assert.match(w.movedTo, /epoch-3\.key\.corrupt-/);
        assert.ok(w.reason.length > 0);
        if (content.trim().length > 0) assert.ok(!JSON.stringify(w).includes(content.trim()), "no content");
        assert.equal(await fs.readFile(w.movedTo, "utf8"), content, "kept for a person to look at");
        assert.equal((await fs.stat(w.movedTo)).mode & 0o777, 0o600);
        assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
        assert.deepEqual(await new KeyStore(dir).load(), [3], "the fresh key is found after a restart");
      });
    }
  }

  it("a full disk is an ENOSPC error naming the file, and the earlier key file stays intact", async (t) => {
    const dir = path.join(root, "full");
    await fs.mkdir(dir, { mode: 0o700 });
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=16k,mode=0700", "podcrypt-keystore-test", dir]);
    } catch {
      t.skip("mounting a tmpfs needs root");
      return;
    }
    try {
      const ks = new KeyStore(dir, rnd);
      const one = await ks.ensure(1);
      const before = await fs.readFile(path.join(dir, "epoch-1.key"), "utf8");
      // Fill the file system to its last byte.
      const fill = await fs.open(path.join(dir, "fill"), "w");
      try {
        for (;;) await fill.write(Buffer.alloc(1024));
      } catch (e) {
        assert.equal((e as { code?: string }).code, "ENOSPC");
      } finally {
        await fill.close();
      }
      await assert.rejects(ks.ensure(2), (e: unknown) => {
        assert.ok(isPodcryptError(e, "ENOSPC"), String(e));
        assert.match((e as Error).message, /epoch-2\.key: the disk is full/);
        return true;
      });
      assert.equal(await fs.readFile(path.join(dir, "epoch-1.key"), "utf8"), before);
      assert.deepEqual((await fs.readdir(dir)).sort(), ["epoch-1.key", "fill"], "no temp file left");
      assert.deepEqual(new KeyStore(dir).get(1), undefined);
      const again = new KeyStore(dir);
      await again.load();
      assert.deepEqual(again.get(1), one);
    } finally {
      execFileSync("umount", [dir]);
    }
  });

  it("brings a state directory that already existed with a wider mode to 0700", async () => {
    const dir = path.join(root, "wide");
    await fs.mkdir(dir, { mode: 0o755 });
    await fs.chmod(dir, 0o755);
    await new KeyStore(dir, rnd).ensure(1);
    assert.equal((await fs.stat(dir)).mode & 0o777, 0o700);
    await fs.chmod(dir, 0o777);
    await new KeyStore(dir, rnd).load();
    assert.equal((await fs.stat(dir)).mode & 0o777, 0o700);
  });
});
