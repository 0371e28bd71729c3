/**
 * Whether a daemon reaches its datastore, learnt from the calls it makes anyway (an agent
 * heartbeats every few seconds), so probes cost the datastore nothing while the daemon is busy;
 * only when it has been quiet does a check make one call of its own.
 *
 * {@link observeDatastore} wraps a Datastore: every call goes through unchanged and its outcome is
 * recorded. A call that fails with UnavailableError (or anything not a datastore answer) counts as
 * unreachable; typed answers (conflict, not found, invalid) show the store was reached. On the way
 * it keeps the newest ClusterEncryption it saw, for the epoch and phase metrics.
 */
import type { Clock } from "../clock.js";
import { isDatastoreError, isUnavailableError } from "../datastore/errors.js";
import type {
  Collection,
  Datastore,
  ListResult,
  Stored,
  Watch,
  WatchEvent,
  WatchListener,
} from "../datastore/types.js";
import { isValidationError } from "../errors/index.js";
import { CLUSTER_ENCRYPTION_NAME, type ClusterEncryption, type ResourceKind } from "../model/index.js";
import type { CheckResult } from "./server.js";

/** What the wrapper learnt about the datastore. */
export class Reachability {
  /** Wall-clock ms of the last call that reached the store, and of the last that did not. */
  lastOkAt: number | undefined;
  lastFailAt: number | undefined;
  lastError: string | undefined;
  /** Whether the call that completed last reached the store. */
  private lastReached = false;
  /** The newest ClusterEncryption "default" seen through the store. */
  cluster: ClusterEncryption | undefined;

  constructor(private readonly clock: Clock) {}

  /** Records the outcome of one call. */
  record(e?: unknown): void {
    const now = this.clock.wallNow();
    const reached =
      e === undefined ||
      isValidationError(e) ||
      (isDatastoreError(e) && !isUnavailableError(e) && e.code !== "EDS_CLOSED");
    this.lastReached = reached;
    if (reached) this.lastOkAt = now;
    else {
      this.lastFailAt = now;
      this.lastError = e instanceof Error ? e.message : String(e);
    }
  }

  /** Whether the last call reached the store, within `freshMs`. */
  fresh(freshMs: number): boolean {
    const now = this.clock.wallNow();
    return this.lastReached && this.lastOkAt !== undefined && now - this.lastOkAt <= freshMs;
  }

  /**
   * Reachable if a call reached the store within `freshMs` and none failed since; otherwise one
   * `probe` call decides (failing after `timeoutMs`).
   */
  async check(probe: () => Promise<unknown>, freshMs: number, timeoutMs = 2000): Promise<CheckResult> {
    if (this.fresh(freshMs)) return { ok: true, detail: "datastore reachable" };
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        probe(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      this.record();
    } catch (e) {
      this.record(e);
    } finally {
      clearTimeout(timer);
    }
    return this.fresh(freshMs)
      ? { ok: true, detail: "datastore reachable" }
      : {
          ok: false,
          code: "datastore-unreachable",
          detail: `datastore unreachable: ${this.lastError ?? "no answer"}`,
        };
  }

  forgetCluster(kind: ResourceKind, key: string): void {
    if (kind === "clusterencryptions" && key === CLUSTER_ENCRYPTION_NAME) this.cluster = undefined;
  }

  observeCluster(kind: ResourceKind, value: unknown, key: string): void {
    if (kind === "clusterencryptions" && key === CLUSTER_ENCRYPTION_NAME)
      this.cluster = value as ClusterEncryption;
  }
}

/** Wraps `store`: the same calls, their outcomes recorded in the returned Reachability. */
export function observeDatastore(store: Datastore, clock: Clock): { store: Datastore; reach: Reachability } {
  const reach = new Reachability(clock);
  const track = async <T>(p: Promise<T>): Promise<T> => {
    try {
      const v = await p;
      reach.record();
      return v;
    } catch (e) {
      reach.record(e);
      throw e;
    }
  };
  const collections = new Map<ResourceKind, Collection<ResourceKind>>();
  const wrapCollection = <K extends ResourceKind>(kind: K): Collection<K> => {
    const inner = store.collection(kind);
    const seen = (s: Stored<unknown> | undefined): void => {
      if (s !== undefined) reach.observeCluster(kind, s.value, s.key);
    };
    return {
      kind,
      get: async (key) => {
        const s = await track(inner.get(key));
        seen(s);
        return s;
      },
      list: async () => {
        const l: ListResult<unknown> = await track(inner.list());
        for (const s of l.items) seen(s);
        return l as Awaited<ReturnType<Collection<K>["list"]>>;
      },
      create: (v, o) => track(inner.create(v, o)),
      update: (v, o) => track(inner.update(v, o)),
      delete: (k, o) => track(inner.delete(k, o)),
      watch: (from, listener): Promise<Watch> =>
        track(
          inner.watch(from, {
            event: (e: WatchEvent<never>) => {
              reach.record();
              if (e.type === "ADDED" || e.type === "MODIFIED") seen(e.object);
              else if (e.type === "DELETED") reach.forgetCluster(kind, e.key);
              return listener.event(e);
            },
            gone: (err) => listener.gone(err),
            error: (err) => {
              reach.record(err);
              listener.error?.(err);
            },
          } as WatchListener<never>),
        ),
    };
  };
  const wrapped: Datastore = {
    get backend() {
      return store.backend;
    },
    collection: <K extends ResourceKind>(kind: K): Collection<K> => {
      let c = collections.get(kind);
      if (c === undefined) {
        c = wrapCollection(kind) as unknown as Collection<ResourceKind>;
        collections.set(kind, c);
      }
      return c as unknown as Collection<K>;
    },
    grantLease: (ttl, o) => track(store.grantLease(ttl, o)),
    campaign: (name, identity, o) => track(store.campaign(name, identity, o)),
    leader: (name) => track(store.leader(name)),
    writePolicyStatus: (key, status, o) => track(store.writePolicyStatus(key, status, o)),
    // Liveness renewals are the agent's steady calls: each one that settles tells reachability.
    holdLiveness: async (node, ttl) => {
      const h = await track(store.holdLiveness(node, ttl));
      return { node: h.node, renew: () => track(h.renew()), release: () => h.release() };
    },
    followLiveness: (onChange) => track(store.followLiveness(onChange)),
    heartbeats: () => track(store.heartbeats()),
    close: () => store.close(),
  };
  return { store: wrapped, reach };
}
