/**
 * `podcrypt controller --config` with the ConfigMap `podcrypt manifests` generates, run as the
 * real process with its own service account against the API test server: every setting of the
 * file is used (datastore, namespace, cluster seed, election name and TTL, health address, log
 * level), flags override it, health and metrics answer, and policy status is written through the
 * status subresource with nothing refused by the generated RBAC.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { defaultManifestOptions } from "../../src/cli/manifests/options.js";
import { configFile } from "../../src/cli/manifests/workloads.js";
import { projectRoot } from "../../src/paths.js";
import { PodcryptApi } from "../support/kube-apiserver/fixture.js";
import { SERVICE_ACCOUNT_USERS } from "../support/kube-apiserver/rbac.js";

const root = projectRoot();
const TOKENS = { controller: "ctl-token", admin: "root-token" };

describe("podcrypt controller --config (the generated ConfigMap) on the kubernetes datastore", () => {
  const dir = mkdtempSync(join(tmpdir(), "podcrypt-controller-config-"));
  let api: PodcryptApi;
  let child: ChildProcess | undefined;
  let logs = "";
  const get = (path: string) => api.call(TOKENS.admin, "GET", path);
  const until = async <T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await fn().catch(() => undefined);
      if (v !== undefined) return v;
      if (Date.now() > deadline)
        assert.fail(`timed out waiting for ${what}; controller log:\n${logs.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  before(async () => {
    api = await PodcryptApi.start({ tokens: TOKENS });
    const kubeconfig = api.writeKubeconfig(dir, "controller", TOKENS.controller);
    // The generated file, with what a pod has and this test has not: the in-cluster service
    // account (here a kubeconfig) and a free port instead of 9808.
    const config = configFile({ ...defaultManifestOptions("test"), mode: "ipsec" });
    config.datastore = `kubernetes:${kubeconfig}`;
    config.cluster = { ...config.cluster, rotationInterval: "45m", encryption: "selective" };
    config.controller = { ...config.controller, healthAddress: "127.0.0.1:0" };
    config.log = { level: "debug" };
    writeFileSync(join(dir, "config.yaml"), stringify(config));
    child = spawn(
      process.execPath,
      [join(root, "bin", "podcrypt"), "controller", "--config", join(dir, "config.yaml"), "--lease-ttl", "7"],
      { env: { ...process.env, POD_NAME: "podcrypt-controller-abc12" }, stdio: ["ignore", "ignore", "pipe"] },
    );
    child.stderr!.on("data", (d: Buffer) => (logs += d.toString()));
  });

  after(async () => {
    try {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child!.once("exit", r));
        child.kill("SIGKILL");
        await exited;
      }
      await api?.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("seeds ClusterEncryption from the cluster section and leads under its election name and TTL", async () => {
    const ce = await until("ClusterEncryption default", async () => {
      const r = await get("/apis/podcrypt.io/v1/clusterencryptions/default");
      return r.code === 200 ? r.body : undefined;
    });
    const spec = ce["spec"] as Record<string, unknown>;
    assert.deepEqual(
      [spec["mode"], spec["encryption"], spec["rotationInterval"], spec["strict"], spec["enabled"]],
      ["ipsec", "selective", "45m", true, true],
    );
    const lease = await until("the leader Lease", async () => {
      const r = await get(
        "/apis/coordination.k8s.io/v1/namespaces/podcrypt-system/leases/podcrypt-leader-podcrypt-controller",
      );
      return r.code === 200 ? r.body : undefined;
    });
    const ls = lease["spec"] as { holderIdentity: string; leaseDurationSeconds: number };
    assert.equal(ls.holderIdentity, "podcrypt-controller-abc12", "identity from $POD_NAME");
    assert.equal(ls.leaseDurationSeconds, 7, "--lease-ttl overrides the file's 15");
    await until("a debug line (log.level debug from the file)", async () =>
      /"level":20/.test(logs) ? true : undefined,
    );
  });

  it("writes the status of a policy through the status subresource; health and metrics answer", async () => {
    const created = await api.call(
      TOKENS.admin,
      "POST",
      "/apis/podcrypt.io/v1/namespaces/default/encryptionpolicies",
      {
        apiVersion: "podcrypt.io/v1",
        kind: "EncryptionPolicy",
        metadata: { name: "web" },
        spec: { policies: [{ name: "web", service: "web", namespace: "default", ports: "tcp/80" }] },
      },
    );
    assert.equal(created.code, 201, JSON.stringify(created.body));
    const status = await until("policy status", async () => {
      const r = await get("/apis/podcrypt.io/v1/namespaces/default/encryptionpolicies/web");
      return (r.body["status"] as { conditions?: unknown[] } | undefined)?.conditions === undefined
        ? undefined
        : (r.body["status"] as {
            conditions: { type: string; status: string; message: string }[];
            nodes: number;
          });
    });
    assert.deepEqual(
      status.conditions.map((c) => [c.type, c.status]),
      [
        ["Accepted", "True"],
        ["Programmed", "False"],
      ],
    );
    assert.equal(
      status.conditions[1]!.message,
      "programmed on 0 of 0 nodes; rule web: service default/web not found",
    );
    const line = logs.split("\n").find((l) => l.includes("serving /healthz"));
    const address = (JSON.parse(line!) as { address: string }).address;
    assert.match(address, /^127\.0\.0\.1:\d+$/);
    const ready = await fetch(`http://${address}/readyz`);
    assert.deepEqual([ready.status, await ready.text()], [200, "ok: datastore reachable; leader\n"]);
    assert.equal((await fetch(`http://${address}/healthz`)).status, 200);
    const metrics = await (await fetch(`http://${address}/metrics`)).text();
    assert.match(metrics, /^podcrypt_controller_leader 1$/m);
    assert.match(metrics, /^podcrypt_cluster_epoch 1$/m);
    const mine = api.server.requests.filter((r) => r.user === SERVICE_ACCOUNT_USERS.controller);
    assert.ok(
      mine.some(
        (r) => r.resource === "encryptionpolicies" && r.subresource === "status" && r.verb === "patch",
      ),
    );
    assert.deepEqual(
      mine.filter((r) => r.code === 403),
      [],
    );
  });

  it("SIGTERM resigns: the leader Lease goes at once", async () => {
    child!.kill("SIGTERM");
    const code = await new Promise<number | null>((r) => child!.once("exit", r));
    assert.equal(code, 0, logs.slice(-2000));
    const r = await get(
      "/apis/coordination.k8s.io/v1/namespaces/podcrypt-system/leases/podcrypt-leader-podcrypt-controller",
    );
    assert.equal(r.code, 404);
  });

  it("a file field that does not validate stops it, naming the field", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(
      bad,
      stringify({
        ...parse(stringify(configFile(defaultManifestOptions("t")))),
        controller: { healthPort: 9808 },
      }),
    );
    const p = spawn(process.execPath, [join(root, "bin", "podcrypt"), "controller", "--config", bad], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    p.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => p.once("exit", r));
    assert.equal(code, 1);
    assert.match(err, /^podcrypt: .*bad\.yaml: controller: .*healthPort/m);
  });
});
