/**
 * The daemons' configuration file (`podcrypt agent|controller --config FILE`): the `config.yaml`
 * of the ConfigMap `podcrypt manifests` generates (src/cli/manifests/workloads.ts writes it from
 * {@link DaemonConfig}, so the two cannot drift). Both daemons read the same file, each its own
 * sections; flags given on the command line override the file, and the file overrides the
 * built-in defaults ({@link AGENT_DEFAULTS}, {@link CONTROLLER_DEFAULTS}).
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { Option } from "commander";
import { z } from "zod";
import { ValidationError } from "../errors/index.js";
import { parseYamlText } from "../errors/yaml.js";
import { parsePortEntry } from "../policy/ports.js";
import type { OperatorExclusions } from "./host-exclusions.js";
import { cidr, duration, encryptionMode, namespaceName, objectName, parseWith } from "../model/index.js";
import { canonicalCidr, canonicalIp } from "../platform/netlink/addr.js";
import { DEFAULT_TIMING } from "../protocol/index.js";

/** A `HOST:PORT` (`[v6]:PORT`) listen address, or `off`. Port 0 takes any free port. */
export const listenAddress = z
  .string()
  .refine(
    (s) => s === "off" || parseListenAddress(s) !== undefined,
    'must be HOST:PORT (such as 0.0.0.0:9809 or [::]:9809, port 0 for any free one) or "off"',
  );

/**
 * `HOST:PORT` split, or undefined when it is not one. An IPv6 host is bracketed (`[::1]:9809`),
 * or bare when it is an IPv6 literal (`fd00::5:9809`: the last colon separates the port), as the
 * manifests' `$(POD_IP):9809` expands on an IPv6 cluster.
 */
export function parseListenAddress(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)|([0-9a-fA-F:.]+)):(\d{1,5})$/.exec(s);
  const port = Number(m?.[4]);
  if (m === null || !(port >= 0 && port <= 65535)) return undefined;
  if (m[3] !== undefined && isIP(m[3]) !== 6) return undefined;
  return { host: m[1] ?? m[2] ?? m[3]!, port };
}

/**
 * The bearer token in `file` (`--metrics-token-file`), surrounding whitespace removed; undefined
 * without a file. A ValidationError names the file when it cannot be read or holds no token.
 */
export function readMetricsToken(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new ValidationError("--metrics-token-file", `cannot read ${file}: ${(cause as Error).message}`, {
      cause,
    });
  }
  const token = text.trim();
  if (token === "" || /\s/.test(token))
    throw new ValidationError("--metrics-token-file", `${file} must hold one token (no whitespace inside)`);
  return token;
}

/** Liveness is 15 s after a heartbeat (src/controller/phases.ts): at most 5 s keeps three beats in it. */
export const MAX_HEARTBEAT_SECONDS = 5;

/** pino's levels. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const logSchema = z.strictObject({
  /** pino level. Default info. */
  level: z.enum(LOG_LEVELS).optional(),
});

/** `--log-level`, shared by both daemons. */
export function logLevelOption(dflt: string): Option {
  return new Option("--log-level <level>", `log level (config: log.level; default ${dflt})`).choices(
    LOG_LEVELS,
  );
}

/**
 * What the controller creates as ClusterEncryption "default" when it finds none (later changes
 * are made with `podcrypt enable|disable|rotate` or by editing the object, not here).
 */
const clusterSchema = z
  .strictObject({
    enabled: z.boolean().optional(),
    mode: encryptionMode.optional(),
    encryption: z.enum(["all", "selective"]).optional(),
    strict: z.boolean().optional(),
    rotationInterval: duration.optional(),
    /** Node-to-node encryption (docs/design.md#host-encryption). */
    hostEncryption: z.boolean().optional(),
    /** Strict host mode (docs/design.md#host-encryption); needs `hostEncryption: true`. */
    strictHost: z.boolean().optional(),
  })
  .refine((c) => c.strictHost !== true || c.hostEncryption === true, {
    path: ["strictHost"],
    message: "needs hostEncryption: true (strict host mode guards the host traffic host encryption tunnels)",
  });

/**
 * An IPv4 or IPv6 CIDR whose host bits are zero (as `ip rule` keeps it), in the text `ip rule`
 * prints (IPv6 compressed, lower case), so the rules the agent wants and reads compare as equal.
 */
const hostExcludeCidr = z
  .string()
  .superRefine((c, ctx) => {
    const v4 = z.cidrv4().safeParse(c).success;
    if (!v4 && !z.cidrv6().safeParse(c).success) {
      ctx.addIssue({ code: "custom", message: "must be an IPv4 or IPv6 CIDR, e.g. 10.0.0.0/8 or fd00::/8" });
      return;
    }
    const [addr, len] = c.split("/") as [string, string];
    if (canonicalCidr(c) !== `${canonicalIp(addr)}/${len}`)
      ctx.addIssue({
        code: "custom",
        message: `has host bits set (write the network address, ${canonicalCidr(c)})`,
      });
  })
  .transform((c) => canonicalCidr(c));

/** What host encryption leaves outside the tunnels (src/cli/host-exclusions.ts). */
const hostExcludeSchema = z.strictObject({
  /** IPv4 and IPv6 CIDRs: host traffic to or from them is never tunnelled. */
  cidrs: z.array(hostExcludeCidr).max(64).optional(),
  /** Ports as `tcp/22`: host traffic from or to them is never tunnelled. */
  ports: z
    .array(
      z.string().refine(
        (p) => {
          try {
            parsePortEntry(p, "port");
            return true;
          } catch {
            return false;
          }
        },
        { message: "must be PROTOCOL/PORT, e.g. tcp/22" },
      ),
    )
    .max(64)
    .optional(),
});

const agentSchema = z.strictObject({
  /** `--dataplane`. */
  dataplane: z.enum(["auto", "kernel", "userspace"]).optional(),
  /** `--state-dir`: the node's private keys (0600 files). */
  stateDir: z.string().startsWith("/", "must be an absolute path").optional(),
  /** `--heartbeat-seconds`. */
  heartbeatSeconds: z
    .number()
    .int("must be an integer")
    .min(1, "must be at least 1")
    .max(
      MAX_HEARTBEAT_SECONDS,
      `must be at most ${MAX_HEARTBEAT_SECONDS} (nodes count as live for 15 s after a heartbeat)`,
    )
    .optional(),
  /** `--health-address`: /healthz, /readyz, /metrics, /statusz. */
  healthAddress: listenAddress.optional(),
  /** `--metrics-token-file`: the bearer token /metrics and /statusz require. */
  metricsTokenFile: z.string().startsWith("/", "must be an absolute path").optional(),
  /** `--underlay-if`. */
  underlayInterface: z
    .string()
    .regex(/^[^/\s:]{1,15}$/, "must be an interface name")
    .optional(),
  /** `--cluster-cidr`. */
  clusterCIDRs: z.array(cidr).optional(),
  /** `--wireguard-port`. */
  wireguardPort: z.number().int().min(1).max(65534).optional(),
  /**
   * With host encryption: host traffic never tunnelled besides the tunnels' own ports and the
   * datastore connection (docs/design.md#host-encryption).
   */
  hostEncryptionExclude: hostExcludeSchema.optional(),
  /**
   * `--not-ready-taint`: ask for the NoSchedule taint `podcrypt.io/not-ready` on this node's Node
   * until its tunnels to every live peer are up; the wish is published in the node's record and
   * the controller writes the Node (kubernetes datastore only; src/agent/gate.ts).
   */
  notReadyTaint: z.boolean().optional(),
});

const controllerSchema = z.strictObject({
  leaderElection: z
    .strictObject({
      /** `--election`: the election's name (Kubernetes: the Lease `podcrypt-leader-<name>`). */
      name: objectName.optional(),
      /** `--lease-ttl`. */
      ttlSeconds: z.number().int().min(1).max(3600).optional(),
    })
    .optional(),
  /** `--health-address`. */
  healthAddress: listenAddress.optional(),
  /** `--metrics-token-file`. */
  metricsTokenFile: z.string().startsWith("/", "must be an absolute path").optional(),
  /** `--phase-timeout`. */
  phaseTimeoutSeconds: z.number().int().min(5).max(3600).optional(),
});

/** The configuration file. Every field is optional. */
export const daemonConfigSchema = z.strictObject({
  /** `--datastore`. */
  datastore: z.string().min(1).optional(),
  /** `--namespace`: the Kubernetes datastore's namespace (its Leases). */
  namespace: namespaceName.optional(),
  log: logSchema.optional(),
  cluster: clusterSchema.optional(),
  agent: agentSchema.optional(),
  controller: controllerSchema.optional(),
});
/** The configuration file. */
export type DaemonConfig = z.infer<typeof daemonConfigSchema>;

/** Built-in defaults of the agent (what the manifests expect where they set nothing). */
export const AGENT_DEFAULTS = {
  datastore: "local",
  stateDir: "/var/lib/podcrypt/agent",
  dataplane: "auto",
  heartbeatSeconds: MAX_HEARTBEAT_SECONDS,
  // Loopback: nothing else on the network reaches health or metrics unless asked for (the
  // manifests pass the pod's IP, which for the agent is the node's).
  healthAddress: "127.0.0.1:9809",
  wireguardPort: 51820,
  // Off unless asked for (the manifests turn it on): only a Kubernetes Node can carry the taint.
  notReadyTaint: false,
  ifPrefix: "podcrypt",
  logLevel: "info",
} as const;

/** Built-in defaults of the controller. */
export const CONTROLLER_DEFAULTS = {
  datastore: "local",
  electionName: "podcrypt-controller",
  leaseTtlSeconds: 5,
  phaseTimeoutSeconds: DEFAULT_TIMING.phaseTimeoutMs / 1000,
  healthAddress: "127.0.0.1:9808",
  logLevel: "info",
} as const;

/**
 * Reads and validates the configuration file. ValidationError naming the field as
 * `FILE: agent.heartbeatSeconds: ...`, or the file when it cannot be read or parsed.
 */
export function loadDaemonConfig(file: string): DaemonConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new ValidationError("--config", `cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
  return parseDaemonConfig(text, file);
}

/** Validates the text of a configuration file (`source` names it in errors). */
export function parseDaemonConfig(text: string, source = "config"): DaemonConfig {
  const doc = parseYamlText(text, source);
  try {
    return parseWith(daemonConfigSchema, doc ?? {});
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    const detail = e.field === "" ? e.message : e.message.slice(e.field.length + 2);
    throw new ValidationError(e.field === "" ? source : `${source}: ${e.field}`, detail, { cause: e });
  }
}

/** The first value that is defined: flag, then file, then default. */
export function pick<T>(flag: T | undefined, file: T | undefined, dflt: T): T {
  return flag ?? file ?? dflt;
}

/** The flags of `podcrypt agent` that have a config-file counterpart; undefined when not given. */
export interface AgentSettingFlags {
  datastore?: string | undefined;
  namespace?: string | undefined;
  stateDir?: string | undefined;
  clusterCidr?: string[] | undefined;
  underlayIf?: string | undefined;
  wireguardPort?: number | undefined;
  dataplane?: "auto" | "kernel" | "userspace" | undefined;
  heartbeatSeconds?: number | undefined;
  healthAddress?: string | undefined;
  metricsTokenFile?: string | undefined;
  logLevel?: string | undefined;
  notReadyTaint?: boolean | undefined;
}

/** The agent's settings: each the flag, else the file, else the default. */
export interface AgentSettings {
  datastore: string;
  /** Kubernetes Leases namespace; undefined: the datastore's default. */
  namespace: string | undefined;
  stateDir: string;
  clusterCidrs: string[];
  /** Undefined: the interface that holds the underlay address. */
  underlayIf: string | undefined;
  wireguardPort: number;
  dataplane: "auto" | "kernel" | "userspace";
  heartbeatSeconds: number;
  /** Undefined: no health server (`off`). */
  health: { host: string; port: number } | undefined;
  /** Undefined: /metrics open, /statusz for loopback clients only. */
  metricsTokenFile: string | undefined;
  logLevel: string;
  /** Workload gating: taint the node until its tunnels are up (src/agent/gate.ts). */
  notReadyTaint: boolean;
  /** Host encryption's exclusions of the operator (`agent.hostEncryptionExclude`); default none. */
  hostExclude: OperatorExclusions;
}

function health(address: string): { host: string; port: number } | undefined {
  if (address === "off") return undefined;
  const listen = parseListenAddress(address);
  if (listen === undefined)
    throw new ValidationError("--health-address", `"${address}" is not HOST:PORT or off`);
  return listen;
}

/** Resolves the agent's settings from its flags, its configuration file and the environment. */
export function agentSettings(
  o: AgentSettingFlags,
  file: DaemonConfig,
  env: NodeJS.ProcessEnv,
): AgentSettings {
  const cfg = file.agent ?? {};
  const d = AGENT_DEFAULTS;
  return {
    datastore: pick(o.datastore, file.datastore, d.datastore),
    namespace: o.namespace ?? file.namespace ?? (env["POD_NAMESPACE"] || undefined),
    stateDir: pick(o.stateDir, cfg.stateDir, d.stateDir),
    clusterCidrs: o.clusterCidr ?? cfg.clusterCIDRs ?? [],
    underlayIf: o.underlayIf ?? cfg.underlayInterface,
    wireguardPort: pick(o.wireguardPort, cfg.wireguardPort, d.wireguardPort),
    dataplane: pick(o.dataplane, cfg.dataplane, d.dataplane),
    heartbeatSeconds: pick(o.heartbeatSeconds, cfg.heartbeatSeconds, d.heartbeatSeconds),
    health: health(pick(o.healthAddress, cfg.healthAddress, d.healthAddress)),
    metricsTokenFile: o.metricsTokenFile ?? cfg.metricsTokenFile,
    logLevel: pick(o.logLevel, file.log?.level, d.logLevel),
    notReadyTaint: pick(o.notReadyTaint, cfg.notReadyTaint, d.notReadyTaint),
    hostExclude: {
      cidrs: cfg.hostEncryptionExclude?.cidrs ?? [],
      ports: (cfg.hostEncryptionExclude?.ports ?? []).map((p, i) =>
        parsePortEntry(p, `agent.hostEncryptionExclude.ports[${i}]`),
      ),
    },
  };
}

/** The flags of `podcrypt controller` that have a config-file counterpart. */
export interface ControllerSettingFlags {
  datastore?: string | undefined;
  namespace?: string | undefined;
  identity?: string | undefined;
  election?: string | undefined;
  leaseTtl?: number | undefined;
  phaseTimeout?: number | undefined;
  healthAddress?: string | undefined;
  metricsTokenFile?: string | undefined;
  logLevel?: string | undefined;
}

/** The controller's settings: each the flag, else the file, else the default. */
export interface ControllerSettings {
  datastore: string;
  namespace: string | undefined;
  /** The flag, else $POD_NAME, else `host-pid` (given by the caller). */
  identity: string;
  electionName: string;
  leaseTtlSeconds: number;
  /** How long a live node may take to acknowledge a phase before it is skipped (and lags). */
  phaseTimeoutSeconds: number;
  health: { host: string; port: number } | undefined;
  /** Undefined: /metrics open, /statusz for loopback clients only. */
  metricsTokenFile: string | undefined;
  logLevel: string;
  /** ClusterEncryption fields the leader creates "default" with, when there is none. */
  seed: DaemonConfig["cluster"];
}

/** Resolves the controller's settings; `fallbackIdentity` is used without --identity and $POD_NAME. */
export function controllerSettings(
  o: ControllerSettingFlags,
  file: DaemonConfig,
  env: NodeJS.ProcessEnv,
  fallbackIdentity: string,
): ControllerSettings {
  const cfg = file.controller ?? {};
  const d = CONTROLLER_DEFAULTS;
  return {
    datastore: pick(o.datastore, file.datastore, d.datastore),
    namespace: o.namespace ?? file.namespace ?? (env["POD_NAMESPACE"] || undefined),
    // In a pod the pod's name tells replicas apart; elsewhere host and pid do.
    identity: o.identity ?? (env["POD_NAME"] || fallbackIdentity),
    electionName: pick(o.election, cfg.leaderElection?.name, d.electionName),
    leaseTtlSeconds: pick(o.leaseTtl, cfg.leaderElection?.ttlSeconds, d.leaseTtlSeconds),
    phaseTimeoutSeconds: pick(o.phaseTimeout, cfg.phaseTimeoutSeconds, d.phaseTimeoutSeconds),
    health: health(pick(o.healthAddress, cfg.healthAddress, d.healthAddress)),
    metricsTokenFile: o.metricsTokenFile ?? cfg.metricsTokenFile,
    logLevel: pick(o.logLevel, file.log?.level, d.logLevel),
    seed: file.cluster,
  };
}
