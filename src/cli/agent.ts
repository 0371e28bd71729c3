import { randomBytes } from "node:crypto";
import { Command, Option } from "commander";
import { Agent, type EpochKeys } from "../agent/agent.js";
import { NOT_READY_TAINT } from "../agent/gate.js";
import type { RefusedClaim } from "../agent/claims.js";
import type { KubernetesDatastore } from "../datastore/kubernetes/datastore.js";
import { systemClock } from "../clock.js";
import type { Datastore } from "../datastore/types.js";
import { ValidationError } from "../errors/index.js";
import { instrumentBackend } from "../health/backend-probe.js";
import { agentLiveness, agentReconcileReadiness, allOf, HEALTH_TIMING } from "../health/checks.js";
import { observeDatastore } from "../health/datastore-probe.js";
import { agentRegistry } from "../health/metrics.js";
import { HealthServer } from "../health/server.js";
import { KeyStore } from "../keys/index.js";
import { createLogger } from "../log/logger.js";
import { podMtu } from "../mtu/mtu.js";
import { ProcessKernelCommands } from "../platform/netlink/kernel-commands.js";
import { run } from "../platform/netns/netns.js";
import { chooseDataplanes, detectKernel, nodeBackend, type DataplaneRequest } from "./agent-dataplane.js";
import { resolveNodeName, resolveNodeNetwork, underlayInterfaceOf } from "./agent-node.js";
import {
  AGENT_DEFAULTS,
  agentSettings,
  loadDaemonConfig,
  logLevelOption,
  MAX_HEARTBEAT_SECONDS,
  readMetricsToken,
} from "./config.js";
import { daemonDatastoreOption, leaseNamespaceOption, openDatastore } from "./datastore.js";
import {
  ensureProbeAddress,
  probeEndpointAddress,
  probeEndpointAddress6,
  serveProbeEcho,
} from "../agent/verify/endpoint.js";
import { VERIFY_BLIND_FILE, VerifyRunner } from "../agent/verify/runner.js";
import { join } from "node:path";
import { parseIntFlag } from "./flags.js";
import { hostExclusions } from "./host-exclusions.js";

/** EpochKeys over the 0600 key files of src/keys. */
function epochKeys(store: KeyStore): EpochKeys {
  return {
    ensure: async (epoch) => (await store.ensure(epoch)).publicKey.toString("base64"),
    privateKey: (epoch) => {
      const pair = store.get(epoch);
      if (pair === undefined) throw new ValidationError("epoch", `no key pair for epoch ${epoch}`);
      return pair.privateKey;
    },
    retain: async (keep) => {
      for (const e of store.epochs()) if (!keep.includes(e)) await store.retire(e);
    },
  };
}

async function linkMtu(ifname: string): Promise<number> {
  const links = JSON.parse(await run("ip", ["-j", "link", "show", ifname])) as Array<{ mtu: number }>;
  const mtu = links[0]?.mtu;
  if (mtu === undefined) throw new ValidationError("--underlay-if", `no interface ${ifname}`);
  return mtu;
}

/** The flags of `podcrypt agent`; undefined when not given (the config file or default applies). */
interface AgentFlags {
  config?: string;
  node?: string;
  datastore?: string;
  namespace?: string;
  stateDir?: string;
  underlayIp?: string[];
  podCidr?: string[];
  clusterCidr?: string[];
  underlayIf?: string;
  ifPrefix?: string;
  wireguardPort?: number;
  dataplane?: DataplaneRequest;
  wireguardDaemon: "podcrypt" | "wireguard-go";
  espRekeyAfterPackets?: number;
  heartbeatSeconds?: number;
  healthAddress?: string;
  metricsTokenFile?: string;
  logLevel?: string;
  notReadyTaint?: boolean;
}

/**
 * Checks `--not-ready-taint` (src/agent/gate.ts): the agent's wish is applied to its Kubernetes
 * Node by the controller, so it means something only on the kubernetes datastore.
 */
function checkWorkloadGate(store: Datastore): void {
  if (store.backend !== "kubernetes")
    throw new ValidationError(
      "--not-ready-taint",
      `needs the kubernetes datastore (the controller taints this node's Kubernetes Node), not ${store.backend}: pass --no-not-ready-taint or set agent.notReadyTaint: false`,
    );
}

/**
 * The node's part of `verify --via-agents`: its probe endpoint (address, echo) and the runner of
 * verify runs. A node that cannot serve one still encrypts: the failure is logged, and its checks
 * fail in every run for want of a report.
 */
async function startVerify(o: {
  node: string;
  store: Datastore;
  underlayIf: string;
  underlay: string;
  podCIDRs: string[];
  stateDir: string;
  logger: ReturnType<typeof createLogger>;
  closers: (() => Promise<void>)[];
}): Promise<void> {
  const endpoint = probeEndpointAddress(o.podCIDRs);
  if (endpoint === undefined) {
    o.logger.warn(
      { podCIDRs: o.podCIDRs },
      "no IPv4 pod CIDR: no probe endpoint, verify --via-agents cannot probe this node",
    );
    return;
  }
  try {
    await ensureProbeAddress(endpoint);
    const echo = await serveProbeEcho(endpoint);
    o.closers.push(async () => void echo.close());
    // IPv6 pods: an IPv6 endpoint too; without it (an error) the IPv4 one still serves.
    let endpoint6 = probeEndpointAddress6(o.podCIDRs);
    if (endpoint6 !== undefined)
      try {
        await ensureProbeAddress(endpoint6);
        const echo6 = await serveProbeEcho(endpoint6);
        o.closers.push(async () => void echo6.close());
      } catch (e) {
        o.logger.warn({ endpoint6, err: (e as Error).message }, "IPv6 probe endpoint failed to start");
        endpoint6 = undefined;
      }
    const runner = new VerifyRunner({
      node: o.node,
      store: o.store,
      underlayIf: o.underlayIf,
      endpoint,
      ...(endpoint6 === undefined ? {} : { endpoint6 }),
      underlay: o.underlay,
      blindFile: join(o.stateDir, VERIFY_BLIND_FILE),
      logger: o.logger,
    });
    await runner.start();
    o.closers.push(() => runner.stop());
    o.logger.info({ endpoint, endpoint6 }, "probe endpoint serving; taking part in verify runs");
  } catch (e) {
    o.logger.warn({ endpoint, err: (e as Error).message }, "probe endpoint or verify runner failed to start");
  }
}

/** Runs until SIGTERM/SIGINT. Everything it opened is closed again if start-up fails. */
async function runAgent(o: AgentFlags): Promise<void> {
  const file = o.config === undefined ? {} : loadDaemonConfig(o.config);
  const set = agentSettings(o, file, process.env);
  const metricsToken = readMetricsToken(set.metricsTokenFile);
  const node = resolveNodeName(o.node, process.env);
  const logger = createLogger("agent", { level: set.logLevel }).child({ node });
  const { dataplane } = set;
  const ifPrefix = o.ifPrefix ?? AGENT_DEFAULTS.ifPrefix;
  const closers: (() => Promise<void>)[] = [];
  // SIGUSR2: a planned restart of this node's userspace data-plane daemons (an upgrade), each
  // handed over to a successor without loss (`podcrypt cluster upgrade-node` sends it). Caught
  // from the start: its default action would end the agent.
  let upgrade = (): void =>
    logger.warn("SIGUSR2 before the agent started: no data-plane daemon to hand over yet");
  const onUpgrade = (): void => upgrade();
  process.on("SIGUSR2", onUpgrade);
  closers.push(async () => void process.off("SIGUSR2", onUpgrade));
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    const raw: Datastore = await openDatastore(set.datastore, {
      namespace: set.namespace,
      identity: node,
      // The controller expires the datastore's Leases; agents may only read them.
      expireLeases: false,
    });
    closers.push(() => raw.close());
    if (set.notReadyTaint) checkWorkloadGate(raw);
    const net = await resolveNodeNetwork(raw, node, { underlayIp: o.underlayIp, podCidr: o.podCidr });
    const underlayIf = set.underlayIf ?? (await underlayInterfaceOf(net.underlayIp));
    // With --dataplane kernel on a kernel without the modules the agent stops here, saying what is missing.
    const caps = await detectKernel(new ProcessKernelCommands(), underlayIf);
    const choice = chooseDataplanes(dataplane, caps);
    logger.info(
      {
        dataplane,
        choice,
        underlayIp: net.underlayIp,
        podCIDRs: net.podCIDRs,
        underlayIf,
        from: net.source,
        ...(caps.wireguard.ok ? {} : { noKernelWireguard: caps.wireguard.reason }),
        ...(caps.ipsec.ok ? {} : { noKernelXfrm: caps.ipsec.reason }),
      },
      "node and data planes",
    );
    const { store, reach } = observeDatastore(raw, systemClock);
    const keys = new KeyStore(
      set.stateDir,
      (n) => randomBytes(n),
      (w) =>
        logger.warn(
          { epoch: w.epoch, file: w.file, movedTo: w.movedTo, reason: w.reason },
          "key file unusable: moved aside, a fresh key replaces it",
        ),
    );
    await keys.load();
    const extMtu = await linkMtu(underlayIf);
    const ipv6 = net.underlayIp.includes(":");
    // Generations of both modes share the tunnel MTU during a mode switch: the smaller one fits both.
    const mtu = podMtu(extMtu, ipv6);
    // A dead daemon is the agent's to replace (set once the agent exists; no daemon runs before).
    let daemonDied = (_ifname: string): void => undefined;
    const { backend, record } = instrumentBackend(
      nodeBackend({
        onDaemonDeath: (ifname) => daemonDied(ifname),
        node,
        logger,
        choice,
        underlayIp: net.underlayIp,
        underlayIf,
        ifPrefix,
        podCidrs: net.podCIDRs,
        clusterCidrs: set.clusterCidrs,
        wireguardDaemon: o.wireguardDaemon,
        ...(o.espRekeyAfterPackets === undefined ? {} : { espRekeyAfterPackets: o.espRekeyAfterPackets }),
      }),
      systemClock,
    );
    const listen = set.health;
    let refused = (): readonly RefusedClaim[] => [];
    if (listen !== undefined) {
      const registry = agentRegistry({
        node,
        clock: systemClock,
        backend,
        record,
        reach,
        choice,
        refused: () => refused(),
        drops: {
          wireguardUserspace: choice.wireguard === "userspace" ? [`${ifPrefix}0`, `${ifPrefix}1`] : [],
          espUserspace: choice.ipsec === "userspace" ? `${ifPrefix}e`.slice(0, 15) : undefined,
          kernelXfrm: choice.ipsec === "kernel",
        },
      });
      const health = await HealthServer.start({
        ...listen,
        token: metricsToken,
        registry,
        logger,
        liveness: () => agentLiveness(record, reach, Date.now()),
        readiness: async () =>
          allOf(
            await reach.check(() => raw.collection("nodes").get(node), HEALTH_TIMING.datastoreFreshMs),
            agentReconcileReadiness(record, Date.now()),
          ),
      });
      closers.push(() => health.close());
      logger.info({ address: `${listen.host}:${health.port}` }, "serving /healthz, /readyz and /metrics");
    }
    const { heartbeatSeconds } = set;
    // Its traffic to selected pods is marked as the pods' (verify --via-agents probes them).
    const probeEndpoint = probeEndpointAddress(net.podCIDRs);
    const agent = new Agent({
      settings: {
        node,
        ifPrefix,
        wireguardPort: set.wireguardPort,
        underlayIf,
        mtu,
        ...(probeEndpoint === undefined ? {} : { probeEndpoint }),
        hostExclude: hostExclusions(
          set.datastore,
          set.hostExclude,
          set.datastore.startsWith("kubernetes")
            ? (await import("../datastore/kubernetes/kubeconfig.js")).kubeServer(set.datastore)
            : undefined,
        ),
      },
      self: {
        underlay: net.underlay,
        podCIDRs: net.podCIDRs,
        capabilities: { wireguardKernel: caps.wireguard.ok, xfrmKernel: caps.ipsec.ok },
      },
      store,
      backend,
      keys: epochKeys(keys),
      clock: systemClock,
      logger,
      heartbeatMs: heartbeatSeconds * 1000,
      workloadGate: set.notReadyTaint,
      // Kubernetes is the authority on what each node was assigned: peers are believed only there.
      ...(raw.backend === "kubernetes"
        ? { authority: (onChange: () => void) => (raw as KubernetesDatastore).watchNodeAuthorities(onChange) }
        : {}),
    });
    daemonDied = (ifname) => agent.daemonDied(ifname);
    upgrade = () => void agent.handOverDaemons();
    refused = () => agent.refused;
    logger.info({ mtu, extMtu, dataplane, heartbeatSeconds }, "agent starting");
    closers.push(() => agent.stop());
    await agent.start();
    await startVerify({
      node,
      store: raw,
      underlayIf,
      underlay: net.underlayIp,
      podCIDRs: net.podCIDRs,
      stateDir: set.stateDir,
      logger,
      closers,
    });
    await new Promise<void>((resolve) => {
      for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
    });
    logger.info("agent stopping; the data plane keeps running");
  } finally {
    await closeAll();
  }
}

export function registerAgent(program: Command): void {
  const d = AGENT_DEFAULTS;
  program
    .command("agent")
    .description(
      "the node agent: makes this node's keys, publishes public keys, programs the data plane. Settings come from " +
        "the flags, else the --config file, else the defaults shown; on the kubernetes datastore a DaemonSet pod " +
        "needs only $NODE_NAME (its Node gives the underlay address and pod CIDRs). SIGTERM stops the agent (the data " +
        "plane keeps running); SIGUSR2 replaces the node's userspace data-plane daemons one after another by handover " +
        "(an upgrade: each successor takes its device, socket and sessions or SAs; nothing is lost)",
    )
    .option(
      "--config <file>",
      "configuration file: the podcrypt-config ConfigMap's config.yaml (sections agent, log)",
    )
    .option("--node <name>", "this node's name (default $NODE_NAME)")
    .addOption(daemonDatastoreOption(d.datastore))
    .addOption(leaseNamespaceOption())
    .option(
      "--state-dir <dir>",
      `where private keys live, 0600 files (config: agent.stateDir; default ${d.stateDir})`,
    )
    .option(
      "--underlay-ip <ip...>",
      "this node's underlay address peers send to, at most one per family: the tunnels use the IPv4 one when there are both (kubernetes datastore: default the Node's InternalIPs)",
    )
    .option(
      "--pod-cidr <cidr...>",
      "pod CIDRs routed to this node (kubernetes datastore: default the Node's spec.podCIDRs)",
    )
    .option(
      "--cluster-cidr <cidr...>",
      "the cluster's pod CIDRs: routes inside them (outside --pod-cidr) are the agent's to prune (config: agent.clusterCIDRs)",
    )
    .option(
      "--underlay-if <ifname>",
      "the underlay interface, MTU detected from it (config: agent.underlayInterface; default the interface holding the underlay address)",
    )
    .option(
      "--if-prefix <prefix>",
      `tunnel interface prefix, generation slots 0 and 1 (default ${d.ifPrefix})`,
    )
    .option(
      "--wireguard-port <port>",
      `WireGuard listen port of slot 0, slot 1 uses the next (config: agent.wireguardPort; default ${d.wireguardPort})`,
      parseIntFlag("--wireguard-port", 1, 65534),
    )
    .addOption(
      new Option(
        "--dataplane <kind>",
        `data plane: kernel WireGuard/XFRM when the kernel has them (auto), always (kernel, else fail) or never (config: agent.dataplane; default ${d.dataplane})`,
      ).choices(["auto", "kernel", "userspace"]),
    )
    .addOption(
      new Option("--wireguard-daemon <cmd>", "userspace daemon to run")
        .choices(["podcrypt", "wireguard-go"])
        .default(process.env["PODCRYPT_WIREGUARD_DAEMON"] ?? "podcrypt"),
    )
    .addOption(
      new Option(
        "--esp-rekey-after-packets <n>",
        "userspace ESP: ask the controller for an early rotation once an outbound SA has sent this many packets " +
          "(default: at 3/4 of the 32-bit sequence space)",
      )
        .env("PODCRYPT_ESP_REKEY_AFTER_PACKETS")
        .argParser(parseIntFlag("--esp-rekey-after-packets", 1, 0xffffffff)),
    )
    .option(
      "--heartbeat-seconds <s>",
      `how often the node reports alive, 1-${MAX_HEARTBEAT_SECONDS} (config: agent.heartbeatSeconds; default ${d.heartbeatSeconds})`,
      parseIntFlag("--heartbeat-seconds", 1, MAX_HEARTBEAT_SECONDS),
    )
    .option(
      "--health-address <host:port>",
      `where /healthz, /readyz, /metrics and /statusz listen; port 0 for any free one, off for none (config: agent.healthAddress; default ${d.healthAddress})`,
    )
    .option(
      "--metrics-token-file <file>",
      "file holding a bearer token that /metrics and /statusz then require (config: agent.metricsTokenFile; default none: /metrics open, /statusz for loopback clients only)",
    )
    .option(
      "--not-ready-taint",
      `ask for the NoSchedule taint ${NOT_READY_TAINT.key} on this node's Kubernetes Node until its tunnels to every live peer are up, then for its removal: the wish is published in this node's record (status.workloadGate) and the controller writes the Node (kubernetes datastore; config: agent.notReadyTaint; default ${d.notReadyTaint ? "on" : "off"}, on in the manifests)`,
    )
    .option("--no-not-ready-taint", "never ask for this node's Node to be tainted")
    .addOption(logLevelOption(d.logLevel))
    .action(async (o: AgentFlags) => {
      await runAgent(o);
    });
}
