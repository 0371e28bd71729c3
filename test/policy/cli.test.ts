import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse } from "yaml";
import { projectRoot } from "../../src/paths.js";

const root = projectRoot();
const tmp = mkdtempSync(join(tmpdir(), "podcrypt-policy-cli-"));
const store = `local:${join(tmp, "store")}`;

/** Runs the CLI from source (tsx), as a person would, and returns its exit code and output. */
function podcrypt(...args: string[]) {
  const code = `const { main } = await import(${JSON.stringify(join(root, "src/cli/main.ts"))}); process.exitCode = await main(${JSON.stringify(args)});`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("podcrypt policy", () => {
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const seed = join(root, "test/policy/fixtures/starlingx-ipsecpolicy.yaml");

  it("apply --dry-run prints the normalized seed policy", () => {
    const r = podcrypt("policy", "apply", "-f", seed, "--dry-run");
    assert.equal(r.status, 0, r.stderr);
    const doc = parse(r.stdout) as { kind: string; spec: { policies: { serviceports: string }[] } };
    assert.equal(doc.kind, "IPsecPolicy");
    assert.deepEqual(
      doc.spec.policies.map((p) => p.serviceports),
      ["udp/53,tcp/53,tcp/9153", "tcp/9402"],
    );
  });

  it("an invalid file exits non-zero with every error naming its field, and stores nothing", () => {
    const bad = join(tmp, "bad.yaml");
    writeFileSync(
      bad,
      "apiVersion: starlingx.io/v1\nkind: IPsecPolicy\nmetadata: {name: bad}\nspec:\n  policies:\n  - {name: a, servicename: dns, servicens: kube-system, serviceports: tcp/0}\n  - {name: b, servicename: dns, serviceports: udp/53}\n",
    );
    const r = podcrypt("policy", "apply", "-f", bad, "--datastore", store);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /spec\.policies\[0\]\.serviceports: port 0 is out of range 1-65535/);
    assert.match(r.stderr, /spec\.policies\[1\]\.servicens: is missing/);
    const l = podcrypt("policy", "list", "--json", "--datastore", store);
    assert.equal(l.status, 0, l.stderr);
    assert.deepEqual(JSON.parse(l.stdout), { policies: [], invalid: [] });
  });

  it("apply, list --json, delete against the local store", () => {
    const a = podcrypt("policy", "apply", "-f", seed, "--datastore", store);
    assert.equal(a.status, 0, a.stderr);
    assert.equal(a.stdout, "policy ipsecpolicy-kube-dns-sample created\n");
    const l = podcrypt("policy", "list", "--json", "--datastore", store);
    const listed = JSON.parse(l.stdout) as { policies: { key: string; rules: { ports: string }[] }[] };
    assert.deepEqual(
      listed.policies.map((p) => [p.key, p.rules.map((r) => r.ports)]),
      [["ipsecpolicy-kube-dns-sample", ["udp/53,tcp/53,tcp/9153", "tcp/9402"]]],
    );
    const d = podcrypt("policy", "delete", "ipsecpolicy-kube-dns-sample", "--datastore", store);
    assert.equal(d.status, 0, d.stderr);
    const again = podcrypt("policy", "delete", "ipsecpolicy-kube-dns-sample", "--datastore", store);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /no policy named "ipsecpolicy-kube-dns-sample"/);
  });
});

describe("podcrypt manifests", () => {
  it("prints YAML whose ConfigMap carries --mode", () => {
    const r = podcrypt("manifests", "--mode", "ipsec");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /kind: CustomResourceDefinition/);
    assert.match(r.stdout, /mode: ipsec/);
  });
  it("--check reports deploy/ up to date", () => {
    const r = podcrypt("manifests", "--kustomize-dir", join(root, "deploy"), "--check");
    assert.equal(r.status, 0, r.stderr);
  });
});
