/**
 * The local cluster on a real etcd (Debian's etcd-server) instead of files: `cluster up
 * --datastore etcd://127.0.0.1:PORT` (the agents reach it through the relay into their node
 * namespaces), verify, and a rotation under traffic that loses nothing.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { EtcdTestServer } from "../datastore/etcd-server.js";
import { clusterBusy, clusterCli, type VerifyJson } from "./run-cli.js";

const { podcrypt, remove } = clusterCli("etcd");
const skip = !existsSync("/usr/bin/etcd")
  ? "no /usr/bin/etcd (apt-get install etcd-server)"
  : await clusterBusy();

describe("local cluster on etcd", { skip }, () => {
  let etcd: EtcdTestServer | undefined;
  before(async () => {
    etcd = await EtcdTestServer.start();
    const up = await podcrypt([
      "cluster",
      "up",
      "--datastore",
      `etcd://127.0.0.1:${etcd.clientPort}`,
      "--timeout",
      "150",
    ]);
    assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
  });
  after(async () => {
    await podcrypt(["cluster", "down"]);
    await etcd?.stop();
    remove();
  });

  it("is encrypted, and its state is in etcd", async () => {
    const v = JSON.parse((await podcrypt(["verify", "--json"])).stdout) as VerifyJson;
    assert.equal(v.ok, true);
    const info = (await podcrypt(["cluster", "info"])).stdout;
    assert.match(info, new RegExp(`datastore etcd://127\\.0\\.0\\.1:${etcd!.clientPort}`));
  });

  it("rotates under traffic without losing a packet", async () => {
    const traffic = podcrypt(["verify", "--json", "--seconds", "25", "--count", "2500"], 300_000);
    await new Promise((r) => setTimeout(r, 3000));
    const rot = await podcrypt(["rotate", "--wait", "--timeout", "120"]);
    assert.equal(rot.code, 0, rot.stderr);
    const v = JSON.parse((await traffic).stdout) as VerifyJson;
    for (const p of v.pairs) {
      assert.equal(p.echoed, p.sent, `${p.from}->${p.to} lost ${p.sent - p.echoed}`);
      assert.equal(p.plaintextSeen, false);
    }
  });
});
