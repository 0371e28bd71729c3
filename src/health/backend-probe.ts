/**
 * The agent's reconciles as its health endpoints and metrics see them: {@link instrumentBackend}
 * wraps the node's DataplaneBackend (the agent calls `reconcile` on every pass once the cluster
 * is initialised, at least every resync period), recording when reconciles start, succeed and
 * fail.
 */
import type { Clock } from "../clock.js";
import type { DataplaneBackend } from "../dataplane/types.js";
import { chainText } from "../errors/describe.js";

/** What the wrapper counted; wall-clock ms. */
export class ReconcileRecord {
  reconciles = 0;
  failures = 0;
  lastOkAt: number | undefined;
  /** First failure of the current run of failures; undefined after a success. */
  failingSince: number | undefined;
  /** The last failure with its causes, one line (only `/statusz` shows it). */
  lastError: string | undefined;
  /** When the reconcile in progress started, if one is. */
  inProgressSince: number | undefined;
  /** When the last reconcile ended (either way). */
  lastEndedAt: number | undefined;
}

/** `backend` with its reconciles recorded in the returned ReconcileRecord. */
export function instrumentBackend(
  backend: DataplaneBackend,
  clock: Clock,
): { backend: DataplaneBackend; record: ReconcileRecord } {
  const record = new ReconcileRecord();
  return {
    record,
    backend: {
      get kind() {
        return backend.kind;
      },
      reconcile: async (desired, privateKey) => {
        record.inProgressSince = clock.wallNow();
        try {
          await backend.reconcile(desired, privateKey);
          record.lastOkAt = clock.wallNow();
          record.failingSince = undefined;
          record.lastError = undefined;
        } catch (e) {
          record.failures++;
          record.failingSince ??= clock.wallNow();
          record.lastError = chainText(e);
          throw e;
        } finally {
          record.reconciles++;
          record.inProgressSince = undefined;
          record.lastEndedAt = clock.wallNow();
        }
      },
      observe: () => backend.observe(),
      close: () => backend.close(),
      saInstance: () => backend.saInstance(),
      ...(backend.strictDrops === undefined ? {} : { strictDrops: () => backend.strictDrops!() }),
      ...(backend.handOverDaemons === undefined ? {} : { handOverDaemons: () => backend.handOverDaemons!() }),
    },
  };
}
