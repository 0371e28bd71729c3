import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { PodcryptError } from "../errors/index.js";
import type { ClusterPlan } from "./plan.js";

/** Where the local cluster keeps its state: `$PODCRYPT_HOME` or /var/lib/podcrypt/local. */
export function clusterHome(): string {
  return process.env["PODCRYPT_HOME"] ?? "/var/lib/podcrypt/local";
}

/** A process `cluster up` started, so `down` can stop it even after a crash of `up`. */
export interface ClusterProcess {
  role: "controller" | "agent" | "echo" | "etcd" | "relay";
  name: string;
  pid: number;
  netns?: string;
  log: string;
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

/** Reads the running cluster's state, or undefined when none runs. */
export function readClusterState(home = clusterHome()): ClusterState | undefined {
  const p = statePath(home);
  if (!existsSync(p)) return undefined;
  try {
    return JSON.parse(readFileSync(p, "utf8")) as ClusterState;
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

export function writeClusterState(state: ClusterState, home = clusterHome()): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const p = statePath(home);
  writeFileSync(`${p}.tmp`, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  renameSync(`${p}.tmp`, p);
}

export function removeClusterHome(home = clusterHome()): void {
  rmSync(home, { recursive: true, force: true });
}
