/**
 * `cluster up --prometheus`: a real Prometheus server (Debian's `prometheus`) that scrapes every
 * agent and controller of the local cluster and evaluates deploy/monitoring's alerting rules, so
 * tests and people can watch an alert fire.
 *
 * It runs in a namespace of its own, `pc-prom`, on that namespace's loopback only
 * (127.0.0.1:9090): nothing outside the cluster's namespaces can reach it, and `cluster down`
 * removes it with the other `pc-` namespaces and its data with the cluster's home. The agents
 * serve /metrics on their node namespace's loopback, the controllers on the host's: one relay per
 * node, started inside the node namespace, listens in `pc-prom` at 127.0.0.1:(19100 + node index)
 * and forwards to the agent; one in the host namespace does the same for each controller at
 * 127.0.0.1:(19000 + replica). The agents' targets are a file Prometheus watches (file_sd):
 * `cluster add-node` starts the new node's relay and adds its target, `remove-node` takes it out.
 */
import { spawn } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { stringify } from "yaml";
import { PodcryptError } from "../errors/index.js";
import { projectRoot } from "../paths.js";
import { run } from "../platform/netns/netns.js";
import { NETNS_PREFIX, type PlannedNode } from "./plan.js";
import { startDaemon, waitForLog } from "./processes.js";
import type { ClusterProcess } from "./state.js";

/** The namespace Prometheus runs in. */
export const PROMETHEUS_NETNS = `${NETNS_PREFIX}prom`;
/** Where it listens, inside {@link PROMETHEUS_NETNS} only. */
export const PROMETHEUS_ADDRESS = "127.0.0.1:9090";
/** Rule evaluation interval: short, so a test sees an alert within seconds. */
export const PROMETHEUS_INTERVAL = "1s";
/** Scrape interval and timeout: above the agent's wait for a hung data plane (OBSERVE_TIMEOUT_MS). */
export const PROMETHEUS_SCRAPE = "3s";

const AGENT_PORT_BASE = 19100;
const CONTROLLER_PORT_BASE = 19000;

/** A free TCP port on the host's loopback (for a controller's --health-address). */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, resolve);
  });
  const address = server.address();
  await new Promise((r) => server.close(r));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** A scrape target: where its relay listens in {@link PROMETHEUS_NETNS}, `instance` its name. */
interface Target {
  name: string;
  port: number;
}

const staticTargets = (list: readonly Target[]) =>
  list.map((t) => ({ targets: [`127.0.0.1:${t.port}`], labels: { instance: t.name } }));

/**
 * The Prometheus configuration: the controllers as static targets, the agents from `agentsFile`
 * (file_sd, re-read when it changes, so nodes added later are scraped without a restart).
 */
export function prometheusConfig(
  rulesFile: string,
  agentsFile: string,
  controllers: readonly Target[],
): string {
  return stringify({
    global: { scrape_interval: PROMETHEUS_SCRAPE, evaluation_interval: PROMETHEUS_INTERVAL },
    rule_files: [rulesFile],
    scrape_configs: [
      {
        job_name: "podcrypt-agent",
        scrape_timeout: PROMETHEUS_SCRAPE,
        file_sd_configs: [{ files: [agentsFile], refresh_interval: "5s" }],
      },
      {
        job_name: "podcrypt-controller",
        scrape_timeout: PROMETHEUS_SCRAPE,
        static_configs: staticTargets(controllers),
      },
    ],
  });
}

/** The file of the agents' targets in the cluster's home; absent when no Prometheus runs. */
function agentTargetsFile(home: string): string {
  return join(home, "prometheus", "agents.json");
}

/** Rewrites the agents' targets file in one step (Prometheus never reads half a file). */
function writeAgentTargets(file: string, agents: readonly Target[]): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(staticTargets(agents), null, 2), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

function readAgentTargets(file: string): Target[] {
  const list = JSON.parse(readFileSync(file, "utf8")) as ReturnType<typeof staticTargets>;
  return list.map((t) => ({ name: t.labels.instance, port: Number(t.targets[0]!.split(":")[1]) }));
}

/** Starts the relay from {@link PROMETHEUS_NETNS} to node `n`'s agent's /metrics. */
async function startAgentRelay(
  home: string,
  n: PlannedNode,
  add: (p: ClusterProcess) => void,
): Promise<Target> {
  const target = { name: n.name, port: AGENT_PORT_BASE + n.index };
  await startRelay(home, `metrics-${n.name}`, "127.0.0.1:9809", target.port, add, n.netns);
  return target;
}

async function startRelay(
  home: string,
  name: string,
  to: string,
  listenPort: number,
  add: (p: ClusterProcess) => void,
  netns?: string,
): Promise<void> {
  const p = startDaemon(
    home,
    "relay",
    name,
    ["debug", "relay", "--to", to, "--listen", `127.0.0.1:${listenPort}`, "--netns", PROMETHEUS_NETNS],
    netns,
  );
  add(p);
  await waitForLog(p, "relaying", 20_000);
}

/**
 * `cluster add-node` with Prometheus running: starts the relay to node `n`'s agent and adds its
 * target. Does nothing on a cluster without Prometheus.
 */
export async function scrapeAddedNode(
  home: string,
  n: PlannedNode,
  add: (p: ClusterProcess) => void,
): Promise<void> {
  const file = agentTargetsFile(home);
  if (!existsSync(file)) return;
  const target = await startAgentRelay(home, n, add);
  writeAgentTargets(file, [...readAgentTargets(file).filter((t) => t.name !== n.name), target]);
}

/** `cluster remove-node`: takes node `name`'s target out (its relay goes with its namespace). */
export function unscrapeRemovedNode(home: string, name: string): void {
  const file = agentTargetsFile(home);
  if (!existsSync(file)) return;
  writeAgentTargets(
    file,
    readAgentTargets(file).filter((t) => t.name !== name),
  );
}

/** GETs `path` from the local cluster's Prometheus (from inside its namespace); the body. */
export async function prometheusGet(path: string): Promise<string> {
  const script =
    `fetch(${JSON.stringify(`http://${PROMETHEUS_ADDRESS}${path}`)})` +
    `.then(async (r) => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 1); },` +
    ` (e) => { process.stderr.write(String(e)); process.exit(1); })`;
  return run("ip", ["netns", "exec", PROMETHEUS_NETNS, process.execPath, "-e", script], {
    timeoutMs: 10_000,
  });
}

/**
 * Starts the relays and Prometheus (see the file comment), records each process with `add`, and
 * waits until Prometheus is ready.
 */
export async function startPrometheus(
  home: string,
  nodes: readonly PlannedNode[],
  controllers: ReadonlyArray<{ name: string; port: number }>,
  add: (p: ClusterProcess) => void,
): Promise<void> {
  await run("ip", ["netns", "add", PROMETHEUS_NETNS]);
  await run("ip", ["-n", PROMETHEUS_NETNS, "link", "set", "lo", "up"]);
  const agents: Target[] = [];
  for (const n of nodes) agents.push(await startAgentRelay(home, n, add));
  const scraped = controllers.map((c, i) => ({ name: c.name, port: CONTROLLER_PORT_BASE + i }));
  for (const [i, c] of controllers.entries())
    await startRelay(home, `metrics-${c.name}`, `127.0.0.1:${c.port}`, scraped[i]!.port, add);

  const dir = join(home, "prometheus");
  mkdirSync(join(dir, "data"), { recursive: true, mode: 0o700 });
  const rules = join(dir, "podcrypt.rules.yaml");
  copyFileSync(join(projectRoot(), "deploy", "monitoring", "podcrypt.rules.yaml"), rules);
  const agentsFile = agentTargetsFile(home);
  writeAgentTargets(agentsFile, agents);
  const config = join(dir, "prometheus.yml");
  writeFileSync(config, prometheusConfig(rules, agentsFile, scraped), { mode: 0o600 });
  const log = join(home, "logs", "prometheus.log");
  mkdirSync(join(home, "logs"), { recursive: true, mode: 0o700 });
  const fd = openSync(log, "a", 0o600);
  const child = spawn(
    "ip",
    [
      "netns",
      "exec",
      PROMETHEUS_NETNS,
      "prometheus",
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=${PROMETHEUS_ADDRESS}`,
      "--storage.tsdb.retention.time=1d",
    ],
    { detached: true, stdio: ["ignore", fd, fd] },
  );
  closeSync(fd);
  child.on("error", () => undefined);
  child.unref();
  if (child.pid === undefined)
    throw new PodcryptError("EPROMETHEUS", "cannot start prometheus (Debian package prometheus)");
  add({ role: "prometheus", name: "prometheus", pid: child.pid, netns: PROMETHEUS_NETNS, log });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new PodcryptError("EPROMETHEUS", `prometheus exited (${child.exitCode}); see ${log}`);
    const ready = await prometheusGet("/-/ready").then(
      () => true,
      () => false,
    );
    if (ready) return;
    if (Date.now() > deadline)
      throw new PodcryptError("EPROMETHEUS", `prometheus not ready after 30 s; see ${log}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
