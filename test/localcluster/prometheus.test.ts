/**
 * The leak detector and the alerts on a real local cluster with a real Prometheus
 * (`cluster up --prometheus`):
 * - every metric deploy/monitoring's rules name is exported by a running agent or controller
 *   (scraped through the relays Prometheus itself uses), and every daemon is scraped (`up` 1).
 */
import assert from "node:assert/strict";
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
    before(async () => {
      const up = await podcrypt(["cluster", "up", "--prometheus", "--timeout", "150"]);
      assert.equal(up.code, 0, up.stderr);
    });
    after(async () => {
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
      const config = readFileSync(join(home, "prometheus", "prometheus.yml"), "utf8");
      const ports = [...config.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => m[1]!);
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
  },
);
