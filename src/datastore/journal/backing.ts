/**
 * The storage port of the journal engine. A backing keeps objects, leases and an ordered journal
 * of changes; the engine (./engine.ts) gives them datastore semantics. `memory` keeps them in maps,
 * `local` in files shared by several processes.
 */

/** One stored object, as raw JSON. */
export interface RawRecord {
  readonly kind: string;
  readonly key: string;
  readonly value: unknown;
  readonly revision: number;
  readonly lease?: string;
}

/** One change, numbered by the store-wide revision it created. */
export interface JournalEntry {
  readonly rev: number;
  readonly kind: string;
  readonly key: string;
  readonly type: "PUT" | "DELETE";
  /** PUT of a key that did not exist. */
  readonly created?: boolean;
  readonly value?: unknown;
  readonly lease?: string;
}

/** A lease with its absolute expiry (wall-clock ms). */
export interface RawLease {
  readonly id: string;
  readonly ttlSeconds: number;
  readonly expiresAt: number;
  /** A node's liveness lease (Datastore.holdLiveness): the node it keeps live. */
  readonly node?: string;
}

/** An exclusive transaction; every write gets the next revision and a journal entry. */
export interface Tx {
  /** The store revision as of the last write made (so far) in this transaction. */
  readonly revision: number;
  get(kind: string, key: string): Promise<RawRecord | undefined>;
  list(kind: string): Promise<RawRecord[]>;
  /** Every object of every kind attached to `leaseId`. */
  listByLease(leaseId: string): Promise<RawRecord[]>;
  put(kind: string, key: string, value: unknown, lease: string | undefined): Promise<RawRecord>;
  delete(kind: string, key: string): Promise<void>;
  getLease(id: string): Promise<RawLease | undefined>;
  putLease(lease: RawLease): Promise<void>;
  deleteLease(id: string): Promise<void>;
}

/** The storage port. */
export interface Backing {
  /** Runs `fn` exclusively (across processes for `local`); its writes commit when it resolves. */
  transaction<R>(fn: (tx: Tx) => Promise<R>): Promise<R>;
  /** Reads one object without locking (may trail an in-flight transaction). */
  getRecord(kind: string, key: string): Promise<RawRecord | undefined>;
  /** Every lease, without locking (for the expiry sweep). */
  listLeases(): Promise<RawLease[]>;
  /**
   * Journal entries with rev > `afterRev`, in order, and the highest revision no longer in the
   * journal (`compactedThrough`): a reader at a revision below it has missed changes.
   */
  readJournal(afterRev: number): Promise<{ entries: JournalEntry[]; compactedThrough: number }>;
  /** Calls `cb` when the journal may have grown (another process or this one wrote). */
  onChange(cb: () => void): () => void;
  close(): Promise<void>;
}
