import assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { isPodcryptError } from "../errors/index.js";
import { KeyStore } from "./keystore.js";
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

  it("load removes crash leftovers, ignores foreign files, refuses group-readable keys", async () => {
    const dir = path.join(root, "d");
    const ks = new KeyStore(dir, rnd);
    await ks.ensure(1);
    await fs.writeFile(path.join(dir, ".epoch-2.key.abc.tmp"), "half");
    await fs.writeFile(path.join(dir, "README"), "not a key");
    assert.deepEqual(await new KeyStore(dir).load(), [1]);
    assert.deepEqual((await fs.readdir(dir)).sort(), ["README", "epoch-1.key"]);
    await fs.chmod(path.join(dir, "epoch-1.key"), 0o640);
    await assert.rejects(new KeyStore(dir).load(), (e: unknown) => isPodcryptError(e, "EKEYPERM"));
    // ensure() reading an existing file applies the same check as load()
    await assert.rejects(new KeyStore(dir).ensure(1), (e: unknown) => isPodcryptError(e, "EKEYPERM"));
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
