/**
 * What `/healthz` and `/readyz` answer, as functions of what the daemons recorded and the time.
 *
 * Liveness fails only when restarting would help: a loop that stopped or hangs. It never depends on
 * the datastore, so an API server outage does not restart every agent at once (a restart of an
 * agent container also restarts the userspace data planes it runs).
 *
 * - agent `/healthz`: no reconcile hangs and reconciles keep coming (at least every resync) once
 *   the cluster is initialised.
 * - agent `/readyz`: the datastore is reachable, and the last reconcile succeeded or the failures
 *   began less than {@link HEALTH_TIMING.failureGraceMs} ago.
 * - controller `/healthz`: it campaigns, and as leader its steps do not keep failing.
 * - controller `/readyz`: the datastore is reachable and it campaigns, as leader (steps not
 *   failing past the grace) or as a standby.
 */
import type { ControllerHealth } from "../controller/controller.js";
import type { ReconcileRecord } from "./backend-probe.js";
import type { Reachability } from "./datastore-probe.js";
import type { CheckResult } from "./server.js";

/** Thresholds of the checks. */
export const HEALTH_TIMING = {
  /** Reconcile (or controller step) failures younger than this keep a daemon ready. 30 s. */
  failureGraceMs: 30_000,
  /** A reconcile running this long, or none for this long, means a stuck loop. 5 min. */
  stuckMs: 300_000,
  /** A datastore call that succeeded this recently makes a probe call unnecessary. 15 s. */
  datastoreFreshMs: 15_000,
} as const;

const secs = (ms: number): string => `${Math.round(ms / 1000)} s`;

/** Agent liveness. */
export function agentLiveness(rec: ReconcileRecord, reach: Reachability, now: number): CheckResult {
  if (rec.inProgressSince !== undefined && now - rec.inProgressSince > HEALTH_TIMING.stuckMs)
    return {
      ok: false,
      code: "reconcile-hung",
      detail: `a reconcile has been running for ${secs(now - rec.inProgressSince)}`,
    };
  const initialised = reach.cluster?.applied !== undefined;
  if (initialised && rec.lastEndedAt !== undefined && now - rec.lastEndedAt > HEALTH_TIMING.stuckMs)
    return {
      ok: false,
      code: "reconcile-stuck",
      detail: `no reconcile for ${secs(now - rec.lastEndedAt)}: the agent's loop is stuck`,
    };
  return {
    ok: true,
    detail: initialised ? "reconcile loop running" : "waiting for the controller to initialise the cluster",
  };
}

/** The reconcile half of agent readiness. */
export function agentReconcileReadiness(rec: ReconcileRecord, now: number): CheckResult {
  if (rec.lastOkAt === undefined && rec.failingSince === undefined)
    return {
      ok: false,
      code: "no-reconcile-yet",
      detail: "no reconcile yet (the controller initialises the cluster first)",
    };
  if (rec.failingSince !== undefined && now - rec.failingSince > HEALTH_TIMING.failureGraceMs)
    return {
      ok: false,
      code: "reconcile-failing",
      detail: `reconcile failing for ${secs(now - rec.failingSince)}: ${rec.lastError ?? "unknown error"}`,
    };
  if (rec.failingSince !== undefined)
    return {
      ok: true,
      detail: `reconcile failing for ${secs(now - rec.failingSince)}, within the grace period`,
    };
  return { ok: true, detail: "last reconcile succeeded" };
}

/** Combines results: ok when all are, details joined, the failing ones' codes joined with ",". */
export function allOf(...results: CheckResult[]): CheckResult {
  const ok = results.every((r) => r.ok);
  const detail = results.map((r) => r.detail).join("; ");
  if (ok) return { ok, detail };
  const codes = results.filter((r) => !r.ok).map((r) => r.code ?? "failed");
  return { ok, code: codes.join(","), detail };
}

/** Controller liveness. */
export function controllerLiveness(h: ControllerHealth, now: number): CheckResult {
  if (!h.campaigning) return { ok: false, code: "not-campaigning", detail: "not campaigning for leadership" };
  if (h.leader && h.failingSince !== undefined && now - h.failingSince > HEALTH_TIMING.stuckMs)
    return {
      ok: false,
      code: "leader-steps-failing",
      detail: `leader whose steps have failed for ${secs(now - h.failingSince)}`,
    };
  return { ok: true, detail: h.leader ? "leader" : "standby" };
}

/** The controller half of controller readiness. */
export function controllerReadiness(h: ControllerHealth, now: number): CheckResult {
  if (!h.campaigning) return { ok: false, code: "not-campaigning", detail: "not campaigning for leadership" };
  if (!h.leader) return { ok: true, detail: "standby, campaigning" };
  if (h.failingSince !== undefined && now - h.failingSince > HEALTH_TIMING.failureGraceMs)
    return {
      ok: false,
      code: "leader-steps-failing",
      detail: `leader whose steps have failed for ${secs(now - h.failingSince)}`,
    };
  return { ok: true, detail: "leader" };
}
