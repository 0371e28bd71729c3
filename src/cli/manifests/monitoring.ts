/**
 * The monitoring half of deploy/: Prometheus alerting rules and a Grafana dashboard over the
 * daemons' metrics (src/health/metrics.ts; docs/metrics.md explains each). Written by `podcrypt
 * manifests --kustomize-dir deploy` into deploy/monitoring/, outside the kustomization's
 * resources: they are loaded into Prometheus (`rule_files`, or a PrometheusRule's `spec.groups`)
 * and Grafana (dashboard import), not applied to the cluster.
 */
import { stringify } from "yaml";

/** One alerting rule as Prometheus' rule files write it. */
interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: "critical" | "warning" };
  annotations: { summary: string; description: string };
}

/**
 * How long a WireGuard session may go without a handshake before the alert: sessions are renewed
 * every 2 minutes while packets flow and persistent keepalives keep them flowing, and a session
 * is unusable after 3 minutes (REJECT_AFTER_TIME, 180 s), so 5 minutes is a dead tunnel.
 */
export const STALE_HANDSHAKE_S = 300;
/**
 * A phase longer than this is stuck: the controller times a node out after 30 s in a phase and
 * goes on without it, so only a controller that cannot write (or none leading) stays this long.
 */
export const STUCK_PHASE_S = 300;
/**
 * Fraction of an SA's sequence numbers used before the alert: agents ask for a rotation at 3/4
 * (src/esp/sa.ts), so past 9/10 that rotation did not happen.
 */
export const SEQUENCE_ALERT_FRACTION = 0.9;

/** The alerting rules (group `podcrypt`), in the order docs/metrics.md lists them. */
export function alertRules(): AlertRule[] {
  return [
    {
      alert: "PodcryptPlaintextDropped",
      expr: 'sum by (instance, peer) (increase(podcrypt_plaintext_dropped_packets_total{direction="out"}[5m])) > 0',
      labels: { severity: "critical" },
      annotations: {
        summary: "Strict mode is dropping pod traffic that would have left unencrypted",
        description:
          "{{ $labels.instance }} dropped {{ $value | humanize }} packets to {{ $labels.peer }}'s pods in the last 5 minutes instead of sending them in plaintext: its tunnel to that peer is down (data-plane daemon stopped, interface gone, routes wrong). Nothing leaked, but that traffic is lost.",
      },
    },
    {
      alert: "PodcryptPlaintextReceived",
      expr: 'sum by (instance, peer) (increase(podcrypt_plaintext_dropped_packets_total{direction="in"}[5m])) > 0',
      labels: { severity: "critical" },
      annotations: {
        summary: "Pod traffic arrived in plaintext from a peer that should have encrypted it",
        description:
          "{{ $labels.instance }} received (and dropped) {{ $value | humanize }} plaintext packets from {{ $labels.peer }}'s pods in the last 5 minutes: that peer sends unencrypted, so its traffic crossed the network in the clear.",
      },
    },
    {
      alert: "PodcryptHandshakeStale",
      expr: `podcrypt_peer_latest_handshake_age_seconds > ${STALE_HANDSHAKE_S}`,
      for: "1m",
      labels: { severity: "warning" },
      annotations: {
        summary: "No WireGuard handshake with a peer for over 5 minutes",
        description:
          "{{ $labels.instance }} has had no handshake with {{ $labels.peer }} on {{ $labels.ifname }} (epoch {{ $labels.epoch }}) for {{ $value | humanizeDuration }}: the tunnel carries nothing.",
      },
    },
    {
      alert: "PodcryptRotationStuck",
      expr: `max by (phase) (podcrypt_cluster_phase_seconds) > ${STUCK_PHASE_S}`,
      for: "1m",
      labels: { severity: "warning" },
      annotations: {
        summary: "A key rotation is stuck in one phase",
        description:
          "The cluster has been in phase {{ $labels.phase }} for {{ $value | humanizeDuration }}; a phase normally ends within 30 s (nodes that do not acknowledge are timed out). Check that a controller leads and can write the ClusterEncryption.",
      },
    },
    {
      alert: "PodcryptSequenceNearExhaustion",
      expr: `podcrypt_esp_sa_sequence / podcrypt_esp_sa_sequence_limit > ${SEQUENCE_ALERT_FRACTION}`,
      labels: { severity: "critical" },
      annotations: {
        summary: "An ESP SA is close to the end of its sequence numbers",
        description:
          "{{ $labels.instance }}'s outbound SA to {{ $labels.peer }} (epoch {{ $labels.epoch }}) has used {{ $value | humanizePercentage }} of its sequence numbers; at the end it can send nothing. The early rotation asked for at 75% did not happen: run `podcrypt rotate`.",
      },
    },
    {
      alert: "PodcryptXfrmSequenceErrors",
      expr: 'increase(podcrypt_dataplane_dropped_packets_total{dataplane="xfrm",reason=~"XfrmOutStateSeqError|XfrmInStateSeqError"}[5m]) > 0',
      labels: { severity: "warning" },
      annotations: {
        summary: "The kernel's IPsec dropped packets for sequence-number errors",
        description:
          "{{ $labels.instance }}: {{ $labels.reason }} grew by {{ $value | humanize }} in 5 minutes (/proc/net/xfrm_stat): an SA ran out of sequence numbers or replays are arriving.",
      },
    },
    {
      alert: "PodcryptNodeNotAcknowledging",
      expr: "increase(podcrypt_controller_phase_timeouts_total[15m]) > 0",
      labels: { severity: "warning" },
      annotations: {
        summary: "A node did not acknowledge a phase of a key rotation in time",
        description:
          "The controller {{ $labels.instance }} timed out {{ $value | humanize }} node(s) in the last 15 minutes; they keep the old keys until they catch up. `podcrypt status` names them (timeouts, lagging).",
      },
    },
    {
      alert: "PodcryptRotationFailed",
      expr: "increase(podcrypt_controller_runs_failed_total[1h]) > 0",
      labels: { severity: "warning" },
      annotations: {
        summary: "A key rotation finished without every node",
        description:
          "{{ $value | humanize }} run(s) in the last hour finished with nodes timed out: those nodes lag behind on older keys.",
      },
    },
  ];
}

/** The rules file, as `promtool check rules` and Prometheus' `rule_files` read it. */
export function alertRulesFile(): string {
  return stringify({ groups: [{ name: "podcrypt", rules: alertRules() }] }, { lineWidth: 0 });
}

/** A Grafana time-series panel on `targets`, `w` by 8 at `x`, `y`. */
function panel(
  id: number,
  title: string,
  x: number,
  y: number,
  unit: string,
  targets: Array<{ expr: string; legend: string }>,
  description: string,
): Record<string, unknown> {
  return {
    id,
    type: "timeseries",
    title,
    description,
    datasource: { type: "prometheus", uid: "${datasource}" },
    gridPos: { h: 8, w: 12, x, y },
    fieldConfig: { defaults: { unit }, overrides: [] },
    options: { legend: { displayMode: "list", placement: "bottom" }, tooltip: { mode: "multi" } },
    targets: targets.map((t, i) => ({
      refId: String.fromCharCode(65 + i),
      datasource: { type: "prometheus", uid: "${datasource}" },
      expr: t.expr,
      legendFormat: t.legend,
    })),
  };
}

/** The Grafana dashboard (import into Grafana 9 or later; pick the Prometheus data source). */
export function grafanaDashboard(): Record<string, unknown> {
  const panels = [
    panel(
      1,
      "Plaintext dropped by strict mode (packets/s)",
      0,
      0,
      "pps",
      [
        {
          expr: 'sum by (instance, peer) (rate(podcrypt_plaintext_dropped_packets_total{direction="out"}[$__rate_interval]))',
          legend: "{{instance}} → {{peer}} (would have left in plaintext)",
        },
        {
          expr: 'sum by (instance, peer) (rate(podcrypt_plaintext_dropped_packets_total{direction="in"}[$__rate_interval]))',
          legend: "{{instance}} ← {{peer}} (arrived in plaintext)",
        },
      ],
      "The leak detector: anything above zero is traffic a tunnel did not carry.",
    ),
    panel(
      2,
      "Latest WireGuard handshake age",
      12,
      0,
      "s",
      [
        {
          expr: "podcrypt_peer_latest_handshake_age_seconds",
          legend: "{{instance}} → {{peer}} ({{ifname}})",
        },
      ],
      `Above ${STALE_HANDSHAKE_S} s the tunnel to that peer is dead.`,
    ),
    panel(
      3,
      "Key epoch and phase",
      0,
      8,
      "short",
      [
        { expr: "max(podcrypt_cluster_epoch)", legend: "epoch in force" },
        { expr: "max(podcrypt_cluster_target_epoch)", legend: "target epoch (run in progress)" },
        { expr: "max by (phase) (podcrypt_cluster_phase_seconds)", legend: "seconds in {{phase}}" },
      ],
      "The phased key protocol: prepare, switch, retire.",
    ),
    panel(
      4,
      "Runs (rotations, enable, disable)",
      12,
      8,
      "short",
      [
        { expr: "sum(increase(podcrypt_controller_runs_completed_total[1h]))", legend: "completed / h" },
        {
          expr: "sum(increase(podcrypt_controller_runs_failed_total[1h]))",
          legend: "with nodes timed out / h",
        },
        { expr: "sum(increase(podcrypt_controller_phase_timeouts_total[1h]))", legend: "node timeouts / h" },
      ],
      "Counted by the leading controller.",
    ),
    panel(
      5,
      "ESP sequence numbers used",
      0,
      16,
      "percentunit",
      [
        {
          expr: "podcrypt_esp_sa_sequence / podcrypt_esp_sa_sequence_limit",
          legend: "{{instance}} → {{peer}} (epoch {{epoch}})",
        },
      ],
      "Userspace ESP: agents ask for a rotation at 75%.",
    ),
    panel(
      6,
      "Kernel XFRM errors (/proc/net/xfrm_stat)",
      12,
      16,
      "pps",
      [
        {
          expr: 'rate(podcrypt_dataplane_dropped_packets_total{dataplane="xfrm"}[$__rate_interval]) > 0',
          legend: "{{instance}} {{reason}}",
        },
      ],
      "As Cilium's cilium_ipsec_xfrm_error; node-wide counters.",
    ),
    panel(
      7,
      "Tunnel throughput",
      0,
      24,
      "Bps",
      [
        {
          expr: "sum by (instance, peer) (rate(podcrypt_peer_transmit_bytes_total[$__rate_interval]))",
          legend: "{{instance}} → {{peer}}",
        },
      ],
      "Bytes sent into each peer's tunnel.",
    ),
    panel(
      8,
      "Data-plane drops",
      12,
      24,
      "pps",
      [
        {
          expr: 'sum by (instance, dataplane, reason) (rate(podcrypt_dataplane_dropped_packets_total{dataplane!="xfrm"}[$__rate_interval])) > 0',
          legend: "{{instance}} {{dataplane}} {{reason}}",
        },
      ],
      "Drops the userspace daemons counted, by reason.",
    ),
  ];
  return {
    title: "podcrypt",
    uid: "podcrypt",
    tags: ["podcrypt"],
    schemaVersion: 39,
    version: 1,
    editable: true,
    time: { from: "now-1h", to: "now" },
    refresh: "30s",
    templating: {
      list: [
        {
          name: "datasource",
          label: "Prometheus",
          type: "datasource",
          query: "prometheus",
          current: {},
        },
      ],
    },
    panels,
  };
}

/** deploy/monitoring/'s files: name -> content. */
export function monitoringFiles(): Map<string, string> {
  return new Map([
    ["monitoring/podcrypt.rules.yaml", alertRulesFile()],
    ["monitoring/podcrypt-dashboard.json", JSON.stringify(grafanaDashboard(), null, 2) + "\n"],
  ]);
}
