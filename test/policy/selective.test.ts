// test-tier: netns (root: network namespaces)
/**
 * Selective encryption end to end, in the local cluster, in both
 * modes: the StarlingX seed's IPsecPolicy applied unchanged encrypts kube-dns (udp/53, tcp/53,
 * tcp/9153) and leaves web (tcp/80) in plaintext; its update drops udp/53 without losing a packet
 * on the ports still selected (and without one of them crossing in plaintext meanwhile); its
 * deletion returns everything to plaintext. Invalid policies are refused, naming the field, while
 * traffic carries on untouched.
 */
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NETNS_PREFIX } from "../../src/localcluster/plan.js";
import { projectRoot } from "../../src/paths.js";
import { listNetns } from "../../src/platform/netns/netns.js";
import { clusterCli } from "../localcluster/run-cli.js";

const root = projectRoot();
const fixture = (f: string): string => join(root, "test/policy/fixtures", f);
const SEED = fixture("starlingx-ipsecpolicy.yaml");
const SEED_UPDATED = fixture("starlingx-ipsecpolicy-updated.yaml");

interface Check {
  family: "ipv4" | "ipv6";
  from: string;
  to: string;
  protocol: string;
  port: number;
  service?: string;
  selected: boolean;
  delivered: boolean;
  plaintextSeen: boolean;
  sent: number;
  echoed: number;
}
interface Verify {
  ok: boolean;
  selective: boolean;
  pairs: Check[];
}

const CONFIG = (mode: string, ipFamily = "ipv4"): string => `mode: ${mode}
encryption: selective
ipFamily: ${ipFamily}
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

/** Invalid policies, each with the error it must give (the field named). */
const INVALID: Array<{ what: string; rule: string; error: RegExp }> = [
  { what: "bad port syntax", rule: "serviceports: udp53", error: /serviceports: .*udp53/ },
  { what: "unknown protocol", rule: "serviceports: foo/53", error: /serviceports: .*"foo"/ },
  { what: "a protocol without ports", rule: "serviceports: icmp/53", error: /serviceports: .*icmp/ },
  { what: "port 0", rule: "serviceports: tcp/0", error: /serviceports: port 0 is out of range 1-65535/ },
  {
    what: "port above 65535",
    rule: "serviceports: tcp/65536",
    error: /serviceports: port 65536 is out of range/,
  },
  { what: "missing service name", rule: "servicename: null", error: /servicename: / },
  { what: "missing namespace", rule: "servicens: null", error: /servicens: is missing/ },
];

function invalidPolicy(rule: string): string {
  const fields: Record<string, string> = {
    servicename: "servicename: kube-dns",
    servicens: "servicens: kube-system",
    serviceports: "serviceports: udp/53",
  };
  const key = rule.split(":")[0]!;
  fields[key] = rule;
  const body = Object.values(fields)
    .filter((l) => !l.endsWith(": null"))
    .map((l) => `      ${l}`)
    .join("\n");
  return `apiVersion: starlingx.io/v1\nkind: IPsecPolicy\nmetadata: {name: broken}\nspec:\n  policies:\n    - name: r1\n${body}\n`;
}

const DUPLICATE = `apiVersion: starlingx.io/v1
kind: IPsecPolicy
metadata: {name: twice}
spec:
  policies:
    - {name: same, servicename: web, servicens: default, serviceports: tcp/80}
    - {name: same, servicename: kube-dns, servicens: kube-system, serviceports: tcp/53}
`;

const busy = (await listNetns()).some((n) => n.startsWith(NETNS_PREFIX));

for (const mode of ["wireguard", "ipsec"] as const) {
  describe(
    `selective encryption in the local cluster (${mode})`,
    { skip: busy ? "a local cluster is already running on this machine" : false },
    () => {
      const { home, podcrypt } = clusterCli(`selective-${mode}`);
      const verify = async (seconds = 2, count = 5): Promise<Verify> =>
        JSON.parse(
          (await podcrypt(["verify", "--json", "--seconds", String(seconds), "--count", String(count)]))
            .stdout,
        ) as Verify;
      /** Hash every node shows once a policy change is in force everywhere. */
      const selection = async (): Promise<string[]> => {
        const s = JSON.parse((await podcrypt(["status", "--json"])).stdout) as {
          nodes: Array<{ selection?: string }>;
        };
        return s.nodes.map((n) => n.selection ?? "");
      };
      /** Waits until every node installed a selector set other than `previous` (the same one everywhere). */
      const settledAfter = async (previous: string): Promise<string> => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const hashes = await selection();
          if (hashes.every((h) => h === hashes[0] && h !== previous && h !== "")) return hashes[0]!;
          if (Date.now() > deadline) throw new Error(`selection did not settle: ${hashes.join(", ")}`);
          await new Promise((r) => setTimeout(r, 300));
        }
      };
      const byPort = (v: Verify, protocol: string, port: number): Check[] =>
        v.pairs.filter((p) => p.protocol === protocol && p.port === port);
      let current = "";

      before(async () => {
        const config = join(home, "cluster.yaml");
        writeFileSync(config, CONFIG(mode));
        const up = await podcrypt(["cluster", "up", "--config", config, "--timeout", "150"]);
        assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
        current = (await selection())[0] ?? "";
      });
      after(async () => {
        await podcrypt(["cluster", "down"]);
        rmSync(home, { recursive: true, force: true });
      });

      it("the seed's IPsecPolicy, unchanged: kube-dns only as ciphertext, web in plaintext", async () => {
        const a = await podcrypt(["policy", "apply", "-f", SEED]);
        assert.equal(a.code, 0, a.stderr);
        current = await settledAfter(current);
        const v = await verify();
        assert.equal(v.selective, true);
        for (const [protocol, port] of [
          ["udp", 53],
          ["tcp", 53],
          ["tcp", 9153],
        ] as const) {
          const checks = byPort(v, protocol, port);
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
        const web = byPort(v, "tcp", 80);
        assert.equal(web.length, 2);
        for (const c of web)
          assert.deepEqual(
            [c.selected, c.delivered, c.plaintextSeen],
            [false, true, true],
            JSON.stringify(c),
          );
        assert.equal(v.ok, true);
      });

      it("verify --via-agents gives the namespace verify's verdict for every check: selected ports encrypted, unselected in plaintext, reported as such", async () => {
        const r = await podcrypt(["verify", "--json", "--via-agents"]);
        const agents = JSON.parse(r.stdout) as Verify;
        assert.equal(r.code, 0, r.stderr);
        assert.equal(agents.selective, true);
        const key = (c: Check) => `${c.from}->${c.to} ${c.protocol}/${c.port}`;
        const verdicts = (v: Verify, services: boolean) =>
          Object.fromEntries(
            v.pairs
              .filter((c) => (c.service !== undefined) === services)
              .map((c) => [key(c), [c.service, c.selected, c.delivered, c.plaintextSeen]]),
          );
        const ns = await verify();
        // Every service port of a pod on another node, as the namespace verify probes them.
        assert.equal(Object.keys(verdicts(agents, true)).length, 14);
        assert.deepEqual(verdicts(agents, true), verdicts(ns, true));
        // A selected port and an unselected one among them, each as it should be.
        assert.deepEqual(verdicts(agents, true)["node-1->node-2 udp/53"], [
          "kube-system/kube-dns",
          true,
          true,
          false,
        ]);
        assert.deepEqual(verdicts(agents, true)["node-2->node-1 tcp/80"], ["default/web", false, true, true]);
        // The probe endpoints' echo between every ordered pair: no policy selects it.
        const echo = Object.values(verdicts(agents, false));
        assert.equal(echo.length, 6);
        for (const v of echo) assert.deepEqual(v, [undefined, false, true, true]);
        const text = await podcrypt(["verify", "--via-agents"]);
        assert.equal(text.code, 0, text.stderr);
        assert.match(
          text.stdout,
          /node-1 → node-2 (ipv4 )?udp\/53 \(kube-system\/kube-dns\) +delivered .*encrypted \(marker not seen/,
        );
        assert.match(
          text.stdout,
          /node-2 → node-1 (ipv4 )?tcp\/80 \(default\/web\) +delivered .*not selected: plaintext, as expected/,
        );
      });

      it("the seed's update drops udp/53: only udp/53 turns plaintext, 0 lost, tcp never in plaintext", async () => {
        const traffic = verify(14, 1400);
        await new Promise((r) => setTimeout(r, 4000));
        const a = await podcrypt(["policy", "apply", "-f", SEED_UPDATED]);
        assert.equal(a.code, 0, a.stderr);
        assert.match(a.stdout, /updated/);
        current = await settledAfter(current);
        const during = await traffic;
        for (const c of during.pairs) {
          assert.equal(
            c.echoed,
            c.sent,
            `lost ${c.sent - c.echoed} of ${c.from}->${c.to} ${c.protocol}/${c.port}`,
          );
          if (c.protocol === "tcp" && (c.port === 53 || c.port === 9153))
            assert.equal(c.plaintextSeen, false, `${c.from}->${c.to} tcp/${c.port} crossed in plaintext`);
        }
        assert.ok(
          byPort(during, "udp", 53).every((c) => c.plaintextSeen),
          "udp/53 went plaintext during the run",
        );
        const v = await verify();
        for (const c of byPort(v, "udp", 53)) assert.deepEqual([c.selected, c.plaintextSeen], [false, true]);
        for (const c of [...byPort(v, "tcp", 53), ...byPort(v, "tcp", 9153)])
          assert.deepEqual([c.selected, c.plaintextSeen], [true, false]);
        assert.equal(v.ok, true);
      });

      if (mode === "wireguard") {
        it("invalid policies are refused, naming the field, and traffic is unaffected", async () => {
          const traffic = verify(10, 1000);
          for (const bad of [
            ...INVALID,
            { what: "duplicate rule names", rule: "", error: /duplicate rule name "same"/ },
          ]) {
            const file = join(home, "bad.yaml");
            writeFileSync(file, bad.rule === "" ? DUPLICATE : invalidPolicy(bad.rule));
            const r = await podcrypt(["policy", "apply", "-f", file]);
            assert.equal(r.code, 1, `${bad.what} must be refused`);
            assert.match(r.stderr, bad.error, `${bad.what}: ${r.stderr}`);
          }
          const l = JSON.parse((await podcrypt(["policy", "list", "--json"])).stdout) as {
            policies: Array<{ key: string }>;
          };
          assert.deepEqual(
            l.policies.map((p) => p.key),
            ["ipsecpolicy-kube-dns-sample"],
            "nothing stored",
          );
          assert.deepEqual(
            await selection(),
            [current, current, current],
            "the installed selection is unchanged",
          );
          const v = await traffic;
          for (const c of v.pairs) {
            assert.equal(
              c.echoed,
              c.sent,
              `lost ${c.sent - c.echoed} of ${c.from}->${c.to} ${c.protocol}/${c.port}`,
            );
            if (c.selected)
              assert.equal(c.plaintextSeen, false, `${c.from}->${c.to} ${c.protocol}/${c.port}`);
          }
        });
      }

      it("deleting the policy returns all traffic to plaintext, losing nothing", async () => {
        const d = await podcrypt(["policy", "delete", "ipsecpolicy-kube-dns-sample"]);
        assert.equal(d.code, 0, d.stderr);
        current = await settledAfter(current);
        const v = await verify();
        assert.equal(v.ok, true, JSON.stringify(v.pairs.filter((p) => !p.delivered)));
        for (const c of v.pairs)
          assert.deepEqual([c.selected, c.plaintextSeen], [false, true], JSON.stringify(c));
      });
    },
  );
}

// Dual-stack pods: the selected table routes both families' pod CIDRs, and marked packets of
// either family must look it up (`ip rule` and `ip -6 rule`): without the IPv6 rule, the selected
// ports' IPv6 traffic would leave in plaintext (and strict mode would drop it).
describe(
  "selective encryption of dual-stack pods in the local cluster (wireguard)",
  { skip: busy ? "a local cluster is already running on this machine" : false },
  () => {
    const { home, podcrypt } = clusterCli("selective-dual");
    after(async () => {
      await podcrypt(["cluster", "down"]);
      rmSync(home, { recursive: true, force: true });
    });

    it("the seed's IPsecPolicy: kube-dns only as ciphertext and web in plaintext, in both families", async () => {
      const config = join(home, "cluster.yaml");
      writeFileSync(config, CONFIG("wireguard", "dual"));
      const up = await podcrypt(["cluster", "up", "--config", config, "--timeout", "150"]);
      assert.equal(up.code, 0, `cluster up failed: ${up.stderr}`);
      const hashes = async (): Promise<string[]> =>
        (
          JSON.parse((await podcrypt(["status", "--json"])).stdout) as {
            nodes: Array<{ selection?: string }>;
          }
        ).nodes.map((n) => n.selection ?? "");
      const before = (await hashes())[0] ?? "";
      const a = await podcrypt(["policy", "apply", "-f", SEED]);
      assert.equal(a.code, 0, a.stderr);
      for (const deadline = Date.now() + 30_000; ;) {
        const h = await hashes();
        if (h.every((x) => x === h[0] && x !== before && x !== "")) break;
        if (Date.now() > deadline) throw new Error(`selection did not settle: ${h.join(", ")}`);
        await new Promise((r) => setTimeout(r, 300));
      }
      const r = await podcrypt(["verify", "--json", "--seconds", "2", "--count", "5"]);
      const v = JSON.parse(r.stdout) as Verify;
      for (const family of ["ipv4", "ipv6"] as const) {
        const of = (protocol: string, port: number) =>
          v.pairs.filter((p) => p.family === family && p.protocol === protocol && p.port === port);
        for (const [protocol, port] of [
          ["udp", 53],
          ["tcp", 53],
          ["tcp", 9153],
        ] as const) {
          assert.equal(
            of(protocol, port).length,
            4,
            `${family} ${protocol}/${port}: every node to the others' dns pods`,
          );
          for (const c of of(protocol, port))
            assert.deepEqual(
              [c.selected, c.delivered, c.plaintextSeen],
              [true, true, false],
              JSON.stringify(c),
            );
        }
        assert.equal(of("tcp", 80).length, 2, `${family} tcp/80`);
        for (const c of of("tcp", 80))
          assert.deepEqual(
            [c.selected, c.delivered, c.plaintextSeen],
            [false, true, true],
            JSON.stringify(c),
          );
      }
      assert.equal(v.ok, true, r.stdout);
    });
  },
);
