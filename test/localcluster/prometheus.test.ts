/**
 * The leak detector and the alerts on a real local cluster with a real Prometheus
 * (`cluster up --prometheus`):
 * - every metric deploy/monitoring's rules name is exported by a running agent or controller
 *   (scraped through the relays Prometheus itself uses), and every daemon is scraped (`up` 1);
 * - a node added with `cluster add-node` is scraped without a restart, and dropped on `remove-node`;
 * - with node-1's tunnel daemon stopped under traffic to node-2, node-1's strict-mode drop
 *   counter for node-2 grows, no pod packet crosses the underlay in plaintext (tshark on the
 *   fabric), and PodcryptPlaintextDropped fires in that Prometheus.
 *
 * Stopping the daemon: SIGSTOP, so neither the agent's daemon watch nor the supervisor replaces
 * it, and its interface set down, which takes the routes through it away as when a daemon dies
 * and its TUN device goes. The node gets a default route on the underlay, as every real node has
 * (the local cluster's nodes have none, so without it the packets would find no route at all):
 * that is the path on which strict mode is the last line.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { alertRules } from "../../src/cli/manifests/monitoring.js";
import { prometheusGet, PROMETHEUS_NETNS } from "../../src/localcluster/prometheus.js";
import { readClusterState } from "../../src/localcluster/state.js";
import { run, runIn } from "../../src/platform/netns/netns.js";
import { clusterBusy, clusterCli } from "./run-cli.js";

const busy = await clusterBusy();
const { home, podcrypt } = clusterCli("prometheus");
after(() => rmSync(home, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GET from inside Prometheus' namespace (the relays listen there). */
async function getIn(url: string): Promise<string> {
  const script = `fetch(${JSON.stringify(url)}).then(async (r) => process.stdout.write(await r.text()))`;
  return runIn(PROMETHEUS_NETNS, process.execPath, ["-e", script]);
}

interface PromVector {
  data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

async function query(q: string): Promise<PromVector["data"]["result"]> {
  return (JSON.parse(await prometheusGet(`/api/v1/query?query=${encodeURIComponent(q)}`)) as PromVector).data
    .result;
}

async function until<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}

describe(
  "cluster up --prometheus: metrics, the leak detector and an alert firing",
  { skip: busy ? "a local cluster is already running on this machine" : false },
  () => {
    const children = new Set<ChildProcess>();
    let frozen: number | undefined;
    before(async () => {
      const up = await podcrypt(["cluster", "up", "--prometheus", "--timeout", "150"]);
      assert.equal(up.code, 0, up.stderr);
    });
    after(async () => {
      if (frozen !== undefined) process.kill(frozen, "SIGCONT");
      for (const c of children) c.kill("SIGKILL");
      const down = await podcrypt(["cluster", "down"]);
      assert.equal(down.code, 0, down.stderr);
      const left = (await run("ip", ["netns", "list"]))
        .split("\n")
        .filter((l) => l.startsWith(PROMETHEUS_NETNS));
      assert.deepEqual(left, [], "cluster down removes Prometheus' namespace");
    });

    it("scrapes every agent and controller; every metric the rules name is exported", async () => {
      const state = readClusterState(home)!;
      const expected = [...state.plan.nodes.map((n) => n.name), "controller-a", "controller-b"];
      const upTargets = await until("every target scraped", 30_000, async () => {
        const r = await query("up == 1");
        return r.length >= expected.length ? r : undefined;
      });
      for (const name of state.plan.nodes.map((n) => n.name))
        assert.ok(
          upTargets.some((t) => t.metric["instance"] === name && t.metric["job"] === "podcrypt-agent"),
          name,
        );
      assert.equal(upTargets.filter((t) => t.metric["job"] === "podcrypt-controller").length, 2);
      // The controllers' targets are in the configuration, the agents' in the file it watches.
      const config = ["prometheus.yml", "agents.json"]
        .map((f) => readFileSync(join(home, "prometheus", f), "utf8"))
        .join("\n");
      const ports = [...config.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => m[1]!);
      assert.equal(ports.length, expected.length, "one target per agent and controller");
      const texts = await Promise.all(ports.map((p) => getIn(`http://127.0.0.1:${p}/metrics`)));
      const exported = new Set(texts.flatMap((t) => [...t.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!)));
      const named = [
        ...new Set(alertRules().flatMap((r) => [...r.expr.matchAll(/\bpodcrypt_[a-z_]+/g)].map((m) => m[0]))),
      ];
      assert.deepEqual(
        named.filter((n) => !exported.has(n)),
        [],
        "metrics the rules name that no running daemon exports",
      );
    });

    it("a node added later is scraped without a restart, and a removed one no more", async () => {
      const agentUp = async (name: string) =>
        (await query(`up{job="podcrypt-agent",instance="${name}"}`))[0]?.value[1];
      const added = await podcrypt(["cluster", "add-node", "--timeout", "120"]);
      assert.equal(added.code, 0, added.stderr);
      const state = readClusterState(home)!;
      const name = state.plan.nodes.at(-1)!.name;
      await until(`${name}'s agent scraped`, 30_000, async () =>
        (await agentUp(name)) === "1" ? true : undefined,
      );
      const removed = await podcrypt(["cluster", "remove-node", name, "--timeout", "120"]);
      assert.equal(removed.code, 0, removed.stderr);
      await until(`${name} no longer a target`, 30_000, async () => {
        const targets = JSON.parse(await prometheusGet("/api/v1/targets?state=active")) as {
          data: { activeTargets: Array<{ labels: Record<string, string> }> };
        };
        return targets.data.activeTargets.some((t) => t.labels["instance"] === name) ? undefined : true;
      });
    });

    it("a node's tunnel daemon stopped under traffic: drops grow, nothing crosses in plaintext, the alert fires", async () => {
      const state = readClusterState(home)!;
      const [n1, n2] = state.plan.nodes;
      const from = state.plan.pods.find((p) => p.node === n1!.name)!;
      const to = state.plan.pods.find((p) => p.node === n2!.name)!;
      // The generation interface node-1 sends to node-2 through, and the daemon behind it.
      const route = JSON.parse(await runIn(n1!.netns, "ip", ["-j", "route", "get", to.ip])) as Array<{
        dev: string;
      }>;
      const dev = route[0]!.dev;
      assert.match(dev, /^pc\d+w[01]$/, `node-1 routes ${to.ip} through a tunnel`);
      const pids = (await run("ip", ["netns", "pids", n1!.netns])).split(/\s+/).filter(Boolean).map(Number);
      const daemon = pids.find((pid) => {
        try {
          const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
          return argv.includes("wireguard") && argv.includes(dev);
        } catch {
          return false;
        }
      });
      assert.ok(daemon !== undefined, `the daemon of ${dev} runs in ${n1!.netns}`);
      // As on a real node: a default route on the underlay.
      await runIn(n1!.netns, "ip", ["route", "add", "default", "dev", "eth0"]);

      // Everything on the fabric with a pod address, in the clear.
      const pcap = join(home, "fabric.pcap");
      const capture = spawn(
        "ip",
        [
          "netns",
          "exec",
          state.plan.fabric.netns,
          "tshark",
          "-q",
          "-n",
          "-i",
          state.plan.fabric.bridge,
          "-w",
          pcap,
          "-f",
          "net 10.244.0.0/16",
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      children.add(capture);
      let captureLog = "";
      capture.stderr!.on("data", (d: Buffer) => (captureLog += d.toString()));
      await until("tshark capturing", 20_000, async () =>
        /Capturing on/.test(captureLog) ? true : undefined,
      );

      const dropped = async (): Promise<number> => {
        const r = await query(
          `podcrypt_plaintext_dropped_packets_total{instance="${n1!.name}",peer="${n2!.name}",direction="out"}`,
        );
        return r.length === 0 ? -1 : Number(r[0]!.value[1]);
      };
      const before = await until("the drop counter scraped", 30_000, async () => {
        const v = await dropped();
        return v >= 0 ? v : undefined;
      });
      assert.equal(before, 0, "no drops while the tunnel is up");

      // Traffic from node-1's pod to node-2's pod, 100 packets a second.
      const ping = spawn(
        "ip",
        ["netns", "exec", from.netns, "ping", "-n", "-q", "-i", "0.01", "-w", "60", to.ip],
        {
          stdio: "ignore",
        },
      );
      children.add(ping);
      await sleep(1000);
      process.kill(daemon, "SIGSTOP");
      frozen = daemon;
      // Down, and kept down: the agent may set the interface up again on a pass (its daemon is
      // there, only frozen); a dead daemon's interface would stay gone.
      const down = () => runIn(n1!.netns, "ip", ["link", "set", dev, "down"]).catch(() => "");
      await down();
      const keepDown = setInterval(() => void down(), 500);
      let grown: number;
      try {
        grown = await until("node-1's drops to node-2 in Prometheus", 30_000, async () => {
          const v = await dropped();
          return v > 0 ? v : undefined;
        });
      } catch (e) {
        const look = await Promise.all([
          runIn(n1!.netns, "ip", ["route"]).catch((x: Error) => x.message),
          runIn(n1!.netns, "ip", ["link", "show", "dev", dev]).catch((x: Error) => x.message),
          runIn(n1!.netns, "nft", ["list", "table", "inet", "podcrypt"]).catch((x: Error) => x.message),
        ]);
        throw new Error(`${(e as Error).message}\n${look.join("\n")}`);
      } finally {
        clearInterval(keepDown);
      }
      const alert = await until("PodcryptPlaintextDropped firing", 60_000, async () => {
        const alerts = JSON.parse(await prometheusGet("/api/v1/alerts")) as {
          data: { alerts: Array<{ labels: Record<string, string>; state: string }> };
        };
        return alerts.data.alerts.find(
          (a) =>
            a.labels["alertname"] === "PodcryptPlaintextDropped" &&
            a.labels["instance"] === n1!.name &&
            a.labels["peer"] === n2!.name &&
            a.state === "firing",
        );
      });
      assert.equal(alert.labels["severity"], "critical");
      // The same count in status, from node-1's record.
      const status = await until("status showing the drops", 20_000, async () => {
        const s = JSON.parse((await podcrypt(["status", "--json"])).stdout) as {
          nodes: Array<{
            name: string;
            plaintextDrops?: Array<{ peer: string; direction: string; packets: number }>;
          }>;
        };
        const d = s.nodes
          .find((n) => n.name === n1!.name)
          ?.plaintextDrops?.find((x) => x.peer === n2!.name && x.direction === "out");
        return d !== undefined && d.packets > 0 ? d : undefined;
      });

      ping.kill("SIGKILL");
      await sleep(500);
      capture.kill("SIGINT");
      await new Promise((r) => capture.once("exit", r));
      const crossed = (
        await run("tshark", ["-n", "-r", pcap, "-Y", "ip.src == 10.244.0.0/16 || ip.dst == 10.244.0.0/16"])
      )
        .split("\n")
        .filter(Boolean);
      assert.deepEqual(crossed, [], "no pod packet crossed the underlay in plaintext");
      process.stdout.write(
        `# ${n1!.name} -> ${n2!.name} dropped by strict mode: ${grown} packets (Prometheus), ${status.packets} (status); plaintext on the fabric: 0\n`,
      );
    });
  },
);
