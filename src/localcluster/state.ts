import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { PodcryptError, ValidationError } from "../errors/index.js";
import type { ClusterPlan, PlannedNode } from "./plan.js";
import { readSupervisorRecord } from "./supervisor.js";

/** Where the local cluster keeps its state: `$PODCRYPT_HOME` or /var/lib/podcrypt/local. */
export function clusterHome(): string {
  return process.env["PODCRYPT_HOME"] ?? "/var/lib/podcrypt/local";
}

/** A process `cluster up` started, so `down` can stop it even after a crash of `up`. */
export interface ClusterProcess {
  role: "controller" | "agent" | "echo" | "etcd" | "relay" | "supervisor" | "prometheus";
  name: string;
  /** The process running now (the supervisor's record, when it restarted it, wins over the first). */
  pid: number;
  netns?: string;
  /**
   * The inode of `/run/netns/<netns>` when the process started: names are reused by the next
   * cluster, inodes are not, so the supervisor restarts a process only into the namespace it ran in.
   */
  netnsInode?: number;
  log: string;
  /** The podcrypt arguments it runs with: the supervisor restarts a process that has them. */
  argv?: string[];
  /** Environment on top of the cluster's it runs with. */
  env?: Record<string, string>;
  /** Restarts by the supervisor (from supervisor.json). */
  restarts?: number;
  /** The last restart (ISO 8601), and how the instance before it ended when known. */
  lastRestart?: string;
  lastExit?: string;
}

/** The record of a running local cluster. */
export interface ClusterState {
  version: 1;
  createdAt: string;
  plan: ClusterPlan;
  /** Datastore URL the daemons use (`local:DIR`, `etcd://HOST:PORT`, `kubernetes:KUBECONFIG`). */
  datastore: string;
  /** The controller's and the agents' own datastore URLs, when the config gave them (else `datastore`). */
  datastores?: { controller: string; agent: string };
  processes: ClusterProcess[];
}

export function statePath(home = clusterHome()): string {
  return join(home, "cluster.json");
}

/**
 * Reads the running cluster's state, or undefined when none runs. The supervisor's record
 * (src/localcluster/supervisor.ts) is laid over it: the pid of the instance running now and its
 * restarts; `raw` reads cluster.json as written.
 */
export function readClusterState(home = clusterHome(), raw = false): ClusterState | undefined {
  const p = statePath(home);
  if (!existsSync(p)) return undefined;
  try {
    const state = JSON.parse(readFileSync(p, "utf8")) as ClusterState;
    const sup = raw ? undefined : readSupervisorRecord(home);
    if (sup !== undefined)
      state.processes = state.processes.map((x) => {
        const r = sup.processes[x.name];
        return r === undefined ? x : { ...x, ...r };
      });
    return state;
  } catch (cause) {
    throw new PodcryptError("ESTATE", `cannot read ${p}; run \`podcrypt cluster down\` to clean up`, {
      cause,
    });
  }
}

/** The running cluster's state, or a clear error telling the user to start one. */
export function requireClusterState(home = clusterHome()): ClusterState {
  const s = readClusterState(home);
  if (s === undefined) {
    throw new PodcryptError(
      "ENOCLUSTER",
      "no local cluster is running: start one with `podcrypt cluster up`",
    );
  }
  return s;
}

/** The node `name` of `state`'s plan, or a ValidationError naming the nodes there are. */
export function plannedNode(state: ClusterState, name: string): PlannedNode {
  const node = state.plan.nodes.find((n) => n.name === name);
  if (node === undefined)
    throw new ValidationError(
      "node",
      `no node named ${name} (nodes: ${state.plan.nodes.map((n) => n.name).join(", ")})`,
    );
  return node;
}

export function writeClusterState(state: ClusterState, home = clusterHome()): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const p = statePath(home);
  writeFileSync(`${p}.tmp`, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  renameSync(`${p}.tmp`, p);
}

/**
 * Removes everything in the cluster's home but the directory itself, which may be a mount point
 * (a volume) that cannot be removed.
 */
export function removeClusterHome(home = clusterHome()): void {
  if (!existsSync(home)) return;
  for (const f of readdirSync(home)) rmSync(join(home, f), { recursive: true, force: true });
}
