/**
 * A Datastore whose watches of one kind share one upstream watch, fanned out in this process: for
 * simulating hundreds of agents in one Node.js process (bench/scale). On a real cluster every agent
 * runs on its own node and decodes each event once, on its own core; here they would all decode
 * every event on the same thread (500 agents × 500 nodes' writes), which measures that thread's
 * decode throughput instead of the protocol. Reads and writes (get, list, create, update, delete,
 * leases) go to the wrapped store unchanged: every agent still writes its own Node through it.
 *
 * Semantics are those of {@link Collection.watch}: a subscriber gets exactly the events after its
 * `fromRevision`, in order, each once. The fan-out keeps the recent events ({@link KEEP_MS}) so a
 * subscriber that listed a moment ago starts where it listed; one that asks for an older revision
 * gets a watch of its own. Revisions are compared as integers, which holds for etcd's mod_revision
 * (the only store the bench uses) and the local and memory stores, not for Kubernetes.
 */
import type {
  Collection,
  Datastore,
  LiveNodes,
  Revision,
  Watch,
  WatchEvent,
  WatchListener,
} from "../../src/datastore/types.js";
import type { ResourceByKind, ResourceKind } from "../../src/model/index.js";

/** How long delivered events stay available to subscribers that start behind the live stream. */
const KEEP_MS = 30_000;

interface Subscriber<T> {
  readonly listener: WatchListener<T>;
  revision: Revision;
  /** Events wait for the subscriber's previous one when it returned a promise. */
  queue: Promise<void> | undefined;
}

/** Hands `e` to the subscriber's listener; a promise if the listener returned one. */
function run<T>(s: Subscriber<T>, e: WatchEvent<T>): Promise<void> | undefined {
  s.revision = e.revision;
  try {
    const r = s.listener.event(e);
    if (r instanceof Promise) return r.catch((err: unknown) => s.listener.error?.(err as Error));
  } catch (err) {
    s.listener.error?.(err as Error);
  }
  return undefined;
}

/** One upstream watch of a kind and the subscribers it feeds. */
class FanOut<T> {
  private readonly subs = new Set<Subscriber<T>>();
  private readonly recent: Array<{ at: number; e: WatchEvent<T> }> = [];
  /** Events after this revision are all in `recent` or still to come. */
  private from = 0n;
  private upstream: Promise<Watch> | undefined;

  constructor(
    private readonly open: (from: Revision, l: WatchListener<T>) => Promise<Watch>,
    private readonly onGone: () => void,
  ) {}

  /** Whether a subscriber starting at `rev` can be fed from this fan-out. */
  covers(rev: Revision): boolean {
    return this.upstream === undefined || BigInt(rev) >= this.from;
  }

  async subscribe(fromRevision: Revision, listener: WatchListener<T>): Promise<Watch> {
    if (this.upstream === undefined) {
      this.from = BigInt(fromRevision);
      this.upstream = this.open(fromRevision, {
        event: (e) => this.deliver(e),
        gone: (err) => {
          this.onGone();
          for (const s of this.subs) s.listener.gone(err);
          this.subs.clear();
        },
        error: (err) => {
          for (const s of this.subs) s.listener.error?.(err);
        },
      });
    }
    await this.upstream;
    const sub: Subscriber<T> = { listener, revision: fromRevision, queue: undefined };
    // Synchronously: the backlog after `fromRevision`, then live events as they come.
    const start = BigInt(fromRevision);
    for (const r of this.recent) if (BigInt(r.e.revision) > start) this.feed(sub, r.e);
    this.subs.add(sub);
    return {
      get revision() {
        return sub.revision;
      },
      close: async () => {
        this.subs.delete(sub);
        await sub.queue;
      },
    };
  }

  private deliver(e: WatchEvent<T>): void {
    const now = Date.now();
    this.recent.push({ at: now, e });
    let drop = 0;
    while (drop < this.recent.length && now - this.recent[drop]!.at > KEEP_MS) drop++;
    if (drop > 0) {
      this.from = BigInt(this.recent[drop - 1]!.e.revision);
      this.recent.splice(0, drop);
    }
    for (const s of this.subs) this.feed(s, e);
  }

  private feed(s: Subscriber<T>, e: WatchEvent<T>): void {
    // In order: behind the subscriber's pending event, if its listener returned a promise.
    const r = s.queue === undefined ? run(s, e) : s.queue.then(() => run(s, e));
    if (r === undefined) return;
    const p: Promise<void> = r.then(() => {
      if (s.queue === p) s.queue = undefined;
    });
    s.queue = p;
  }

  async close(): Promise<void> {
    this.subs.clear();
    if (this.upstream !== undefined) await (await this.upstream).close();
  }
}

/** Wraps `inner`; see the module comment. */
export class SharedWatchStore implements Datastore {
  private readonly fanouts = new Map<ResourceKind, FanOut<unknown>>();
  private readonly own: Watch[] = [];

  constructor(private readonly inner: Datastore) {}

  get backend(): Datastore["backend"] {
    return this.inner.backend;
  }

  collection<K extends ResourceKind>(kind: K): Collection<K> {
    const c = this.inner.collection(kind);
    return {
      kind,
      get: (key) => c.get(key),
      list: () => c.list(),
      create: (v, o) => c.create(v, o),
      update: (v, o) => c.update(v, o),
      delete: (key, o) => c.delete(key, o),
      watch: async (from, listener) => {
        let f = this.fanouts.get(kind) as FanOut<ResourceByKind[K]> | undefined;
        if (f === undefined) {
          f = new FanOut<ResourceByKind[K]>(
            (rev, l) => c.watch(rev, l),
            () => this.fanouts.delete(kind),
          );
          this.fanouts.set(kind, f as FanOut<unknown>);
        }
        if (f.covers(from)) return f.subscribe(from, listener);
        const w = await c.watch(from, listener);
        this.own.push(w);
        return w;
      },
    };
  }

  grantLease: Datastore["grantLease"] = (ttl, o) => this.inner.grantLease(ttl, o);
  campaign: Datastore["campaign"] = (name, identity, o) => this.inner.campaign(name, identity, o);
  leader: Datastore["leader"] = (name) => this.inner.leader(name);
  writePolicyStatus: Datastore["writePolicyStatus"] = (key, status, o) =>
    this.inner.writePolicyStatus(key, status, o);

  holdLiveness: Datastore["holdLiveness"] = (node, ttl) => this.inner.holdLiveness(node, ttl);
  heartbeats: Datastore["heartbeats"] = () => this.inner.heartbeats();

  /** One follow of the inner store's liveness records, its changes told to every subscriber. */
  private liveness: Promise<LiveNodes> | undefined;
  private readonly livenessSubs = new Set<() => void>();

  async followLiveness(onChange: () => void): Promise<LiveNodes> {
    this.liveness ??= this.inner.followLiveness(() => {
      for (const cb of this.livenessSubs) cb();
    });
    const shared = await this.liveness;
    this.livenessSubs.add(onChange);
    return {
      has: (node) => shared.has(node),
      close: async () => void this.livenessSubs.delete(onChange),
    };
  }

  async close(): Promise<void> {
    await (await this.liveness?.catch(() => undefined))?.close();
    const fs = [...this.fanouts.values()];
    this.fanouts.clear();
    await Promise.allSettled([...fs.map((f) => f.close()), ...this.own.map((w) => w.close())]);
    await this.inner.close();
  }
}
