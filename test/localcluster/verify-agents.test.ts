/**
 * `verify --via-agents` against the namespace verify on the local cluster (3 nodes, both modes,
 * datastores local and kubernetes: the API test server with the generated CRDs, RBAC and admission
 * policy, each agent with its own node-bound token, the CLI as the admin): the agents' verdicts (probes between the nodes' probe endpoints, each node
 * capturing its own underlay) must be the namespace verify's (pods' probes, the fabric captured)
 * on a healthy cluster and on one where node-1's encryption is broken; and a node whose capture is
 * blind (the fault-injection knob `fault-capture-blind` in its state directory) must make its
 * pairs "capture blind", never "encrypted".
 *
 * How node-1 is broken, as a foreign tool on a real node would: its nftables table `podcrypt` is
 * deleted (a firewall reload flushing the ruleset: strict mode gone) and a policy-routing rule at
 * priority 100 sends the cluster's pod CIDRs to a table routing them straight over the underlay
 * (another component's rule ahead of the main table: the tunnel bypassed). Neither is podcrypt's
 * to repair, so node-1's pod traffic leaves in plaintext while its agent runs on.
 */
import assert from "node:assert/strict";
import { rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { parseClusterConfigText, resolveClusterConfig } from "../../src/localcluster/config.js";
import { planCluster } from "../../src/localcluster/plan.js";
import { run } from "../../src/platform/netns/netns.js";
import { installPodcrypt, kubeconfigYaml, SERVICE_ACCOUNT_USERS } from "../support/kube-apiserver/rbac.js";
import type { KubeApiServer } from "../support/kube-apiserver/server.js";
import { clusterBusy, clusterCli, type VerifyJson } from "./run-cli.js";

interface Pair {
  from: string;
  to: string;
  delivered: boolean;
  plaintextSeen: boolean;
  port: number;
  family: "ipv4" | "ipv6";
  host?: true;
  captureBlind?: boolean;
}

/**
 * The verdict of every ordered node pair of a verify's JSON (its echo-port checks between pods or
 * probe endpoints of `family`).
 */
function verdicts(
  v: { pairs: Pair[] },
  family: "ipv4" | "ipv6" = "ipv4",
): Record<string, { delivered: boolean; plaintext: boolean }> {
  return Object.fromEntries(
    v.pairs
      .filter((p) => p.port === 7 && p.host !== true && p.family === family)
      .map((p) => [`${p.from}->${p.to}`, { delivered: p.delivered, plaintext: p.plaintextSeen }]),
  );
}

const busy = await clusterBusy();

const TOKENS = { controller: "controller-sa-token", agent: "agent-sa-token", admin: "admin-token" };

for (const datastore of ["local", "kubernetes"] as const)
  for (const mode of ["wireguard", "ipsec"] as const)
    describe(
      `verify --via-agents agrees with the namespace verify (3 nodes, ${mode}, ${datastore} datastore)`,
      { skip: busy },
      () => {
        const { home, podcrypt } = clusterCli(`verify-agents-${mode}-${datastore}`);
        let server: KubeApiServer | undefined;
        const verify = async (
          viaAgents: boolean,
        ): Promise<{ code: number; json: VerifyJson & { pairs: Pair[] }; stderr: string }> => {
          const r = await podcrypt(["verify", "--json", ...(viaAgents ? ["--via-agents"] : [])]);
          assert.ok(r.stdout.trim().startsWith("{"), `verify printed no JSON: ${r.stderr}`);
          return {
            code: r.code,
            json: JSON.parse(r.stdout) as VerifyJson & { pairs: Pair[] },
            stderr: r.stderr,
          };
        };
        before(async () => {
          const text = `mode: ${mode}\nnodes:\n${[1, 2, 3].map((i) => `  - {name: node-${i}, pods: 1}`).join("\n")}\n`;
          const config = parse(text) as Record<string, unknown>;
          if (datastore === "kubernetes") {
            const plan = planCluster(resolveClusterConfig(parseClusterConfigText(text)));
            const agentToken = (node: string): string => `agent-${node}-token`;
            const s = await installPodcrypt({
              tokens: TOKENS,
              agentNodes: Object.fromEntries(plan.nodes.map((n) => [agentToken(n.name), n.name])),
            });
            server = s;
            const kubeconfig = (name: string, token: string): string => {
              const file = join(home, `${name}.kubeconfig`);
              writeFileSync(file, kubeconfigYaml(s.url, name, token), { mode: 0o600 });
              return `kubernetes:${file}`;
            };
            for (const n of plan.nodes) kubeconfig(`agent-${n.name}`, agentToken(n.name));
            config["datastore"] = kubeconfig("admin", TOKENS.admin);
            config["datastores"] = {
              controller: kubeconfig("controller", TOKENS.controller),
              agent: `kubernetes:${join(home, "agent-{node}.kubeconfig")}`,
            };
            // The Nodes the kubelets would have registered.
            for (const n of plan.nodes) {
              const res = await fetch(`${s.url}/api/v1/nodes`, {
                method: "POST",
                headers: { Authorization: `Bearer ${TOKENS.admin}`, "Content-Type": "application/json" },
                body: JSON.stringify({
                  metadata: { name: n.name },
                  spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] },
                  status: { addresses: [{ type: "InternalIP", address: n.underlayIPv4 }] },
                }),
              });
              assert.ok(res.status < 300, `creating Node ${n.name}: HTTP ${res.status}`);
            }
          }
          writeFileSync(join(home, "cluster.yaml"), stringify(config));
          const up = await podcrypt([
            "cluster",
            "up",
            "--config",
            join(home, "cluster.yaml"),
            "--timeout",
            "150",
          ]);
          assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
        });
        after(async () => {
          try {
            await podcrypt(["cluster", "down"]);
            if (server !== undefined) {
              // The agents wrote their reports with their own tokens, through the status subresource.
              const agents = server.requests.filter((r) => r.user === SERVICE_ACCOUNT_USERS.agent);
              assert.deepEqual(
                agents.filter((r) => r.code === 403),
                [],
                "the generated RBAC denied an agent",
              );
              await server.close();
            }
          } finally {
            rmSync(home, { recursive: true, force: true });
          }
        });

        it("healthy: both verify OK, with the same verdict for each of the 6 ordered pairs", async () => {
          const ns = await verify(false);
          const agents = await verify(true);
          assert.equal(ns.code, 0, ns.stderr);
          assert.equal(agents.code, 0, agents.stderr);
          assert.equal(Object.keys(verdicts(agents.json)).length, 6);
          assert.deepEqual(verdicts(agents.json), verdicts(ns.json));
          for (const p of agents.json.pairs) assert.equal(p.captureBlind, false, `${p.from}->${p.to}`);
          if (server !== undefined) {
            const reports = server.requests.filter(
              (r) =>
                r.user === SERVICE_ACCOUNT_USERS.agent &&
                r.resource === "verifyruns" &&
                r.subresource === "status",
            );
            // Each node's report through the status subresource (a 409 is a report racing another's,
            // retried with compare-and-swap).
            for (const node of ["node-1", "node-2", "node-3"])
              assert.ok(
                reports.some((r) => r.token === `agent-${node}-token` && r.code === 200),
                `${node} wrote no report: ${JSON.stringify(reports)}`,
              );
            assert.ok(
              reports.every((r) => r.verb === "patch" && [200, 409].includes(r.code)),
              JSON.stringify(reports),
            );
          }
        });

        it("a node whose capture is blind fails its pairs as capture blind, and only those", async () => {
          const knob = join(home, "nodes", "node-2", "fault-capture-blind");
          writeFileSync(knob, "");
          try {
            const r = await verify(true);
            assert.equal(r.code, 1);
            assert.equal(r.json.ok, false);
            for (const p of r.json.pairs) {
              assert.equal(p.captureBlind, p.from === "node-2", `${p.from}->${p.to} captureBlind`);
              // Blind, not plaintext: the traffic itself is still encrypted and delivered.
              assert.equal(p.plaintextSeen, false, `${p.from}->${p.to}`);
            }
            assert.match(r.stderr, /capture blind for node-2→node-1, node-2→node-3/);
          } finally {
            unlinkSync(knob);
          }
        });

        it("node-1's encryption broken (strict mode flushed, tunnel bypassed): both see the same plaintext pairs", async () => {
          const ns1 = "pc-node-1";
          await run("ip", ["netns", "exec", ns1, "nft", "delete", "table", "inet", "podcrypt"]);
          await run("ip", ["-n", ns1, "-batch", "-"], {
            input: [
              "route add 10.244.2.0/24 via 172.30.0.12 dev eth0 table 200",
              "route add 10.244.3.0/24 via 172.30.0.13 dev eth0 table 200",
              "rule add priority 100 to 10.244.0.0/16 lookup 200",
              "",
            ].join("\n"),
          });
          const ns = await verify(false);
          const agents = await verify(true);
          assert.equal(ns.code, 1);
          assert.equal(agents.code, 1);
          const expected = verdicts(ns.json);
          for (const [pair, v] of Object.entries(expected))
            assert.equal(
              v.plaintext,
              pair.includes("node-1"),
              `namespace verify, ${pair}: plaintext ${v.plaintext}`,
            );
          assert.deepEqual(verdicts(agents.json), expected);
          for (const p of agents.json.pairs) assert.equal(p.captureBlind, false, `${p.from}->${p.to}`);
        });
      },
    );

describe(
  "verify --via-agents with host encryption and dual-stack pods: node-to-node checks and IPv6 pod pairs beside the IPv4 ones (3 nodes, wireguard)",
  { skip: busy },
  () => {
    const { home, podcrypt } = clusterCli("verify-agents-host");
    const viaAgents = async (): Promise<{ code: number; pairs: Pair[]; stdout: string; stderr: string }> => {
      const r = await podcrypt(["verify", "--json", "--via-agents"]);
      assert.ok(r.stdout.trim().startsWith("{"), `verify printed no JSON: ${r.stderr}`);
      return {
        code: r.code,
        pairs: (JSON.parse(r.stdout) as { pairs: Pair[] }).pairs,
        stdout: r.stdout,
        stderr: r.stderr,
      };
    };
    const hostPairs = (pairs: Pair[]) =>
      Object.fromEntries(
        pairs
          .filter((p) => p.host === true)
          .map((p) => [`${p.from}->${p.to}`, [p.family, p.delivered, p.plaintextSeen, p.captureBlind]]),
      );
    before(async () => {
      const config = join(home, "cluster.yaml");
      writeFileSync(
        config,
        `mode: wireguard\nhostEncryption: true\nipFamily: dual\nnodes:\n${[1, 2, 3].map((i) => `  - {name: node-${i}, pods: 1}`).join("\n")}\n`,
      );
      const up = await podcrypt(["cluster", "up", "--config", config, "--timeout", "150"]);
      assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
    });
    after(async () => {
      try {
        await podcrypt(["cluster", "down"]);
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    });

    it("status shows host encryption on, and every node applying it to both peers (a host route of each family to each)", async () => {
      const s = JSON.parse((await podcrypt(["status", "--json"])).stdout) as {
        hostEncryption: boolean;
        nodes: Array<{
          name: string;
          hostEncryption?: { applied: boolean; routes: number; peers: string[] };
        }>;
      };
      assert.equal(s.hostEncryption, true);
      for (const n of s.nodes)
        assert.deepEqual(
          n.hostEncryption,
          { applied: true, routes: 4, peers: ["node-1", "node-2", "node-3"].filter((x) => x !== n.name) },
          n.name,
        );
      const text = (await podcrypt(["status"])).stdout;
      assert.match(text, /host encryption on/);
      assert.match(text, /^ {2}host encryption: applied · 4 host routes \(to node-2, node-3\)$/m);
    });

    it("healthy: one encrypted node-to-node check (ipv4) and one pod echo of each family per ordered pair, all OK, as the namespace verify sees them", async () => {
      const r = await viaAgents();
      assert.equal(r.code, 0, r.stderr);
      const all = ["node-1", "node-2", "node-3"].flatMap((a) =>
        ["node-1", "node-2", "node-3"].filter((b) => b !== a).map((b) => `${a}->${b}`),
      );
      assert.deepEqual(
        hostPairs(r.pairs),
        Object.fromEntries(all.map((k) => [k, ["ipv4", true, false, false]])),
      );
      const ns = JSON.parse((await podcrypt(["verify", "--json"])).stdout) as { pairs: Pair[] };
      for (const family of ["ipv4", "ipv6"] as const) {
        const v = verdicts({ pairs: r.pairs }, family);
        assert.equal(Object.keys(v).length, 6, family);
        for (const [pair, x] of Object.entries(v))
          assert.deepEqual(x, { delivered: true, plaintext: false }, `${family} ${pair}`);
        assert.deepEqual(v, verdicts(ns, family), `${family}: the namespace verify's verdicts`);
      }
      const text = await podcrypt(["verify", "--via-agents"]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /node-1 → node-2 node-to-node ipv4 udp\/7/);
      assert.match(text.stdout, /node-1 → node-2 ipv6 udp\/7/);
    });

    it("node-1's host traffic bypassing the tunnels (a foreign rule ahead of podcrypt's): its node-to-node checks are seen in plaintext, the others are not", async () => {
      // Another component's rule ahead of host encryption's: node-1's packets to the other nodes'
      // addresses take the main table, straight over the underlay. The answers come back encrypted
      // (the peers' rules are intact), so only node-1's requests cross in plaintext.
      await run("ip", [
        "-n",
        "pc-node-1",
        "rule",
        "add",
        "priority",
        "100",
        "to",
        "172.30.0.0/24",
        "ipproto",
        "udp",
        "dport",
        "7",
        "lookup",
        "main",
      ]);
      try {
        const r = await viaAgents();
        assert.equal(r.code, 1, r.stdout);
        for (const [pair, [family, delivered, plaintext, blind]] of Object.entries(
          hostPairs(r.pairs),
        ) as Array<[string, [string, boolean, boolean, boolean]]>) {
          assert.deepEqual([family, delivered, blind], ["ipv4", true, false], pair);
          assert.equal(plaintext, pair.startsWith("node-1->"), `${pair}: plaintext ${plaintext}`);
        }
        // The pods' pairs are untouched, in both families.
        for (const family of ["ipv4", "ipv6"] as const)
          for (const [pair, v] of Object.entries(verdicts({ pairs: r.pairs }, family)))
            assert.deepEqual(v, { delivered: true, plaintext: false }, `${family} ${pair}`);
      } finally {
        await run("ip", ["-n", "pc-node-1", "rule", "del", "priority", "100"]);
      }
    });
  },
);
