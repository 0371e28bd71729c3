import { randomBytes } from "node:crypto";
import { systemClock, type Clock } from "../../clock.js";
import type { PolicyStatus, ResourceByKind, ResourceInputByKind, ResourceKind } from "../../model/index.js";
import {
  changeEvent,
  decodeObject,
  encodeObject,
  listResult,
  storedOrThrow,
  storedRecord,
  withPolicyStatus,
  type Decoded,
} from "../codec.js";
import { Campaigns, type ElectionPort } from "../election.js";
import {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  DatastoreError,
  isLeaseExpiredError,
  LeaseExpiredError,
  NotFoundError,
  RevisionGoneError,
} from "../errors.js";
import { SerialQueue } from "../serial.js";
import { LeaseLivenessHold } from "../liveness.js";
import type {
  LiveNodes,
  LivenessHold,
  CampaignOptions,
  Collection,
  Datastore,
  DatastoreBackend,
  DeleteOptions,
  LeaderElection,
  Lease,
  LeaseOptions,
  ListResult,
  Stored,
  UpdateOptions,
  Watch,
  WatchEvent,
  WatchListener,
  WriteOptions,
} from "../types.js";
import type { Backing, JournalEntry, RawRecord, Tx } from "./backing.js";

/** The kind under which leader records live; never listed through a Collection. */
const LEADER_KIND = "__leaders";

/** Options of the journal engine. */
export interface JournalEngineOptions {
  /** Wall clock for lease expiry. Default systemClock. */
  clock?: Clock;
  /** How often expired leases are swept (ms); 0 disables the timer (call `sweep()`). Default 200. */
  sweepIntervalMs?: number;
  /** How often watches re-read the journal besides change notifications (ms). Default 250. */
  pollIntervalMs?: number;
}

/**
 * Datastore semantics over a Backing: validation, compare-and-swap, journal-driven watches,
 * leases with expiry sweeps and the shared campaign for leader election.
 */
export class JournalDatastore implements Datastore {
  private readonly clock: Clock;
  private readonly collections = new Map<ResourceKind, JournalCollection<ResourceKind>>();
  private readonly watches = new Set<JournalWatch<unknown>>();
  private readonly leases = new Set<JournalLease>();
  private readonly campaigns = new Campaigns();
  private readonly sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** @internal */ readonly pollIntervalMs: number;

  constructor(
    readonly backend: DatastoreBackend,
    /** @internal */ readonly backing: Backing,
    options: JournalEngineOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    const sweepMs = options.sweepIntervalMs ?? 200;
    if (sweepMs > 0) {
      this.sweepTimer = setInterval(() => void this.sweep().catch(() => {}), sweepMs);
      this.sweepTimer.unref();
    }
  }

  /** @internal */ assertOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  /** @internal */ now(): number {
    return this.clock.wallNow();
  }

  collection<K extends ResourceKind>(kind: K): Collection<K> {
    let c = this.collections.get(kind);
    if (c === undefined) {
      c = new JournalCollection(this, kind) as unknown as JournalCollection<ResourceKind>;
      this.collections.set(kind, c);
    }
    return c as unknown as Collection<K>;
  }

  /** @internal Resolves a write's lease option to the id to attach, checking it is alive. */
  async leaseFor(
    tx: Tx,
    requested: string | null | undefined,
    current: string | undefined,
  ): Promise<string | undefined> {
    const id = requested === undefined ? current : (requested ?? undefined);
    if (id === undefined) return undefined;
    const l = await tx.getLease(id);
    if (l === undefined || l.expiresAt <= this.now()) throw new LeaseExpiredError(id);
    return id;
  }

  async grantLease(ttlSeconds: number, options: LeaseOptions = {}): Promise<Lease> {
    this.assertOpen();
    const ttl = Math.max(1, Math.ceil(ttlSeconds));
    const id = randomBytes(8).toString("hex");
    await this.backing.transaction((tx) =>
      tx.putLease({ id, ttlSeconds: ttl, expiresAt: this.now() + ttl * 1000 }),
    );
    const lease = new JournalLease(this, id, ttl);
    this.leases.add(lease);
    if (options.autoKeepAlive ?? true) lease.startAutoKeepAlive();
    return lease;
  }

  async holdLiveness(node: string, ttlSeconds: number): Promise<LivenessHold> {
    this.assertOpen();
    return LeaseLivenessHold.start(node, async () => {
      const ttl = Math.max(1, Math.ceil(ttlSeconds));
      const id = randomBytes(8).toString("hex");
      // The lease itself names the node: renewing it rewrites the lease, no object, no journal entry.
      await this.backing.transaction((tx) =>
        tx.putLease({ id, ttlSeconds: ttl, expiresAt: this.now() + ttl * 1000, node }),
      );
      const lease = new JournalLease(this, id, ttl);
      this.leases.add(lease);
      return lease;
    });
  }

  /** Live nodes' liveness leases: node → expiry (wall-clock ms) and TTL. */
  private async liveLeases(): Promise<Map<string, { expiresAt: number; ttlSeconds: number }>> {
    const now = this.now();
    const out = new Map<string, { expiresAt: number; ttlSeconds: number }>();
    for (const l of await this.backing.listLeases()) {
      if (l.node === undefined || l.expiresAt <= now) continue;
      const had = out.get(l.node);
      if (had === undefined || had.expiresAt < l.expiresAt) out.set(l.node, l);
    }
    return out;
  }

  async followLiveness(onChange: () => void): Promise<LiveNodes> {
    this.assertOpen();
    let live = new Map<string, { expiresAt: number }>();
    let closed = false;
    const read = async (): Promise<void> => {
      const next = await this.liveLeases();
      const changed = next.size !== live.size || [...next.keys()].some((n) => !live.has(n));
      live = next;
      if (changed && !closed) onChange();
    };
    await read();
    // Leases are files (local) or maps (memory) outside the journal: read them again every poll,
    // and at every change of the journal (an agent holds its liveness before it writes its record,
    // so a reader that sees a new node's record sees its liveness about as soon).
    let reading = false;
    let again = false;
    const pump = (): void => {
      if (closed) return;
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      void read()
        .catch(() => {})
        .finally(() => {
          reading = false;
          if (again) {
            again = false;
            pump();
          }
        });
    };
    const timer = setInterval(pump, this.pollIntervalMs);
    timer.unref();
    const off = this.backing.onChange(pump);
    return {
      // Between two reads a lease may have run out: its expiry is the rule, not the last read.
      has: (node) => (live.get(node)?.expiresAt ?? 0) > this.now(),
      close: async () => {
        closed = true;
        clearInterval(timer);
        off();
      },
    };
  }

  async heartbeats(): Promise<Map<string, string>> {
    this.assertOpen();
    const out = new Map<string, string>();
    for (const [node, l] of await this.liveLeases())
      out.set(node, new Date(l.expiresAt - l.ttlSeconds * 1000).toISOString());
    return out;
  }

  /** @internal */ async keepAlive(id: string): Promise<void> {
    this.assertOpen();
    await this.backing.transaction(async (tx) => {
      const l = await tx.getLease(id);
      if (l === undefined || l.expiresAt <= this.now()) throw new LeaseExpiredError(id);
      await tx.putLease({ ...l, expiresAt: this.now() + l.ttlSeconds * 1000 });
    });
  }

  /** @internal */ async revoke(id: string): Promise<void> {
    await this.backing.transaction(async (tx) => {
      for (const r of await tx.listByLease(id)) await tx.delete(r.kind, r.key);
      await tx.deleteLease(id);
    });
  }

  /** @internal */ forgetLease(l: JournalLease): void {
    this.leases.delete(l);
  }

  /** Ends every expired lease, deleting the objects attached to it. Runs on a timer too. */
  async sweep(): Promise<void> {
    if (this.closed) return;
    const now = this.now();
    const expired = (await this.backing.listLeases()).filter((l) => l.expiresAt <= now);
    for (const l of expired) {
      await this.backing.transaction(async (tx) => {
        const cur = await tx.getLease(l.id);
        if (cur === undefined || cur.expiresAt > this.now()) return;
        for (const r of await tx.listByLease(l.id)) await tx.delete(r.kind, r.key);
        await tx.deleteLease(l.id);
      });
    }
  }

  private electionPort(): ElectionPort {
    return {
      grantLease: (ttl) => this.grantLease(ttl),
      tryAcquire: (name, identity, leaseId) =>
        this.backing.transaction(async (tx) => {
          const cur = await tx.get(LEADER_KIND, name);
          if (cur !== undefined) return false;
          await tx.put(LEADER_KIND, name, { identity }, await this.leaseFor(tx, leaseId, undefined));
          return true;
        }),
      release: (name, leaseId) =>
        this.backing.transaction(async (tx) => {
          const cur = await tx.get(LEADER_KIND, name);
          if (cur !== undefined && cur.lease === leaseId) await tx.delete(LEADER_KIND, name);
        }),
      waitForChange: (_name, maxWaitMs, signal) =>
        new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(t);
            off();
            signal.removeEventListener("abort", done);
            resolve();
          };
          const t = setTimeout(done, maxWaitMs);
          const off = this.backing.onChange(done);
          signal.addEventListener("abort", done, { once: true });
        }),
    };
  }

  async campaign(name: string, identity: string, options: CampaignOptions): Promise<LeaderElection> {
    this.assertOpen();
    return this.campaigns.start(this.electionPort(), name, identity, options.ttlSeconds);
  }

  async leader(name: string): Promise<string | undefined> {
    this.assertOpen();
    const rec = await this.backing.getRecord(LEADER_KIND, name);
    if (rec === undefined) return undefined;
    if (rec.lease !== undefined) {
      const l = (await this.backing.listLeases()).find((x) => x.id === rec.lease);
      if (l === undefined || l.expiresAt <= this.now()) return undefined;
    }
    return (rec.value as { identity?: string }).identity;
  }

  async writePolicyStatus(key: string, status: PolicyStatus, options: { revision: string }): Promise<string> {
    this.assertOpen();
    const kind = "encryptionpolicies";
    return this.backing.transaction(async (tx) => {
      const cur = await tx.get(kind, key);
      if (cur === undefined) throw new NotFoundError(kind, key);
      if (String(cur.revision) !== options.revision)
        throw new ConflictError(kind, key, options.revision, String(cur.revision));
      const r = await tx.put(kind, key, withPolicyStatus(key, cur.value, status), cur.lease);
      return String(r.revision);
    });
  }

  /** @internal */ trackWatch(w: JournalWatch<unknown>, add: boolean): void {
    if (add) this.watches.add(w);
    else this.watches.delete(w);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    await this.campaigns.stopAll();
    for (const l of this.leases) l.release();
    await Promise.all([...this.watches].map((w) => w.close()));
    await this.backing.close();
  }
}

/**
 * The record a write of `key` changes: NotFoundError when there is none, ConflictError when
 * `revision` is given and the record is absent or was written since.
 */
async function existing(
  tx: Tx,
  kind: ResourceKind,
  key: string,
  revision: string | undefined,
): Promise<RawRecord> {
  const cur = await tx.get(kind, key);
  if (cur === undefined) {
    if (revision !== undefined) throw new ConflictError(kind, key, revision, undefined);
    throw new NotFoundError(kind, key);
  }
  if (revision !== undefined && String(cur.revision) !== revision)
    throw new ConflictError(kind, key, revision, String(cur.revision));
  return cur;
}

function toStored<K extends ResourceKind>(kind: K, r: RawRecord): Decoded<K> {
  return decodeObject(kind, r.key, r.value, String(r.revision), r.lease);
}

class JournalCollection<K extends ResourceKind> implements Collection<K> {
  constructor(
    private readonly ds: JournalDatastore,
    readonly kind: K,
  ) {}

  async get(key: string): Promise<Stored<ResourceByKind[K]> | undefined> {
    this.ds.assertOpen();
    const r = await this.ds.backing.getRecord(this.kind, key);
    if (r === undefined) return undefined;
    return storedOrThrow(toStored(this.kind, r));
  }

  async list(): Promise<ListResult<ResourceByKind[K]>> {
    this.ds.assertOpen();
    const { records, revision } = await this.ds.backing.transaction(async (tx) => ({
      records: await tx.list(this.kind),
      revision: tx.revision,
    }));
    return listResult(
      records.map((r) => toStored(this.kind, r)),
      String(revision),
    );
  }

  async create(
    input: ResourceInputByKind[K],
    options: WriteOptions = {},
  ): Promise<Stored<ResourceByKind[K]>> {
    this.ds.assertOpen();
    const { key, value } = encodeObject(this.kind, input);
    const r = await this.ds.backing.transaction(async (tx) => {
      if ((await tx.get(this.kind, key)) !== undefined) throw new AlreadyExistsError(this.kind, key);
      return tx.put(this.kind, key, value, await this.ds.leaseFor(tx, options.lease ?? undefined, undefined));
    });
    return storedRecord(r.key, value, String(r.revision), r.lease);
  }

  async update(
    input: ResourceInputByKind[K],
    options: UpdateOptions = {},
  ): Promise<Stored<ResourceByKind[K]>> {
    this.ds.assertOpen();
    const { key, value } = encodeObject(this.kind, input);
    const r = await this.ds.backing.transaction(async (tx) => {
      const cur = await existing(tx, this.kind, key, options.revision);
      return tx.put(this.kind, key, value, await this.ds.leaseFor(tx, options.lease, cur.lease));
    });
    return storedRecord(r.key, value, String(r.revision), r.lease);
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<void> {
    this.ds.assertOpen();
    await this.ds.backing.transaction(async (tx) => {
      await existing(tx, this.kind, key, options.revision);
      await tx.delete(this.kind, key);
    });
  }

  async watch(fromRevision: string, listener: WatchListener<ResourceByKind[K]>): Promise<Watch> {
    this.ds.assertOpen();
    const from = Number(fromRevision);
    if (!Number.isSafeInteger(from) || from < 0)
      throw new DatastoreError("EDS_GONE", `invalid revision "${fromRevision}"`, {
        context: { fromRevision },
      });
    const w = new JournalWatch<ResourceByKind[K]>(this.ds, this.kind, from, listener);
    this.ds.trackWatch(w as JournalWatch<unknown>, true);
    w.start();
    return w;
  }
}

class JournalWatch<T> implements Watch {
  private cursor: number;
  private closed = false;
  private pumping = false;
  private again = false;
  private readonly queue: SerialQueue;
  private off: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ds: JournalDatastore,
    private readonly kind: ResourceKind,
    from: number,
    private readonly listener: WatchListener<T>,
  ) {
    this.cursor = from;
    this.queue = new SerialQueue((e) => listener.error?.(e instanceof Error ? e : new Error(String(e))));
  }

  get revision(): string {
    return String(this.cursor);
  }

  start(): void {
    this.off = this.ds.backing.onChange(() => this.pump());
    this.timer = setInterval(() => this.pump(), this.ds.pollIntervalMs);
    this.timer.unref();
    this.pump();
  }

  private pump(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void this.read().finally(() => {
      this.pumping = false;
      if (this.again && !this.closed) {
        this.again = false;
        this.pump();
      }
    });
  }

  private async read(): Promise<void> {
    let res: Awaited<ReturnType<Backing["readJournal"]>>;
    try {
      res = await this.ds.backing.readJournal(this.cursor);
    } catch (e) {
      this.listener.error?.(e as Error);
      return;
    }
    if (this.closed) return;
    if (res.compactedThrough > this.cursor) {
      const err = new RevisionGoneError(this.kind, String(this.cursor), {
        compactRevision: String(res.compactedThrough),
      });
      void this.close().then(() => this.listener.gone(err));
      return;
    }
    for (const e of res.entries) {
      if (e.rev <= this.cursor) continue;
      this.cursor = e.rev;
      if (e.kind !== this.kind) continue;
      const ev = this.toEvent(e);
      this.queue.push(() => this.listener.event(ev));
    }
  }

  private toEvent(e: JournalEntry): WatchEvent<T> {
    const revision = String(e.rev);
    if (e.type === "DELETE") return { type: "DELETED", key: e.key, revision };
    const d = decodeObject(this.kind, e.key, e.value, revision, e.lease);
    return changeEvent(d, e.key, revision, e.created === true) as WatchEvent<T>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.off?.();
    if (this.timer !== undefined) clearInterval(this.timer);
    this.ds.trackWatch(this as JournalWatch<unknown>, false);
    await this.queue.close();
  }
}

class JournalLease implements Lease {
  private timer: NodeJS.Timeout | undefined;
  private readonly lostCbs = new Set<(e: DatastoreError) => void>();
  private lastOk: number;
  private ended = false;

  constructor(
    private readonly ds: JournalDatastore,
    readonly id: string,
    readonly ttlSeconds: number,
  ) {
    this.lastOk = ds.now();
  }

  startAutoKeepAlive(): void {
    this.timer = setInterval(() => void this.tick(), Math.max(100, (this.ttlSeconds * 1000) / 3));
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.keepAlive();
    } catch (e) {
      if (this.ended) return;
      if (isLeaseExpiredError(e) || this.ds.now() - this.lastOk > this.ttlSeconds * 1000) {
        this.lost(e instanceof DatastoreError ? e : new LeaseExpiredError(this.id, { cause: e }));
      }
    }
  }

  private lost(e: DatastoreError): void {
    this.release();
    this.ended = true;
    for (const cb of this.lostCbs) cb(e);
    this.lostCbs.clear();
  }

  async keepAlive(): Promise<void> {
    await this.ds.keepAlive(this.id);
    this.lastOk = this.ds.now();
  }

  async revoke(): Promise<void> {
    this.release();
    this.ended = true;
    this.lostCbs.clear();
    await this.ds.revoke(this.id);
  }

  release(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.ds.forgetLease(this);
  }

  onLost(cb: (err: DatastoreError) => void): () => void {
    this.lostCbs.add(cb);
    return () => this.lostCbs.delete(cb);
  }
}
