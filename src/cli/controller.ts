import { hostname } from "node:os";
import { Command } from "commander";
import { NOT_READY_TAINT } from "../agent/gate.js";
import type { KubernetesDatastore } from "../datastore/kubernetes/datastore.js";
import { systemClock } from "../clock.js";
import { Controller } from "../controller/controller.js";
import { allOf, controllerLiveness, controllerReadiness, HEALTH_TIMING } from "../health/checks.js";
import { observeDatastore } from "../health/datastore-probe.js";
import { controllerRegistry } from "../health/metrics.js";
import { HealthServer } from "../health/server.js";
import type { Datastore } from "../datastore/types.js";
import { createLogger } from "../log/logger.js";
import { readStatusView } from "../statuspage/read.js";
import { DEFAULT_TIMING } from "../protocol/index.js";
import type { StatusView } from "../statuspage/view.js";
import {
  CONTROLLER_DEFAULTS,
  controllerSettings,
  loadDaemonConfig,
  logLevelOption,
  readMetricsToken,
} from "./config.js";
import { daemonDatastoreOption, leaseNamespaceOption, openDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";

/** The flags of `podcrypt controller`; undefined when not given. */
interface ControllerFlags {
  config?: string;
  datastore?: string;
  namespace?: string;
  identity?: string;
  election?: string;
  leaseTtl?: number;
  phaseTimeout?: number;
  healthAddress?: string;
  metricsTokenFile?: string;
  logLevel?: string;
}

/**
 * The status page's data, read from the datastore; viewers within a second of each other share
 * one read (every open page fetches every 2 s).
 */
function statusSource(store: Datastore): () => Promise<StatusView> {
  let last: { at: number; view: Promise<StatusView> } | undefined;
  return () => {
    const now = Date.now();
    if (last === undefined || now - last.at >= 1000) {
      const view = readStatusView(store, now);
      // A failed read is not kept: the next request reads again.
      view.catch(() => {
        if (last?.view === view) last = undefined;
      });
      last = { at: now, view };
    }
    return last.view;
  };
}

/** Runs until SIGTERM/SIGINT, then resigns so a standby takes over at once. */
async function runController(o: ControllerFlags): Promise<void> {
  const file = o.config === undefined ? {} : loadDaemonConfig(o.config);
  const set = controllerSettings(o, file, process.env, `${hostname()}-${process.pid}`);
  const metricsToken = readMetricsToken(set.metricsTokenFile);
  const { identity, electionName } = set;
  const logger = createLogger("controller", { level: set.logLevel }).child({ identity });
  const listen = set.health;
  const closers: (() => Promise<void>)[] = [];
  try {
    const raw = await openDatastore(set.datastore, { namespace: set.namespace, identity });
    closers.push(() => raw.close());
    const { store, reach } = observeDatastore(raw, systemClock);
    const controller = new Controller({
      store,
      identity,
      clock: systemClock,
      logger,
      electionName,
      leaseTtlSeconds: set.leaseTtlSeconds,
      timing: { ...DEFAULT_TIMING, phaseTimeoutMs: set.phaseTimeoutSeconds * 1000 },
      ...(set.seed === undefined ? {} : { seed: set.seed }),
      // Workload gating: agents ask for their Node's not-ready taint in their records, and the
      // controller writes the Node (agents have no write on Nodes); only Kubernetes has Nodes.
      ...(raw.backend === "kubernetes"
        ? {
            nodeTaint: (node: string, present: boolean) =>
              (raw as KubernetesDatastore).setNodeTaint(node, NOT_READY_TAINT, present),
          }
        : {}),
    });
    if (listen !== undefined) {
      const health = await HealthServer.start({
        ...listen,
        token: metricsToken,
        registry: controllerRegistry(() => controller.health(), reach),
        status: statusSource(store),
        logger,
        liveness: () => controllerLiveness(controller.health(), Date.now()),
        readiness: async () =>
          allOf(
            await reach.check(() => raw.leader(electionName), HEALTH_TIMING.datastoreFreshMs),
            controllerReadiness(controller.health(), Date.now()),
          ),
      });
      closers.push(() => health.close());
      logger.info(
        { address: `${listen.host}:${health.port}` },
        "serving /healthz, /readyz, /metrics and the status page /status",
      );
    }
    // Resign on the way out (a clean hand-over), whether start-up failed or a signal came.
    closers.push(() => controller.stop());
    await controller.start();
    logger.info({ election: electionName }, "controller started");
    await new Promise<void>((resolve) => {
      for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
    });
  } finally {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  }
}

export function registerController(program: Command): void {
  const d = CONTROLLER_DEFAULTS;
  program
    .command("controller")
    .description(
      "the leader-elected controller: drives enable, disable and key rotation through prepare → switch → retire, " +
        "writes policy status (Accepted, Programmed on N of M nodes) and, on Kubernetes, the not-ready taint of " +
        "each Node as its agent asks (workload gating). Settings come from the flags, else the " +
        "--config file, else the defaults shown; the file's cluster section seeds ClusterEncryption default when " +
        "the leader finds none",
    )
    .option(
      "--config <file>",
      "configuration file: the podcrypt-config ConfigMap's config.yaml (sections controller, cluster, log)",
    )
    .addOption(daemonDatastoreOption(d.datastore))
    .addOption(leaseNamespaceOption())
    .option(
      "--identity <id>",
      "this controller's identity in the leader election (default $POD_NAME, else HOST-PID)",
    )
    .option(
      "--election <name>",
      `leader election name; kubernetes: the Lease podcrypt-leader-NAME (config: controller.leaderElection.name; default ${d.electionName})`,
    )
    .option(
      "--lease-ttl <seconds>",
      `leadership lease TTL: a crashed leader is replaced within about this (config: controller.leaderElection.ttlSeconds; default ${d.leaseTtlSeconds})`,
      parseIntFlag("--lease-ttl", 1, 3600),
    )
    .option(
      "--phase-timeout <seconds>",
      `how long a live node may take to acknowledge a rotation or switch phase before the cluster moves on without it (it lags, keeping its pairs on the old epoch, until it catches up); raise it for slow or emulated nodes (config: controller.phaseTimeoutSeconds; default ${d.phaseTimeoutSeconds})`,
      parseIntFlag("--phase-timeout", 5, 3600),
    )
    .option(
      "--health-address <host:port>",
      `where /healthz, /readyz, /metrics and /statusz listen; port 0 for any free one, off for none (config: controller.healthAddress; default ${d.healthAddress})`,
    )
    .option(
      "--metrics-token-file <file>",
      "file holding a bearer token that /metrics and /statusz then require (config: controller.metricsTokenFile; default none: /metrics open, /statusz for loopback clients only)",
    )
    .addOption(logLevelOption(d.logLevel))
    .action(async (o: ControllerFlags) => {
      await runController(o);
    });
}
