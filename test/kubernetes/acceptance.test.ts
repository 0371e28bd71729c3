// test-tier: netns (root: network namespaces)
/**
 * The controller and the agents run against the Kubernetes API test server
 * with the generated CRDs and RBAC, each with its own service account's token, and a policy
 * applied there reaches the data plane of the local cluster's nodes.
 *
 * The server (127.0.0.1, RBAC authorizer, a token per component and one for the test as admin)
 * gets `podcrypt manifests`' CRDs, Namespace and RBAC through its API; the test creates the Node
 * objects (as kubelets would), the Services and their Endpoints (as the endpoints controller
 * would). The local cluster's controller and agents use their service accounts' kubeconfigs
 * (`datastores:` in the cluster config); agents get only $NODE_NAME and read their address and pod
 * CIDR from their Node, as in the DaemonSet. The StarlingX seed IPsecPolicy is created through the
 * API; `podcrypt verify` must then show kube-dns traffic encrypted and web traffic in plaintext,
 * and the policy's status Accepted and Programmed on 3 of 3 nodes. A 403 anywhere in the request
 * log is a failure of the generated RBAC.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { parse, stringify } from "yaml";
import { COMPONENT_CALLS } from "../../src/cli/manifests/api-calls.js";
import { CONTROLLERS } from "../../src/localcluster/cluster.js";
import { resolveClusterConfig, parseClusterConfigText } from "../../src/localcluster/config.js";
import { NETNS_PREFIX, planCluster, servicePods } from "../../src/localcluster/plan.js";
import { projectRoot } from "../../src/paths.js";
import { listNetns } from "../../src/platform/netns/netns.js";
import { installPodcrypt, kubeconfigYaml, SERVICE_ACCOUNT_USERS } from "../support/kube-apiserver/rbac.js";
import type { KubeApiServer } from "../support/kube-apiserver/server.js";
import { clusterCli } from "../localcluster/run-cli.js";

const execFileP = promisify(execFile);
const root = projectRoot();
const SEED = join(root, "test/policy/fixtures/starlingx-ipsecpolicy.yaml");
const TOKENS = { controller: "controller-sa-token", agent: "agent-sa-token", admin: "admin-token" };

interface Check {
  from: string;
  to: string;
  protocol: string;
  port: number;
  selected: boolean;
  delivered: boolean;
  plaintextSeen: boolean;
}

const CLUSTER = (mode: string): string => `mode: ${mode}
encryption: selective
nodes:
  - {name: node-1, pods: 1}
  - {name: node-2, pods: 1}
  - {name: node-3, pods: 1}
pods:
  - {name: dns-1, namespace: kube-system, node: node-2, labels: {app: dns}}
  - {name: dns-2, namespace: kube-system, node: node-3, labels: {app: dns}}
  - {name: web-1, namespace: default, node: node-1, labels: {app: web}}
services:
  - {name: kube-dns, namespace: kube-system, selector: {app: dns}, ports: [udp/53, tcp/53, tcp/9153]}
  - {name: web, namespace: default, selector: {app: web}, ports: [tcp/80]}
`;

const busy = (await listNetns()).some((n) => n.startsWith(NETNS_PREFIX));

for (const mode of ["wireguard", "ipsec"] as const)
  describe(
    `Kubernetes: controller and agents on the API test server with the generated CRDs and RBAC (${mode})`,
    { skip: busy ? "a local cluster is already running on this machine" : false },
    () => {
      const { home, podcrypt } = clusterCli(`k8s-acceptance-${mode}`, { timeoutMs: 240_000 });
      let server: KubeApiServer;
      let t0 = Date.now();
      const times: Record<string, number> = {};

      /** A request to the API server as the admin (kubectl's part in this test). */
      const api = async (method: string, path: string, body?: unknown) => {
        const res = await fetch(`${server.url}${path}`, {
          method,
          headers: { Authorization: `Bearer ${TOKENS.admin}`, "Content-Type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        const json = (await res.json()) as Record<string, unknown>;
        if (res.status >= 300)
          throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
        return json;
      };
      const kubeconfig = (name: string, token: string): string => {
        const file = join(home, `${name}.kubeconfig`);
        writeFileSync(file, kubeconfigYaml(server.url, name, token), { mode: 0o600 });
        return `kubernetes:${file}`;
      };
      const waitFor = async <T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> => {
        const deadline = Date.now() + ms;
        let last: unknown;
        for (;;) {
          try {
            const v = await fn();
            if (v !== undefined) return v;
          } catch (e) {
            last = e;
          }
          if (Date.now() > deadline)
            throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
          await new Promise((r) => setTimeout(r, 300));
        }
      };
      /** Runs node's fetch inside a node's network namespace (the agents' health server is there). */
      const fetchInNode = async (netns: string, url: string): Promise<{ status: number; body: string }> => {
        const code = `const r = await fetch(${JSON.stringify(url)}); process.stdout.write(JSON.stringify({status: r.status, body: await r.text()}));`;
        const { stdout } = await execFileP(
          "ip",
          ["netns", "exec", netns, process.execPath, "--input-type=module", "-e", code],
          {
            timeout: 20_000,
          },
        );
        return JSON.parse(stdout) as { status: number; body: string };
      };

      /** What the nodes of undelivered checks have installed, for the test log. */
      const diagnose = async (lost: Check[]): Promise<void> => {
        const status = (await podcrypt(["status", "--json"])).stdout;
        process.stdout.write(`# status: ${status.replace(/\n/g, " ")}\n`);
        for (const n of new Set(lost.flatMap((c) => [c.from, c.to]))) {
          for (const args of [["rule"], ["route", "show", "table", "all"], ["-s", "link"]]) {
            const r = await execFileP("ip", ["netns", "exec", `pc-${n}`, "ip", ...args]).catch(
              (e: Error) => ({
                stdout: e.message,
              }),
            );
            process.stdout.write(`# ${n}: ip ${args.join(" ")}\n${r.stdout.replace(/^/gm, "#   ")}\n`);
          }
          const nft = await execFileP("ip", ["netns", "exec", `pc-${n}`, "nft", "list", "ruleset"]).catch(
            (e: Error) => ({ stdout: e.message }),
          );
          process.stdout.write(`# ${n}: nft list ruleset\n${nft.stdout.replace(/^/gm, "#   ")}\n`);
        }
      };

      before(async () => {
        t0 = Date.now();
        const plan = planCluster(resolveClusterConfig(parseClusterConfigText(CLUSTER(mode))));
        // Each agent's token is bound to its node, as a DaemonSet pod's: the admission policy lets
        // it write only that node's PodcryptNode.
        const agentToken = (node: string): string => `agent-${node}-token`;
        server = await installPodcrypt({
          tokens: TOKENS,
          agentNodes: Object.fromEntries(plan.nodes.map((n) => [agentToken(n.name), n.name])),
        });
        for (const n of plan.nodes) kubeconfig(`agent-${n.name}`, agentToken(n.name));
        const config = { ...(parse(CLUSTER(mode)) as Record<string, unknown>) };
        config["datastore"] = kubeconfig("admin", TOKENS.admin);
        config["datastores"] = {
          controller: kubeconfig("controller", TOKENS.controller),
          agent: `kubernetes:${join(home, "agent-{node}.kubeconfig")}`,
        };
        writeFileSync(join(home, "cluster.yaml"), stringify(config));
        // What the kubelets and the endpoints controller of such a cluster would have published.
        for (const n of plan.nodes)
          await api("POST", "/api/v1/nodes", {
            metadata: { name: n.name, labels: { "kubernetes.io/hostname": n.name } },
            spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] },
            status: {
              addresses: [
                { type: "InternalIP", address: n.underlayIPv4 },
                { type: "Hostname", address: n.name },
              ],
            },
          });
        for (const s of plan.services) {
          await api("POST", `/api/v1/namespaces/${s.namespace}/services`, {
            metadata: { name: s.name },
            spec: {
              selector: s.selector,
              ports: s.ports.map((p) => {
                const [proto, port] = p.split("/");
                return { name: `${proto}-${port}`, protocol: proto!.toUpperCase(), port: Number(port) };
              }),
            },
          });
          await api("POST", `/api/v1/namespaces/${s.namespace}/endpoints`, {
            metadata: { name: s.name },
            subsets: [
              {
                addresses: servicePods(plan, s).map((p) => ({
                  ip: p.ip,
                  nodeName: p.node,
                  targetRef: { kind: "Pod", name: p.name, namespace: p.namespace },
                })),
              },
            ],
          });
        }
        const up = await podcrypt([
          "cluster",
          "up",
          "--config",
          join(home, "cluster.yaml"),
          "--timeout",
          "200",
        ]);
        times["cluster up"] = Date.now() - t0;
        assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
      });

      after(async () => {
        try {
          const down = await podcrypt(["cluster", "down"]);
          if (down.code !== 0) process.stderr.write(`cluster down: ${down.stderr}\n`);
          await server?.close();
        } finally {
          rmSync(home, { recursive: true, force: true });
        }
        process.stdout.write(
          `# timings (s from start): ${Object.entries(times)
            .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`)
            .join(", ")}\n`,
        );
      });

      it("the agents read their Node objects and run with their own service account", () => {
        for (const n of ["node-1", "node-2", "node-3"]) {
          const log = readFileSync(join(home, "logs", `agent-${n}.log`), "utf8");
          const line = log.split("\n").find((l) => l.includes('"msg":"node and data planes"'));
          assert.ok(line, `${n}: no start-up line`);
          const rec = JSON.parse(line) as { from: unknown; underlayIp: string; underlayIf: string };
          assert.deepEqual(rec.from, { underlayIp: "node", podCIDRs: "node" }, n);
          assert.equal(rec.underlayIf, "eth0", `${n}: the interface holding ${rec.underlayIp}`);
        }
        const agents = server.requests.filter((r) => r.user === SERVICE_ACCOUNT_USERS.agent);
        assert.ok(agents.some((r) => r.verb === "get" && r.resource === "nodes" && r.name === "node-1"));
        // Records are PodcryptNodes, each written by its own node's agent; Nodes are only read.
        assert.ok(agents.some((r) => r.verb === "update" && r.resource === "podcryptnodes"));
        assert.deepEqual(
          agents.filter((r) => r.resource === "nodes" && !["get", "list", "watch"].includes(r.verb)),
          [],
        );
      });

      it("the seed IPsecPolicy created through the API: kube-dns only as ciphertext, web in plaintext", async () => {
        const policy = parse(readFileSync(SEED, "utf8")) as Record<string, unknown>;
        const created = await api("POST", "/apis/starlingx.io/v1/ipsecpolicies", policy);
        assert.equal((created["metadata"] as { name: string }).name, "ipsecpolicy-kube-dns-sample");
        // Every node installed the same selector set (their status.selection hashes agree).
        await waitFor("the selection to settle on every node", 60_000, async () => {
          const s = JSON.parse((await podcrypt(["status", "--json"])).stdout) as {
            nodes: { selection?: string }[];
          };
          const h = s.nodes.map((n) => n.selection ?? "");
          return h.length === 3 && h.every((x) => x !== "" && x === h[0]) ? h[0] : undefined;
        });
        times["selection settled"] = Date.now() - t0;
        const v = JSON.parse(
          (await podcrypt(["verify", "--json", "--seconds", "2", "--count", "5"])).stdout,
        ) as {
          ok: boolean;
          selective: boolean;
          pairs: Check[];
        };
        times["verify"] = Date.now() - t0;
        assert.equal(v.selective, true);
        const lost = v.pairs.filter((p) => !p.delivered);
        if (lost.length > 0) await diagnose(lost);
        assert.deepEqual(
          lost.map((p) => `${p.from}->${p.to} ${p.protocol}/${p.port}`),
          [],
          "everything arrives",
        );
        const byPort = (protocol: string, port: number) =>
          v.pairs.filter((p) => p.protocol === protocol && p.port === port);
        for (const [protocol, port] of [
          ["udp", 53],
          ["tcp", 53],
          ["tcp", 9153],
        ] as const) {
          const checks = byPort(protocol, port);
          assert.equal(
            checks.length,
            4,
            `${protocol}/${port}: from every node to the dns pods of the others`,
          );
          for (const c of checks)
            assert.deepEqual(
              [c.selected, c.delivered, c.plaintextSeen],
              [true, true, false],
              JSON.stringify(c),
            );
        }
        const web = byPort("tcp", 80);
        assert.equal(web.length, 2);
        for (const c of web)
          assert.deepEqual(
            [c.selected, c.delivered, c.plaintextSeen],
            [false, true, true],
            JSON.stringify(c),
          );
        assert.equal(v.ok, true);
      });

      it("the policy's status: Accepted, and Programmed on 3 of 3 nodes, for its generation", async () => {
        const path = "/apis/starlingx.io/v1/ipsecpolicies/ipsecpolicy-kube-dns-sample";
        const obj = await waitFor("Programmed=True", 30_000, async () => {
          const o = await api("GET", path);
          const conds =
            (o["status"] as { conditions?: { type: string; status: string }[] })?.conditions ?? [];
          return conds.find((c) => c.type === "Programmed")?.status === "True" ? o : undefined;
        });
        times["Programmed 3/3"] = Date.now() - t0;
        const st = obj["status"] as {
          conditions: {
            type: string;
            status: string;
            reason: string;
            message: string;
            observedGeneration: number;
          }[];
          programmedNodes: number;
          nodes: number;
          selectedEndpoints: number;
          observedGeneration: number;
        };
        const gen = (obj["metadata"] as { generation: number }).generation;
        const accepted = st.conditions.find((c) => c.type === "Accepted")!;
        const programmed = st.conditions.find((c) => c.type === "Programmed")!;
        assert.deepEqual([accepted.status, accepted.reason], ["True", "Valid"]);
        assert.equal(programmed.reason, "Programmed");
        assert.match(
          programmed.message,
          /^programmed on 3 of 3 nodes; rule cert-manager: service cert-manager\/cm-cert-manager not found$/,
        );
        assert.deepEqual([st.programmedNodes, st.nodes, st.selectedEndpoints], [3, 3, 2]);
        assert.equal(st.observedGeneration, gen);
        assert.ok(st.conditions.every((c) => c.observedGeneration === gen));
        const list = JSON.parse((await podcrypt(["policy", "list", "--json"])).stdout) as {
          policies: { key: string; status: { programmedNodes: number } | null }[];
        };
        assert.deepEqual(
          list.policies.map((p) => [p.key, p.status?.programmedNodes]),
          [["ipsecpolicy-kube-dns-sample", 3]],
        );
        assert.match((await podcrypt(["policy", "list"])).stdout, /\tProgrammed 3\/3$/m);
      });

      it("an invalid policy stored through the API: Accepted False naming the field, traffic as it was", async () => {
        await api("POST", "/apis/starlingx.io/v1/ipsecpolicies", {
          apiVersion: "starlingx.io/v1",
          kind: "IPsecPolicy",
          metadata: { name: "broken" },
          spec: {
            policies: [{ name: "r", servicename: "web", servicens: "default", serviceports: "tcp/99999" }],
          },
        });
        const st = await waitFor("Accepted=False", 30_000, async () => {
          const o = await api("GET", "/apis/starlingx.io/v1/ipsecpolicies/broken");
          const c = (
            o["status"] as { conditions?: { type: string; status: string; message: string }[] } | undefined
          )?.conditions?.find((x) => x.type === "Accepted");
          return c?.status === "False" ? c : undefined;
        });
        assert.match(st.message, /^spec\.policies\[0\]\.serviceports: .*99999/);
        const l = await podcrypt(["policy", "list"]);
        assert.match(l.stdout, /^broken\t\(invalid: spec\.policies\[0\]\.serviceports: .*\)\t\t\tInvalid$/m);
        const v = JSON.parse(
          (await podcrypt(["verify", "--json", "--seconds", "2", "--count", "5"])).stdout,
        ) as {
          ok: boolean;
          pairs: Check[];
        };
        assert.equal(v.ok, true);
        assert.ok(v.pairs.filter((p) => p.port === 80).every((p) => !p.selected && p.plaintextSeen));
        await api("DELETE", "/apis/starlingx.io/v1/ipsecpolicies/broken");
      });

      it("/healthz, /readyz and /metrics of an agent and of the controller", async () => {
        const ready = await waitFor("node-1 ready", 30_000, async () => {
          const r = await fetchInNode("pc-node-1", "http://127.0.0.1:9809/readyz");
          return r.status === 200 ? r : undefined;
        });
        assert.match(ready.body, /^ok: datastore reachable; last reconcile succeeded\n$/);
        assert.equal((await fetchInNode("pc-node-1", "http://127.0.0.1:9809/healthz")).status, 200);
        const m = (await fetchInNode("pc-node-1", "http://127.0.0.1:9809/metrics")).body;
        for (const peer of ["node-2", "node-3"])
          assert.match(
            m,
            new RegExp(
              `^podcrypt_peer_transmit_bytes_total\\{peer="${peer}",epoch="\\d+",ifname="[^"]+"\\} [1-9]\\d*$`,
              "m",
            ),
          );
        if (mode === "wireguard")
          assert.match(m, /^podcrypt_peer_latest_handshake_timestamp_seconds\{peer="node-2",/m);
        else assert.match(m, /^podcrypt_peer_key_id\{peer="node-2",epoch="\d+",ifname="[^"]+"\} \d+$/m);
        // Drops by reason where the data plane counts them: podcrypt's userspace daemons do.
        const info = /^podcrypt_agent_info\{node="node-1",wireguard="(\w+)",ipsec="(\w+)"\} 1$/m.exec(m);
        assert.ok(info, "agent_info");
        if ((mode === "wireguard" ? info[1] : info[2]) === "userspace")
          assert.match(
            m,
            new RegExp(
              `^podcrypt_dataplane_dropped_packets_total\\{dataplane="${mode === "wireguard" ? "wireguard" : "esp"}-userspace",ifname="[^"]+",layer="\\w+",reason="[\\w-]+"\\} \\d+$`,
              "m",
            ),
          );
        assert.match(m, /^podcrypt_cluster_phase\{phase="idle"\} 1$/m);
        assert.match(m, /^podcrypt_agent_reconcile_failures_total 0$/m);
        assert.match(m, /^podcrypt_datastore_reachable 1$/m);
        // Two controllers run (a leader and a standby); whichever took the lease first leads.
        const readyz: Array<{ address: string; text: string }> = [];
        for (const [name] of CONTROLLERS) {
          const log = readFileSync(join(home, "logs", `${name}.log`), "utf8");
          const line = log
            .split("\n")
            .filter((l) => l.includes("serving /healthz"))
            .pop();
          assert.ok(line !== undefined, `${name} logged its health address`);
          const address = (JSON.parse(line) as { address: string }).address;
          const c = await fetch(`http://${address}/readyz`);
          assert.equal(c.status, 200, `${name} /readyz`);
          readyz.push({ address, text: await c.text() });
        }
        const leaders = readyz.filter((r) => r.text === "ok: datastore reachable; leader\n");
        assert.equal(leaders.length, 1, `one leader: ${JSON.stringify(readyz)}`);
        assert.ok(
          readyz.some((r) => r.text.startsWith("ok: datastore reachable; standby")),
          `one standby: ${JSON.stringify(readyz)}`,
        );
        const cm = await (await fetch(`http://${leaders[0]!.address}/metrics`)).text();
        assert.match(cm, /^podcrypt_controller_leader 1$/m);
        assert.match(cm, /^podcrypt_policy_status_writes_total [1-9]\d*$/m);
      });

      it("no request of any component was refused, and each made only calls its role grants", () => {
        const refused = server.requests.filter((r) => r.code === 403);
        assert.deepEqual(
          refused.map(
            (r) =>
              `${r.user} ${r.verb} ${r.apiGroup}/${r.resource}${r.subresource ? `/${r.subresource}` : ""}`,
          ),
          [],
        );
        for (const [component, user] of Object.entries(SERVICE_ACCOUNT_USERS)) {
          const granted = new Set(
            COMPONENT_CALLS.filter((c) => c.component === component).map(
              (c) => `${c.apiGroup}/${c.resource} ${c.verb}`,
            ),
          );
          const made = new Set(
            server.requests
              .filter((r) => r.user === user)
              .map((r) => `${r.apiGroup}/${r.resource}${r.subresource ? `/${r.subresource}` : ""} ${r.verb}`),
          );
          assert.ok(made.size > 5, `${component} made requests`);
          assert.deepEqual(
            [...made].filter((m) => !granted.has(m)),
            [],
            `${component}: calls outside its role`,
          );
        }
        const controller = server.requests.filter((r) => r.user === SERVICE_ACCOUNT_USERS.controller);
        assert.ok(
          controller.some(
            (r) => r.resource === "ipsecpolicies" && r.subresource === "status" && r.verb === "patch",
          ),
          "the controller wrote the status through the status subresource",
        );
        process.stdout.write(
          `# API requests: ${server.requests.length} (controller ${controller.length}, agents ${
            server.requests.filter((r) => r.user === SERVICE_ACCOUNT_USERS.agent).length
          }), 0 refused\n`,
        );
      });
    },
  );
