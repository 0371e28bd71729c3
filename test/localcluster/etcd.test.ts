// test-tier: netns (root: network namespaces)
/**
 * The local cluster on a real etcd (Debian's etcd-server) instead of files, with TLS (client
 * certificates) and authentication on, set up with `podcrypt datastore init-etcd-auth`: the
 * controller logs in as podcrypt-controller, each agent as its own node's user, through the relay
 * into their node namespaces (TLS end to end: the relay forwards bytes). Verify, and a rotation
 * under traffic that loses nothing.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EtcdTestServer } from "../support/etcd-server.js";
import { clusterBusy, clusterCli, type VerifyJson } from "./run-cli.js";

const { podcrypt, remove } = clusterCli("etcd");
const skip = !existsSync("/usr/bin/etcd")
  ? "no /usr/bin/etcd (apt-get install etcd-server)"
  : await clusterBusy();

describe("local cluster on etcd", { skip }, () => {
  let etcd: EtcdTestServer | undefined;
  let dir: string | undefined;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "podcrypt-cluster-etcd-"));
    etcd = await EtcdTestServer.start({ tls: true });
    const rootPw = join(dir, "root.password");
    writeFileSync(rootPw, "cluster-root-password\n", { mode: 0o600 });
    const users = join(dir, "users");
    const root = etcd.url({ user: "root", passwordFile: rootPw });
    const init = await podcrypt([
      "datastore",
      "init-etcd-auth",
      "--datastore",
      root,
      "--node",
      "node-1,node-2,node-3",
      "--out",
      users,
    ]);
    assert.equal(init.code, 0, init.stderr);
    const as = (user: string): string => etcd!.url({ user, passwordFile: join(users, `${user}.password`) });
    const config = join(dir, "cluster.yaml");
    writeFileSync(
      config,
      JSON.stringify({
        datastore: root,
        datastores: { controller: as("podcrypt-controller"), agent: as("podcrypt-node-{node}") },
      }),
    );
    const up = await podcrypt(["cluster", "up", "--config", config, "--timeout", "150"]);
    assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
  });
  after(async () => {
    await podcrypt(["cluster", "down"]);
    await etcd?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    remove();
  });

  it("is encrypted, and its state is in etcd", async () => {
    const v = JSON.parse((await podcrypt(["verify", "--json"])).stdout) as VerifyJson;
    assert.equal(v.ok, true);
    const info = (await podcrypt(["cluster", "info"])).stdout;
    assert.match(info, new RegExp(`datastore etcds://127\\.0\\.0\\.1:${etcd!.clientPort}`));
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
