import type { Clock } from "../../../src/clock.js";
import type {
  Backing,
  JournalEntry,
  RawLease,
  RawRecord,
  Tx,
} from "../../../src/datastore/journal/backing.js";
import { JournalDatastore } from "../../../src/datastore/journal/engine.js";

/** An operation of the memory store that fault injection can target. */
export type MemoryOp = "transaction" | "read" | "journal";

/** Options of the memory store. */
export interface MemoryDatastoreOptions {
  /** Clock for lease expiry; a ManualClock lets tests expire leases without sleeping. */
  clock?: Clock;
  /** Expired-lease sweep period (ms); 0 = only on `sweep()`. Default 200. */
  sweepIntervalMs?: number;
  /** Journal entries kept before the oldest are compacted (watches behind them get `gone`). Default 10000. */
  maxJournalEntries?: number;
}

/**
 * In-process maps with the same semantics as the real stores. Shared state lives in a
 * MemoryBackingState so several MemoryDatastore clients (a controller and agents in one test) see
 * each other's writes.
 */
export class MemoryBackingState {
  revision = 0;
  compactedThrough = 0;
  readonly objects = new Map<string, RawRecord>();
  readonly leases = new Map<string, RawLease>();
  journal: JournalEntry[] = [];
  readonly listeners = new Set<() => void>();
  private lock: Promise<unknown> = Promise.resolve();
  private readonly faults: { op: MemoryOp; error: Error }[] = [];

  constructor(readonly maxJournalEntries = 10_000) {}

  /** Makes the next `op` fail with `error` (once). */
  failNext(op: MemoryOp, error: Error): void {
    this.faults.push({ op, error });
  }

  /** Drops journal entries up to `rev`: watches from an older revision get `gone`. */
  compact(rev: number): void {
    this.journal = this.journal.filter((e) => e.rev > rev);
    this.compactedThrough = Math.max(this.compactedThrough, Math.min(rev, this.revision));
  }

  /** @internal */ fault(op: MemoryOp): void {
    const i = this.faults.findIndex((f) => f.op === op);
    if (i >= 0) {
      const [f] = this.faults.splice(i, 1);
      throw f!.error;
    }
  }

  /** @internal */ serialize<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => {});
    return run;
  }

  /** @internal */ notify(): void {
    for (const l of [...this.listeners]) queueMicrotask(l);
  }
}

const id = (kind: string, key: string): string => `${kind}\u0000${key}`;
const clone = <T>(v: T): T => structuredClone(v);

class MemoryBacking implements Backing {
  private readonly mine = new Set<() => void>();
  constructor(private readonly s: MemoryBackingState) {}

  transaction<R>(fn: (tx: Tx) => Promise<R>): Promise<R> {
    const s = this.s;
    return s.serialize(async () => {
      s.fault("transaction");
      // Writes go to copies and are published only when fn succeeds.
      const objects = new Map(s.objects);
      const leases = new Map(s.leases);
      const entries: JournalEntry[] = [];
      let revision = s.revision;
      const tx: Tx = {
        get revision() {
          return revision;
        },
        get: async (kind, key) => clone(objects.get(id(kind, key))),
        list: async (kind) => [...objects.values()].filter((r) => r.kind === kind).map(clone),
        listByLease: async (l) => [...objects.values()].filter((r) => r.lease === l).map(clone),
        put: async (kind, key, value, lease) => {
          const created = !objects.has(id(kind, key));
          revision++;
          const rec: RawRecord =
            lease === undefined ? { kind, key, value, revision } : { kind, key, value, revision, lease };
          objects.set(id(kind, key), clone(rec));
          entries.push({
            rev: revision,
            kind,
            key,
            type: "PUT",
            created,
            value: clone(value),
            ...(lease ? { lease } : {}),
          });
          return rec;
        },
        delete: async (kind, key) => {
          if (!objects.delete(id(kind, key))) return;
          revision++;
          entries.push({ rev: revision, kind, key, type: "DELETE" });
        },
        getLease: async (l) => leases.get(l),
        putLease: async (l) => void leases.set(l.id, l),
        deleteLease: async (l) => void leases.delete(l),
      };
      const r = await fn(tx);
      s.objects.clear();
      for (const [k, v] of objects) s.objects.set(k, v);
      s.leases.clear();
      for (const [k, v] of leases) s.leases.set(k, v);
      if (entries.length > 0) {
        s.revision = revision;
        s.journal.push(...entries);
        if (s.journal.length > s.maxJournalEntries)
          s.compact(s.journal[s.journal.length - s.maxJournalEntries - 1]!.rev);
        s.notify();
      }
      return r;
    });
  }

  async getRecord(kind: string, key: string): Promise<RawRecord | undefined> {
    this.s.fault("read");
    return clone(this.s.objects.get(id(kind, key)));
  }

  async listLeases(): Promise<RawLease[]> {
    return [...this.s.leases.values()];
  }

  async readJournal(afterRev: number): Promise<{ entries: JournalEntry[]; compactedThrough: number }> {
    this.s.fault("journal");
    return {
      entries: this.s.journal.filter((e) => e.rev > afterRev),
      compactedThrough: this.s.compactedThrough,
    };
  }

  onChange(cb: () => void): () => void {
    this.s.listeners.add(cb);
    this.mine.add(cb);
    return () => {
      this.s.listeners.delete(cb);
      this.mine.delete(cb);
    };
  }

  async close(): Promise<void> {
    for (const cb of this.mine) this.s.listeners.delete(cb);
    this.mine.clear();
  }
}

/**
 * A stateful in-memory Datastore for unit tests of the controller, agent and CLI: same semantics
 * as `local` and `etcd` (CAS, ordered watches from a revision, leases, elections), fault injection
 * through `state.failNext`, compaction through `state.compact`, and lease expiry driven by an
 * injected clock plus `sweep()`. It is not a stand-in for testing the real backends.
 */
export class MemoryDatastore extends JournalDatastore {
  /** The shared state; pass it to another MemoryDatastore to make a second client. */
  readonly state: MemoryBackingState;

  constructor(options: MemoryDatastoreOptions & { state?: MemoryBackingState } = {}) {
    const state = options.state ?? new MemoryBackingState(options.maxJournalEntries);
    super("memory", new MemoryBacking(state), {
      ...(options.clock ? { clock: options.clock } : {}),
      sweepIntervalMs: options.sweepIntervalMs ?? 200,
      pollIntervalMs: 1000,
    });
    this.state = state;
  }

  /** Another client of the same in-memory store (like a second process). */
  connect(options: Omit<MemoryDatastoreOptions, "maxJournalEntries"> = {}): MemoryDatastore {
    return new MemoryDatastore({ ...options, state: this.state });
  }
}
