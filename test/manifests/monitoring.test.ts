/**
 * deploy/monitoring/: the alerting rules pass `promtool check rules`, each alert fires on the
 * series it is meant for and stays silent on healthy ones (`promtool test rules`), and every
 * metric the rules and the dashboard name is one the agent or the controller exports. (That the
 * names are on a running agent and controller, and that an alert fires in a real Prometheus, is
 * test/localcluster/prometheus.test.ts.)
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { ManualClock } from "../../src/clock.js";
import { alertRules } from "../../src/cli/manifests/monitoring.js";
import { FakeDataplane } from "../support/fake-dataplane/backend.js";
import { instrumentBackend } from "../../src/health/backend-probe.js";
import { Reachability } from "../../src/health/datastore-probe.js";
import { agentRegistry, controllerRegistry } from "../../src/health/metrics.js";
import { projectRoot } from "../../src/paths.js";

const RULES = join(projectRoot(), "deploy", "monitoring", "podcrypt.rules.yaml");
const DASHBOARD = join(projectRoot(), "deploy", "monitoring", "podcrypt-dashboard.json");

function promtool(args: string[]): { status: number | null; out: string } {
  const r = spawnSync("promtool", args, { encoding: "utf8", timeout: 60_000 });
  if (r.error !== undefined)
    throw new Error(`promtool: ${r.error.message} (Debian package prometheus; scripts/setup.sh installs it)`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** The podcrypt_* metric names in a PromQL expression. */
const metricNames = (expr: string): string[] => [...expr.matchAll(/\bpodcrypt_[a-z_]+\b/g)].map((m) => m[0]);

/** Every metric name the two daemons' registries define. */
async function exportedNames(): Promise<Set<string>> {
  const clock = new ManualClock(0, Date.parse("2026-01-01T00:00:00Z"));
  const { backend, record } = instrumentBackend(new FakeDataplane({ clock }), clock);
  const reach = new Reachability(clock);
  const agent = agentRegistry({
    node: "n",
    clock,
    backend,
    record,
    reach,
    choice: { wireguard: "userspace", ipsec: "userspace" },
    drops: { wireguardUserspace: [], espUserspace: undefined, kernelXfrm: false },
  });
  const controller = controllerRegistry(
    () => ({
      campaigning: true,
      leader: true,
      lastStepOkAt: undefined,
      failingSince: undefined,
      stepFailures: 0,
      policyStatusWrites: 0,
      policyStatusFailures: 0,
      runsCompleted: 0,
      runsFailed: 0,
      phaseTimeouts: 0,
    }),
    reach,
    clock,
  );
  return new Set([...agent.getMetricsAsArray(), ...controller.getMetricsAsArray()].map((m) => m.name));
}

describe("deploy/monitoring", () => {
  const tmp = mkdtempSync(join(tmpdir(), "podcrypt-rules-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("promtool check rules passes", () => {
    const r = promtool(["check", "rules", RULES]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, new RegExp(`SUCCESS: ${alertRules().length} rules found`));
  });

  it("every metric the rules and the dashboard name is exported by the agent or the controller", async () => {
    const exported = await exportedNames();
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
      panels: Array<{ targets: Array<{ expr: string }> }>;
    };
    const named = new Set([
      ...alertRules().flatMap((r) => metricNames(r.expr)),
      ...dashboard.panels.flatMap((p) => p.targets.flatMap((t) => metricNames(t.expr))),
    ]);
    assert.ok(named.size >= 10, [...named].join(", "));
    const missing = [...named].filter((n) => !exported.has(n));
    assert.deepEqual(missing, [], `named but not exported: ${missing.join(", ")}`);
  });

  it("each alert fires on its symptom and not on a healthy cluster (promtool test rules)", () => {
    const bare = join(tmp, "podcrypt.rules.yaml");
    const series = (s: string, values: string) => ({ series: s, values });
    const alert = (name: string, at: string, labels: Record<string, string>[]) => ({
      eval_time: at,
      alertname: name,
      exp_alerts: labels.map((l) => ({ exp_labels: l })),
    });
    const agent = 'instance="node-1:9809"';
    const test = {
      rule_files: [bare],
      evaluation_interval: "15s",
      tests: [
        {
          interval: "15s",
          input_series: [
            // node-1 drops traffic to node-2 (its tunnel is down); node-3's counter stays flat.
            series(
              `podcrypt_plaintext_dropped_packets_total{${agent},peer="node-2",direction="out"}`,
              "0 0 5 20 40 40",
            ),
            series(`podcrypt_plaintext_dropped_packets_total{${agent},peer="node-3",direction="out"}`, "3x6"),
            series(
              `podcrypt_plaintext_dropped_packets_total{${agent},peer="node-3",direction="in"}`,
              "0 0 0 2 2 2",
            ),
            series(
              `podcrypt_peer_latest_handshake_age_seconds{${agent},peer="node-2",epoch="4",ifname="podcrypt0"}`,
              "250+15x20",
            ),
            series(
              `podcrypt_peer_latest_handshake_age_seconds{${agent},peer="node-3",epoch="4",ifname="podcrypt0"}`,
              "30x20",
            ),
            series('podcrypt_cluster_phase_seconds{instance="controller:9808",phase="switch"}', "280+15x20"),
            series(`podcrypt_esp_sa_sequence{${agent},peer="node-2",epoch="4",ifname="pc"}`, "3900000000x4"),
            series(
              `podcrypt_esp_sa_sequence_limit{${agent},peer="node-2",epoch="4",ifname="pc"}`,
              "4294967295x4",
            ),
            series(`podcrypt_esp_sa_sequence{${agent},peer="node-3",epoch="4",ifname="pc"}`, "1000x4"),
            series(
              `podcrypt_esp_sa_sequence_limit{${agent},peer="node-3",epoch="4",ifname="pc"}`,
              "4294967295x4",
            ),
            series(
              `podcrypt_dataplane_dropped_packets_total{${agent},dataplane="xfrm",layer="kernel",ifname="",reason="XfrmOutStateSeqError"}`,
              "0 0 1 1",
            ),
            series('podcrypt_controller_phase_timeouts_total{instance="controller:9808"}', "0 0 1 1"),
            series('podcrypt_controller_runs_failed_total{instance="controller:9808"}', "0 0 0 1"),
          ],
          alert_rule_test: [
            alert("PodcryptPlaintextDropped", "15s", []),
            alert("PodcryptPlaintextDropped", "45s", [
              { severity: "critical", instance: "node-1:9809", peer: "node-2" },
            ]),
            alert("PodcryptPlaintextReceived", "30s", []),
            alert("PodcryptPlaintextReceived", "60s", [
              { severity: "critical", instance: "node-1:9809", peer: "node-3" },
            ]),
            // Past 300 s at 60 s, firing once that held for 1 minute.
            alert("PodcryptHandshakeStale", "60s", []),
            alert("PodcryptHandshakeStale", "3m", [
              {
                severity: "warning",
                instance: "node-1:9809",
                peer: "node-2",
                epoch: "4",
                ifname: "podcrypt0",
              },
            ]),
            alert("PodcryptRotationStuck", "15s", []),
            alert("PodcryptRotationStuck", "3m", [{ severity: "warning", phase: "switch" }]),
            alert("PodcryptSequenceNearExhaustion", "30s", [
              { severity: "critical", instance: "node-1:9809", peer: "node-2", epoch: "4", ifname: "pc" },
            ]),
            alert("PodcryptXfrmSequenceErrors", "15s", []),
            alert("PodcryptXfrmSequenceErrors", "45s", [
              {
                severity: "warning",
                instance: "node-1:9809",
                dataplane: "xfrm",
                layer: "kernel",

                reason: "XfrmOutStateSeqError",
              },
            ]),
            alert("PodcryptNodeNotAcknowledging", "15s", []),
            alert("PodcryptNodeNotAcknowledging", "45s", [
              { severity: "warning", instance: "controller:9808" },
            ]),
            alert("PodcryptRotationFailed", "30s", []),
            alert("PodcryptRotationFailed", "60s", [{ severity: "warning", instance: "controller:9808" }]),
          ],
        },
      ],
    };
    // The deployed rules with their annotations left out (promtool compares those as rendered
    // text; their templates are checked by `check rules` above): expressions, durations, labels as shipped.
    const shipped = parse(readFileSync(RULES, "utf8")) as {
      groups: Array<{ rules: Array<Record<string, unknown>> }>;
    };
    for (const g of shipped.groups) for (const r of g.rules) delete r["annotations"];
    writeFileSync(bare, stringify(shipped, { lineWidth: 0 }));
    const file = join(tmp, "podcrypt.test.yaml");
    writeFileSync(file, stringify(test, { lineWidth: 0 }));
    const r = promtool(["test", "rules", file]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });
});
