import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse } from "yaml";
import { LocalDatastore } from "../../src/datastore/local/index.js";
import { projectRoot } from "../../src/paths.js";

const root = projectRoot();
const tmp = mkdtempSync(join(tmpdir(), "podcrypt-policy-cli-"));
const store = `local:${join(tmp, "store")}`;

/**
 * Runs the CLI as a person would and returns its exit code and output: `bin/podcrypt` when this
 * file runs from dist/ (the compiled CLI, started in a fraction of the time), the TypeScript sources
 * through tsx otherwise (so `npx tsx --test` tests the working tree).
 */
function podcrypt(...args: string[]) {
  const main = JSON.stringify(join(root, "src/cli/main.ts"));
  const argv = import.meta.url.endsWith(".js")
    ? [join(root, "bin", "podcrypt"), ...args]
    : [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `const { main } = await import(${main}); process.exitCode = await main(${JSON.stringify(args)});`,
      ];
  const r = spawnSync(process.execPath, argv, {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// After every suite of the file: the status suite below keeps its store in `tmp` too.
after(() => rmSync(tmp, { recursive: true, force: true }));

describe("podcrypt policy", () => {
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
    assert.equal((listed.policies[0] as unknown as { status: unknown }).status, null, "no report yet");
    assert.match(
      podcrypt("policy", "list", "--datastore", store).stdout,
      /^POLICY\tRULE\tSERVICE\tPORTS\tSTATUS\n.*\t-\n/,
    );
    const d = podcrypt("policy", "delete", "ipsecpolicy-kube-dns-sample", "--datastore", store);
    assert.equal(d.status, 0, d.stderr);
    const again = podcrypt("policy", "delete", "ipsecpolicy-kube-dns-sample", "--datastore", store);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /no policy named "ipsecpolicy-kube-dns-sample"/);
  });
});

describe("podcrypt policy list shows the controller's status", () => {
  it("STATUS column and the JSON status field, for valid and invalid policies", async () => {
    const dir = join(tmp, "status-store");
    const ds = await LocalDatastore.open({ dir, pollIntervalMs: 1000, sweepIntervalMs: 0 });
    const at = "2026-01-01T00:00:00Z";
    try {
      const p = await ds.collection("encryptionpolicies").create({
        name: "dns",
        namespace: "kube-system",
        policies: [{ name: "dns", service: "kube-dns", namespace: "kube-system", ports: "udp/53" }],
      });
      const status = {
        conditions: [
          {
            type: "Accepted" as const,
            status: "True" as const,
            reason: "Valid",
            message: "ok",
            lastTransitionTime: at,
          },
          {
            type: "Programmed" as const,
            status: "False" as const,
            reason: "Pending",
            message: "programmed on 2 of 3 nodes",
            lastTransitionTime: at,
          },
        ],
        programmedNodes: 2,
        nodes: 3,
        selectedEndpoints: 2,
      };
      await ds.writePolicyStatus(p.key, status, { revision: p.revision });
      // A policy stored by an older version, in a form that no longer validates.
      await ds.backing.transaction((tx) =>
        tx.put(
          "encryptionpolicies",
          "old",
          { name: "old", policies: [{ name: "x", service: "s", namespace: "n", ports: "tcp/0" }] },
          undefined,
        ),
      );
      const bad = (await ds.collection("encryptionpolicies").list()).invalid[0]!;
      const badStatus = {
        ...status,
        conditions: [
          {
            ...status.conditions[0]!,
            status: "False" as const,
            reason: "Invalid",
            message: bad.error.message,
          },
        ],
        programmedNodes: 0,
      };
      await ds.writePolicyStatus("old", badStatus, { revision: bad.revision });
    } finally {
      await ds.close();
    }
    const text = podcrypt("policy", "list", "--datastore", `local:${dir}`);
    assert.equal(text.status, 0, text.stderr);
    assert.match(
      text.stdout,
      /^EncryptionPolicy\/kube-system\/dns\tdns\tkube-system\/kube-dns\tudp\/53\tPending 2\/3$/m,
    );
    assert.match(text.stdout, /^old\t\(invalid: policies\.0\.ports: .*\)\t\t\tInvalid$/m);
    const json = JSON.parse(podcrypt("policy", "list", "--json", "--datastore", `local:${dir}`).stdout) as {
      policies: { status: { programmedNodes: number; nodes: number } }[];
      invalid: { key: string; status: { conditions: { reason: string }[] } }[];
    };
    assert.deepEqual([json.policies[0]!.status.programmedNodes, json.policies[0]!.status.nodes], [2, 3]);
    assert.equal(json.invalid[0]!.status.conditions[0]!.reason, "Invalid");
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
