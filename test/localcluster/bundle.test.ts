// test-tier: netns (root: network namespaces)
/**
 * `podcrypt debug bundle` on a 3-node local cluster, in each mode: the archive holds every item a
 * bug report needs, and none of the keys the cluster holds — the nodes' private keys (their key
 * files), WireGuard's preshared keys and the derived ESP keys and salts (as the daemons hold them:
 * their UAPI sockets, and the `debug esp-sa` export) — in hex or base64, anywhere in it.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { collectClusterSas } from "../../src/cli/debug-esp.js";
import { UAPI_DIR } from "../../src/dataplane/wireguard-userspace/uapi-client.js";
import { clusterBusy, clusterCli } from "./run-cli.js";

const execFileP = promisify(execFile);
const busy = await clusterBusy();
const NODES = ["node-1", "node-2", "node-3"];

/** Every file under `dir`, recursively. */
function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

/** A WireGuard UAPI `get`, raw: the private and preshared keys of a userspace device (hex). */
function uapiKeys(sock: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const c = createConnection(sock);
    let text = "";
    c.on("data", (b) => (text += b.toString("utf8")));
    c.on("error", reject);
    c.on("end", () =>
      resolve(
        [...text.matchAll(/^(?:private_key|preshared_key)=([0-9a-f]{64})$/gm)]
          .map((m) => m[1]!)
          .filter((k) => !/^0+$/.test(k)),
      ),
    );
    c.end("get=1\n\n");
  });
}

/** Every secret of the running cluster, as bytes. */
async function clusterSecrets(home: string, mode: "wireguard" | "ipsec"): Promise<Buffer[]> {
  const secrets: Buffer[] = [];
  const keyFiles = walk(join(home, "nodes")).filter((f) => f.endsWith(".key"));
  assert.ok(keyFiles.length >= NODES.length, `only ${keyFiles.length} key files`);
  for (const f of keyFiles) secrets.push(Buffer.from(readFileSync(f, "utf8").trim(), "base64"));
  if (mode === "wireguard") {
    for (const s of readdirSync(UAPI_DIR).filter((f) => f.endsWith(".sock")))
      for (const k of await uapiKeys(join(UAPI_DIR, s)).catch(() => [])) secrets.push(Buffer.from(k, "hex"));
  } else {
    const sas = await collectClusterSas();
    assert.ok(sas.length >= 6, `only ${sas.length} ESP SAs`);
    // RFC 4106's keying material is key and salt: the key alone, and both as the SA holds them.
    for (const sa of sas) {
      const key = Buffer.from(sa.key, "hex");
      secrets.push(key, Buffer.concat([key, Buffer.from(sa.salt, "hex")]));
    }
  }
  for (const s of secrets) assert.ok(s.length >= 16, "a secret too short to scan for");
  return secrets;
}

/** The forms a key could be written in. */
function forms(k: Buffer): string[] {
  const hex = k.toString("hex");
  const b64 = k.toString("base64");
  // base64 of the key at any alignment inside a longer value: the middle part is stable.
  return [hex, hex.toUpperCase(), b64.slice(0, -4), k.toString("base64url").slice(0, -4)];
}

for (const mode of ["wireguard", "ipsec"] as const) {
  describe(`debug bundle (3 nodes, ${mode})`, { skip: busy }, () => {
    const { home, podcrypt, remove } = clusterCli(`bundle-${mode}`);
    const work = mkdtempSync(join(tmpdir(), "podcrypt-bundle-test-"));
    let root = "";
    before(async () => {
      const up = await podcrypt(["cluster", "up", "--mode", mode, "--timeout", "150"]);
      assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
      // A rotation, so the timeline has a run and the nodes hold two epochs' keys.
      const rot = await podcrypt(["rotate", "--wait"]);
      assert.equal(rot.code, 0, rot.stderr);
      const out = join(work, "bundle.tar.gz");
      const r = await podcrypt(["debug", "bundle", "-o", out]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(statSync(out).mode & 0o777, 0o600);
      await execFileP("tar", ["-xzf", out, "-C", work]);
      const dirs = readdirSync(work).filter((d) => d.startsWith("podcrypt-bundle-"));
      assert.equal(dirs.length, 1);
      root = join(work, dirs[0]!);
    });
    after(async () => {
      await podcrypt(["cluster", "down"]);
      remove();
      rmSync(work, { recursive: true, force: true });
    });
    const read = (rel: string): string => readFileSync(join(root, rel), "utf8");

    it("holds every item", () => {
      assert.match(read("version.txt"), /^podcrypt \d+\.\d+\.\d+\nnode v20/);
      assert.equal(
        (JSON.parse(read("config/cluster.json")) as { plan: { nodes: unknown[] } }).plan.nodes.length,
        3,
      );
      const c = JSON.parse(read("datastore/clusterencryption.json")) as { mode: string; epoch: number };
      assert.equal(c.mode, mode);
      assert.ok(c.epoch >= 1);
      const nodes = JSON.parse(read("datastore/nodes.json")) as Array<{ name: string; publicKeys: object }>;
      assert.deepEqual(nodes.map((n) => n.name).sort(), NODES);
      assert.ok(Array.isArray(JSON.parse(read("datastore/encryptionpolicies.json"))));
      const status = JSON.parse(read("status.json")) as { nodes: Array<{ name: string; peers: unknown[] }> };
      assert.deepEqual(status.nodes.map((n) => n.name).sort(), NODES);
      for (const n of NODES) assert.match(read(`logs/agent-${n}.log`), /"component":"agent"/);
      assert.match(read("logs/controller.log"), /"component":"controller"/);
      for (const n of NODES) {
        const d = read(`nodes/${n}/dataplane.txt`);
        if (mode === "wireguard") {
          assert.match(d, /^\$ wg show /m);
          assert.match(d, /private key: \(hidden\)/);
          assert.equal((d.match(/^peer: /gm) ?? []).length >= 2, true, d);
        } else {
          assert.match(d, /^\$ \(ESP daemon of \S+: status\)/m);
          assert.match(d, /"spi": "0x[0-9a-f]{8}"/);
        }
        assert.match(d, /^\$ ip -s xfrm state$/m);
        assert.match(d, /^\$ ip -d link show\n.* mtu \d+/m);
        assert.match(d, /^\$ ip -4 route show table all\n/m);
        assert.match(d, /^\$ ip -4 rule show\n0:\s+from all lookup local/m);
        assert.match(d, /^\$ nft list table inet podcrypt\ntable inet podcrypt \{/m);
        assert.match(d, /\/proc\/sys\/net\/ipv4\/conf\/all\/rp_filter:\d/);
      }
      const timeline = read("timeline.txt");
      for (const ph of ["prepare", "switch", "retire"])
        assert.match(timeline, new RegExp(`cluster: ${ph} of epoch \\d+ began`));
      for (const n of NODES) assert.match(timeline, new RegExp(`${n}: acknowledged retire of epoch`));
      assert.match(read("MANIFEST.txt"), /everything was collected/);
    });

    it("holds none of the cluster's private, preshared or derived keys", async (t) => {
      const secrets = await clusterSecrets(home, mode);
      const files = walk(root);
      const texts = files.map((f) => ({ f, text: readFileSync(f, "latin1") }));
      let checked = 0;
      for (const s of secrets)
        for (const form of forms(s)) {
          checked++;
          for (const { f, text } of texts)
            assert.ok(!text.includes(form), `a key (${form.slice(0, 6)}...) in ${f}`);
        }
      t.diagnostic(
        `${secrets.length} secrets in ${checked} forms scanned in ${files.length} files: none found`,
      );
    });

    it("--node keeps to one node", async () => {
      const out = join(work, "one.tar.gz");
      const r = await podcrypt(["debug", "bundle", "--node", "node-2", "-o", out]);
      assert.equal(r.code, 0, r.stderr);
      const list = (await execFileP("tar", ["-tzf", out])).stdout;
      assert.match(list, /\/nodes\/node-2\/dataplane\.txt$/m);
      assert.match(list, /\/logs\/agent-node-2\.log$/m);
      assert.doesNotMatch(list, /node-1\/dataplane|agent-node-1|agent-node-3/);
      assert.ok(existsSync(out));
    });
  });
}
