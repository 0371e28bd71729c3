/**
 * The local cluster's supervisor: what kubelet and a Deployment do for podcrypt on Kubernetes. One
 * small process per cluster (`podcrypt cluster supervise`, started by `cluster up`, recorded in
 * cluster.json as role `supervisor`) restarts every long-running process the cluster started (the
 * controllers, the agents, the echo pods, relays, etcd) when it dies.
 *
 * It adopts the processes `cluster up` and `add-node` start (cluster.json records their argv) and
 * checks them every {@link CHECK_MS}; the ones it restarted itself are its children, so their exit
 * code or signal is logged too. Restarts back off as kubelet's do: the first at once, then 1 s,
 * 2 s, 4 s ... up to {@link MAX_BACKOFF_MS}, and the count of quick deaths is forgotten once a
 * process has run for {@link STABLE_MS}. The current pid, restart count and last restart of every
 * process are kept in `<home>/supervisor.json`, which {@link readClusterState} lays over
 * cluster.json, so `status`, `down` and tests see the process that runs now.
 *
 * Its own death leaves the processes running (as pods survive a kubelet restart); `status` says
 * the supervisor is down and `podcrypt cluster supervise` starts a new one, which adopts them.
 */
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../log/logger.js";
import { alive, netnsInode, startDaemon } from "./processes.js";
import type { ClusterProcess, ClusterState } from "./state.js";

/** How often the supervisor looks at its processes (ms). */
export const CHECK_MS = 100;
/** Longest pause before a restart (ms). */
export const MAX_BACKOFF_MS = 30_000;
/** A process that ran this long (ms) is stable: its next death restarts at once again. */
export const STABLE_MS = 60_000;

/** One supervised process as the supervisor last saw it. */
export interface SupervisedRecord {
  pid: number;
  /** Restarts since the cluster came up. */
  restarts: number;
  /** When the last restart happened (ISO 8601). */
  lastRestart?: string;
  /** How the previous instance ended, when known: `exit code N` or `signal SIGKILL`. */
  lastExit?: string;
}

/** `<home>/supervisor.json`. */
export interface SupervisorRecord {
  pid: number;
  startedAt: string;
  processes: Record<string, SupervisedRecord>;
}

export function supervisorPath(home: string): string {
  return join(home, "supervisor.json");
}

/** The supervisor's record, or undefined when none was written (or it is unreadable mid-write). */
export function readSupervisorRecord(home: string): SupervisorRecord | undefined {
  try {
    return JSON.parse(readFileSync(supervisorPath(home), "utf8")) as SupervisorRecord;
  } catch {
    return undefined;
  }
}

/**
 * Pause before restarting a process that died `quickDeaths` times in a row without running for
 * {@link STABLE_MS} (the count includes this death): 0 for the first, then 1 s doubling up to
 * {@link MAX_BACKOFF_MS}.
 */
export function restartDelayMs(quickDeaths: number): number {
  if (quickDeaths <= 1) return 0;
  return Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (quickDeaths - 2));
}

/** Whether cluster.json asks the supervisor to keep `p` running. */
export function supervised(p: ClusterProcess): p is ClusterProcess & { argv: string[] } {
  return p.argv !== undefined && p.role !== "supervisor";
}

interface Watched {
  proc: ClusterProcess & { argv: string[] };
  /** The pid cluster.json recorded last time it was read: a change means someone else restarted it. */
  recordedPid: number;
  record: SupervisedRecord;
  startedAt: number;
  quickDeaths: number;
  /** When a restart is due (ms since the epoch), once the death was noticed. */
  restartAt?: number;
  /** How the supervisor's own child ended, when it was one. */
  exit?: string;
  /** Its namespace is no longer the one it ran in (the cluster was taken down): never restarted. */
  gone?: boolean;
}

/**
 * Whether `p`'s namespace is still the one it was started in. A namespace name is reused by the
 * next cluster: a supervisor left over from a cluster whose `down` never ran must not start its
 * agents into another cluster's nodes.
 */
export function namespaceIntact(p: ClusterProcess): boolean {
  if (p.netns === undefined) return true;
  const now = netnsInode(p.netns);
  return now !== undefined && (p.netnsInode === undefined || now === p.netnsInode);
}

/**
 * Runs the supervisor of the cluster in `home` until `signal` aborts: reads cluster.json when it
 * changes, restarts what died, writes supervisor.json. `readState` reads cluster.json as written
 * (without the supervisor's overlay).
 */
export async function runSupervisor(
  home: string,
  readState: () => ClusterState | undefined,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  const watched = new Map<string, Watched>();
  const previous = readSupervisorRecord(home);
  let stateStamp = -1;
  const write = (): void => {
    const rec: SupervisorRecord = {
      pid: process.pid,
      startedAt: new Date(started).toISOString(),
      processes: Object.fromEntries([...watched].map(([k, w]) => [k, w.record])),
    };
    const p = supervisorPath(home);
    writeFileSync(`${p}.tmp`, JSON.stringify(rec, null, 2) + "\n", { mode: 0o600 });
    renameSync(`${p}.tmp`, p);
  };
  const started = Date.now();
  const sync = (): void => {
    const p = join(home, "cluster.json");
    const stamp = existsSync(p) ? statSync(p).mtimeMs : -1;
    if (stamp === stateStamp) return;
    stateStamp = stamp;
    const state = readState();
    const want = new Map((state?.processes ?? []).filter(supervised).map((x) => [x.name, x]));
    for (const name of [...watched.keys()])
      if (!want.has(name)) {
        watched.delete(name);
        logger.info({ process: name }, "no longer supervised (removed from the cluster)");
      }
    for (const [name, proc] of want) {
      const w = watched.get(name);
      if (w === undefined) {
        // Adopt: an earlier supervisor's record (its restarts, its pid) wins over cluster.json's.
        const old = previous?.processes[name];
        const pid = old !== undefined && alive(old.pid) ? old.pid : proc.pid;
        watched.set(name, {
          proc,
          recordedPid: proc.pid,
          record: { ...old, pid, restarts: old?.restarts ?? 0 },
          startedAt: Date.now(),
          quickDeaths: 0,
        });
      } else if (proc.pid !== w.recordedPid) {
        // Someone restarted it by hand and recorded the new process: follow that one.
        w.proc = proc;
        w.recordedPid = proc.pid;
        w.record.pid = proc.pid;
        delete w.restartAt;
      }
    }
    write();
  };
  const restart = (name: string, w: Watched): void => {
    const p = w.proc;
    const next = startDaemon(home, p.role, p.name, p.argv, p.netns, p.env ?? {}, (code, sig) => {
      const cur = watched.get(name);
      if (cur?.record.pid === next.pid) cur.exit = sig !== null ? `signal ${sig}` : `exit code ${code}`;
    });
    w.record = {
      pid: next.pid,
      restarts: w.record.restarts + 1,
      lastRestart: new Date().toISOString(),
      ...(w.exit === undefined ? {} : { lastExit: w.exit }),
    };
    delete w.exit;
    delete w.restartAt;
    w.startedAt = Date.now();
    write();
    logger.warn({ process: name, processPid: next.pid, restarts: w.record.restarts }, "restarted");
  };
  /** False once every namespace of the cluster is gone or another's: nothing left to supervise. */
  const check = (): boolean => {
    sync();
    const now = Date.now();
    for (const [name, w] of watched) {
      if (w.gone === true) continue;
      if (w.restartAt === undefined) {
        if (alive(w.record.pid)) continue;
        if (!namespaceIntact(w.proc)) {
          w.gone = true;
          logger.warn(
            { process: name, netns: w.proc.netns },
            "process died and its namespace is gone or belongs to another cluster: not restarted",
          );
          continue;
        }
        w.quickDeaths = now - w.startedAt >= STABLE_MS ? 1 : w.quickDeaths + 1;
        const delay = restartDelayMs(w.quickDeaths);
        w.restartAt = now + delay;
        logger.warn(
          {
            process: name,
            processPid: w.record.pid,
            ...(w.exit === undefined ? {} : { exit: w.exit }),
            restartInMs: delay,
          },
          "process died",
        );
      }
      if (w.restartAt <= now) {
        if (namespaceIntact(w.proc)) restart(name, w);
        else w.gone = true;
      }
    }
    const bound = [...watched.values()].filter((w) => w.proc.netns !== undefined);
    return bound.length === 0 || bound.some((w) => w.gone !== true);
  };
  logger.info({ home }, "supervising the local cluster");
  while (!signal.aborted) {
    try {
      if (!check()) {
        logger.warn("every namespace of the cluster is gone: the supervisor stops");
        return;
      }
    } catch (e) {
      // A failed read or spawn is tried again on the next look; the supervisor itself stays.
      logger.error({ err: e }, "supervision pass failed");
    }
    await sleep(CHECK_MS, undefined, { signal }).catch(() => undefined);
  }
  logger.info("supervisor stopping (the processes keep running)");
}
