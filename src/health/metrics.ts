/**
 * The daemons' Prometheus metrics (prom-client), each daemon with its own Registry (no global
 * state). Values are read when scraped: per-peer counters from the data plane (`observe`), drops
 * from the data-plane daemons (./drops.ts), the cluster's epoch and phase from the datastore
 * traffic (./datastore-probe.ts), reconcile and controller counts from what the daemons recorded.
 *
 * Agent:
 *   podcrypt_peer_{receive,transmit}_{bytes,packets}_total{peer,epoch,ifname}
 *   podcrypt_peer_latest_handshake_timestamp_seconds{peer,epoch,ifname}   (WireGuard)
 *   podcrypt_peer_latest_handshake_age_seconds{peer,epoch,ifname}         (WireGuard)
 *   podcrypt_peer_key_id{peer,epoch,ifname}                               (IPsec SPI key ID)
 *   podcrypt_esp_sa_sequence{peer,epoch,ifname}, podcrypt_esp_sa_sequence_limit{...} (userspace ESP)
 *   podcrypt_plaintext_dropped_packets_total{peer,direction}   (strict mode's drops, src/dataplane/node/nft.ts)
 *   podcrypt_agent_reconciles_total, podcrypt_agent_reconcile_failures_total,
 *   podcrypt_agent_last_reconcile_success_timestamp_seconds
 *   podcrypt_dataplane_dropped_packets_total{dataplane,ifname,layer,reason}
 *   podcrypt_agent_refused_claims{peer,field,reason}   (peers' claims not applied, src/agent/claims.ts)
 *   podcrypt_agent_info{node,wireguard,ipsec} 1
 * Controller:
 *   podcrypt_controller_leader, podcrypt_controller_step_failures_total,
 *   podcrypt_policy_status_writes_total, podcrypt_policy_status_write_failures_total
 *   podcrypt_controller_runs_completed_total, podcrypt_controller_runs_failed_total,
 *   podcrypt_controller_phase_timeouts_total
 * Both:
 *   podcrypt_cluster_epoch, podcrypt_cluster_target_epoch, podcrypt_cluster_phase{phase},
 *   podcrypt_cluster_phase_seconds{phase},
 *   podcrypt_cluster_encryption_enabled, podcrypt_datastore_reachable, and prom-client's process
 *   and Node.js metrics.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { systemClock, type Clock } from "../clock.js";
import type { ControllerHealth } from "../controller/controller.js";
import type { DataplaneBackend, ObservedPeer } from "../dataplane/types.js";
import type { StrictDrop } from "../dataplane/node/nft.js";
import type { RefusedClaim } from "../agent/claims.js";
import type { ReconcileRecord } from "./backend-probe.js";
import { HEALTH_TIMING } from "./checks.js";
import type { Reachability } from "./datastore-probe.js";
import { readDrops, type DropSample, type DropSources } from "./drops.js";

const PHASES = ["idle", "prepare", "switch", "retire"] as const;

/** How long one read of the data plane serves the metrics of every scrape (ms). */
export const SHARED_READ_TTL_MS = 1000;

/** `fn`'s result, shared by every metric of one scrape (reused for `ttlMs`). */
function sharedRead<T>(fn: () => Promise<T>, clock: Clock, ttlMs = SHARED_READ_TTL_MS): () => Promise<T> {
  let at = -Infinity;
  let value: Promise<T> | undefined;
  return () => {
    const now = clock.now();
    if (value === undefined || now - at > ttlMs) {
      at = now;
      value = fn();
    }
    return value;
  };
}

/** Label values and a reading, as a metric's `read` returns them. */
type Readings<L extends string> = Array<[Partial<Record<L, string>>, number]>;

/**
 * A metric that reads its values at each scrape (`read`) instead of being updated as things
 * happen: a counter mirrors a count kept elsewhere (never below 0), a gauge a current value.
 */
function mirrored<L extends string>(
  type: "counter" | "gauge",
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Promise<Readings<L>> | Readings<L>,
): void {
  const config = { name, help, labelNames, registers: [registry] };
  if (type === "counter")
    new Counter<L>({
      ...config,
      async collect() {
        const values = await read();
        this.reset();
        for (const [labels, v] of values) this.inc(labels, Math.max(0, v));
      },
    });
  else
    new Gauge<L>({
      ...config,
      async collect() {
        const values = await read();
        this.reset();
        for (const [labels, v] of values) this.set(labels, v);
      },
    });
}

/** The cluster and datastore metrics both daemons export. */
function clusterMetrics(registry: Registry, reach: Reachability, clock: Clock): void {
  mirrored("gauge", registry, "podcrypt_cluster_epoch", "Epoch whose keys are in force.", [], () =>
    reach.cluster === undefined ? [] : [[{}, reach.cluster.epoch]],
  );
  mirrored(
    "gauge",
    registry,
    "podcrypt_cluster_target_epoch",
    "Epoch the run in progress (rotation, enable, disable) is taking the cluster to.",
    [],
    () => (reach.cluster?.target === undefined ? [] : [[{}, reach.cluster.target.epoch]]),
  );
  mirrored(
    "gauge",
    registry,
    "podcrypt_cluster_phase",
    "1 for the current phase of the key protocol.",
    ["phase"],
    () =>
      reach.cluster === undefined
        ? []
        : PHASES.map((p) => [{ phase: p }, reach.cluster!.phase === p ? 1 : 0]),
  );
  mirrored(
    "gauge",
    registry,
    "podcrypt_cluster_phase_seconds",
    "How long the cluster has been in its current phase of a run (prepare, switch, retire); absent while idle.",
    ["phase"],
    () => {
      const c = reach.cluster;
      const since = c === undefined || c.phase === "idle" ? undefined : c.phaseStartedAt[c.phase];
      if (c === undefined || since === undefined) return [];
      return [[{ phase: c.phase }, Math.max(0, (clock.wallNow() - Date.parse(since)) / 1000)]];
    },
  );
  mirrored(
    "gauge",
    registry,
    "podcrypt_cluster_encryption_enabled",
    "1 when the cluster's desired state is encrypted.",
    [],
    () => (reach.cluster === undefined ? [] : [[{}, reach.cluster.enabled ? 1 : 0]]),
  );
  mirrored(
    "gauge",
    registry,
    "podcrypt_datastore_reachable",
    `1 when a datastore call succeeded in the last ${HEALTH_TIMING.datastoreFreshMs / 1000} s and none failed since.`,
    [],
    () => [[{}, reach.fresh(HEALTH_TIMING.datastoreFreshMs) ? 1 : 0]],
  );
}

/** What the agent's metrics read. */
export interface AgentMetricsSources {
  node: string;
  clock: Clock;
  backend: DataplaneBackend;
  record: ReconcileRecord;
  reach: Reachability;
  drops: DropSources;
  /** The data plane of each mode (`kernel` or `userspace`). */
  choice: { wireguard: string; ipsec: string };
  /** Peers' claims the agent's last pass refused. Default none. */
  refused?: () => readonly RefusedClaim[];
  /** How long a scrape waits for the data plane's per-peer counters. Default {@link OBSERVE_TIMEOUT_MS}. */
  observeTimeoutMs?: number;
}

/**
 * How long a scrape waits for the data plane's per-peer counters (a daemon's UAPI or control
 * socket) before it answers without them: below the 3 s the local cluster's Prometheus allows a
 * scrape, and far below Prometheus' default 10 s.
 */
export const OBSERVE_TIMEOUT_MS = 2000;

/** The agent's registry. */
export function agentRegistry(src: AgentMetricsSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  clusterMetrics(registry, src.reach, src.clock);
  // A data-plane daemon that hangs (stopped, wedged) must not hang the scrape with it: the peers'
  // rows are left out of that scrape, and everything else (the leak detector first) still answers.
  const observeTimeoutMs = src.observeTimeoutMs ?? OBSERVE_TIMEOUT_MS;
  const peers = sharedRead(
    () =>
      new Promise<ObservedPeer[]>((resolve) => {
        const timer = setTimeout(() => resolve([]), observeTimeoutMs);
        src.backend.observe().then(
          (rows) => {
            clearTimeout(timer);
            resolve(rows);
          },
          () => {
            clearTimeout(timer);
            resolve([]);
          },
        );
      }),
    src.clock,
  );
  const drops = sharedRead(() => readDrops(src.drops).catch((): DropSample[] => []), src.clock);
  const strictDrops = sharedRead(
    async (): Promise<StrictDrop[]> => (await src.backend.strictDrops?.().catch(() => undefined)) ?? [],
    src.clock,
  );
  type PeerLabel = "peer" | "epoch" | "ifname";
  const labels = (p: ObservedPeer) => ({ peer: p.node, epoch: String(p.epoch), ifname: p.ifname });
  const perPeer = (
    name: string,
    help: string,
    value: (p: ObservedPeer) => number | undefined,
    gauge = false,
  ): void => {
    const read = async (): Promise<Readings<PeerLabel>> =>
      (await peers()).flatMap((p) => {
        const v = value(p);
        return v === undefined ? [] : [[labels(p), v]];
      });
    mirrored(gauge ? "gauge" : "counter", registry, name, help, ["peer", "epoch", "ifname"], read);
  };
  perPeer(
    "podcrypt_peer_receive_bytes_total",
    "Bytes received from the peer (decrypted payload).",
    (p) => p.rxBytes,
  );
  perPeer("podcrypt_peer_transmit_bytes_total", "Bytes sent to the peer.", (p) => p.txBytes);
  perPeer("podcrypt_peer_receive_packets_total", "Packets received from the peer.", (p) => p.rxPackets);
  perPeer("podcrypt_peer_transmit_packets_total", "Packets sent to the peer.", (p) => p.txPackets);
  perPeer(
    "podcrypt_peer_latest_handshake_timestamp_seconds",
    "When the latest WireGuard handshake with the peer completed (Unix seconds).",
    (p) =>
      p.latestHandshake === undefined || p.latestHandshake === 0 ? undefined : p.latestHandshake / 1000,
    true,
  );
  perPeer(
    "podcrypt_peer_latest_handshake_age_seconds",
    "Seconds since the latest WireGuard handshake with the peer (sessions are renewed every 2 minutes while traffic flows; past 3 minutes the session is gone).",
    (p) =>
      p.latestHandshake === undefined || p.latestHandshake === 0
        ? undefined
        : Math.max(0, (src.clock.wallNow() - p.latestHandshake) / 1000),
    true,
  );
  perPeer(
    "podcrypt_esp_sa_sequence",
    "Userspace ESP: last sequence number the outbound SA to the peer used.",
    (p) => p.sequence,
    true,
  );
  perPeer(
    "podcrypt_esp_sa_sequence_limit",
    "Userspace ESP: highest sequence number the outbound SA may use (2^32 - 1 without ESN); the SA must be replaced before.",
    (p) => p.sequenceLimit,
    true,
  );
  mirrored(
    "counter",
    registry,
    "podcrypt_plaintext_dropped_packets_total",
    'Pod packets strict mode dropped (and host packets, with strict host mode), per peer: direction "out" would have left for the peer\'s pods (or host address) in plaintext, "in" arrived from the peer in plaintext although it should have been encrypted. peer "" is an address no node owns.',
    ["peer", "direction"],
    async () => (await strictDrops()).map((d) => [{ peer: d.peer, direction: d.direction }, d.packets]),
  );
  perPeer(
    "podcrypt_peer_key_id",
    "IPsec key ID (carried in the SPI) of the peer's SA pair.",
    (p) => p.keyId,
    true,
  );
  mirrored("counter", registry, "podcrypt_agent_reconciles_total", "Data-plane reconciles run.", [], () => [
    [{}, src.record.reconciles],
  ]);
  mirrored(
    "counter",
    registry,
    "podcrypt_agent_reconcile_failures_total",
    "Data-plane reconciles that failed (each is followed by a full resync).",
    [],
    () => [[{}, src.record.failures]],
  );
  mirrored(
    "gauge",
    registry,
    "podcrypt_agent_last_reconcile_success_timestamp_seconds",
    "When the last reconcile succeeded (Unix seconds).",
    [],
    () => (src.record.lastOkAt === undefined ? [] : [[{}, src.record.lastOkAt / 1000]]),
  );
  mirrored(
    "counter",
    registry,
    "podcrypt_dataplane_dropped_packets_total",
    "Packets the data plane dropped, by reason (where the data plane counts them).",
    ["dataplane", "ifname", "layer", "reason"],
    async () =>
      (await drops()).map((d) => [
        { dataplane: d.dataplane, ifname: d.ifname, layer: d.layer, reason: d.reason },
        d.packets,
      ]),
  );
  mirrored(
    "gauge",
    registry,
    "podcrypt_agent_refused_claims",
    "Claims of a peer's record (pod CIDRs, underlay addresses) this agent refuses and does not apply: outside what Kubernetes assigned the node, or overlapping another node's pod CIDRs.",
    ["peer", "field", "reason"],
    () => {
      const counts = new Map<
        string,
        { labels: { peer: string; field: string; reason: string }; n: number }
      >();
      for (const r of src.refused?.() ?? []) {
        const k = `${r.node}|${r.field}|${r.reason}`;
        const c = counts.get(k) ?? { labels: { peer: r.node, field: r.field, reason: r.reason }, n: 0 };
        c.n++;
        counts.set(k, c);
      }
      return [...counts.values()].map((c) => [c.labels, c.n]);
    },
  );
  new Gauge({
    name: "podcrypt_agent_info",
    help: "The node and the data plane chosen for each mode.",
    labelNames: ["node", "wireguard", "ipsec"],
    registers: [registry],
  }).set({ node: src.node, wireguard: src.choice.wireguard, ipsec: src.choice.ipsec }, 1);
  return registry;
}

/** The controller's registry. */
export function controllerRegistry(
  health: () => ControllerHealth,
  reach: Reachability,
  clock: Clock = systemClock,
): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  clusterMetrics(registry, reach, clock);
  mirrored("gauge", registry, "podcrypt_controller_leader", "1 while this controller leads.", [], () => [
    [{}, health().leader ? 1 : 0],
  ]);
  mirrored(
    "counter",
    registry,
    "podcrypt_controller_step_failures_total",
    "Steps of the phased protocol that failed (retried after 1 s).",
    [],
    () => [[{}, health().stepFailures]],
  );
  mirrored(
    "counter",
    registry,
    "podcrypt_controller_runs_completed_total",
    "Runs (rotation, enable, disable) this controller finished while leading.",
    [],
    () => [[{}, health().runsCompleted]],
  );
  mirrored(
    "counter",
    registry,
    "podcrypt_controller_runs_failed_total",
    "Runs this controller finished with a node timed out (it did not acknowledge a phase in time and lags behind).",
    [],
    () => [[{}, health().runsFailed]],
  );
  mirrored(
    "counter",
    registry,
    "podcrypt_controller_phase_timeouts_total",
    "Nodes this controller timed out because they did not acknowledge a phase in time.",
    [],
    () => [[{}, health().phaseTimeouts]],
  );
  mirrored("counter", registry, "podcrypt_policy_status_writes_total", "Policy status writes.", [], () => [
    [{}, health().policyStatusWrites],
  ]);
  mirrored(
    "counter",
    registry,
    "podcrypt_policy_status_write_failures_total",
    "Policy status writes that failed (conflicts excluded).",
    [],
    () => [[{}, health().policyStatusFailures]],
  );
  return registry;
}
