/**
 * The one datastore interface of podcrypt (docs/design.md#datastores). Three backends implement it:
 * `local` (files in a state directory), `etcd` and `kubernetes`; `memory` is a stateful in-process
 * implementation for unit tests of other components. test/datastore/conformance.ts checks every
 * backend against the semantics written here.
 *
 * Errors are the classes of ./errors.ts (NotFoundError, AlreadyExistsError, ConflictError,
 * RevisionGoneError, LeaseExpiredError, UnavailableError, ClosedError), recognised with their
 * guards (`isConflictError(e)` ...). Writes validate the object and throw ValidationError naming
 * the field.
 */
import type { ValidationError } from "../errors/index.js";
import type { PolicyStatus, ResourceByKind, ResourceInputByKind, ResourceKind } from "../model/index.js";
import type { RevisionGoneError, DatastoreError } from "./errors.js";

/**
 * A revision: etcd's mod_revision, Kubernetes' resourceVersion, the local store's counter, as a
 * decimal string. Treat it as opaque: compare revisions only for equality, and hand them back to
 * the store (`update`, `delete`, `watch`).
 */
export type Revision = string;

/** A lease's identifier, unique within the store. */
export type LeaseId = string;

/** An object as stored: its key within the kind, the validated value, and its revision. */
export interface Stored<T> {
  /** `name`, or `namespace/name` for namespaced objects (see model `objectKey`). */
  readonly key: string;
  readonly value: T;
  /** The revision of the last write of this object; the `revision` to pass to a CAS update. */
  readonly revision: Revision;
  /** The lease the object is attached to, if any: it is deleted when that lease ends. */
  readonly lease?: LeaseId;
  /**
   * Kubernetes' `metadata.generation` (moves with the object's spec, not its status); the other
   * backends keep none.
   */
  readonly generation?: number;
}

/** An object whose stored form does not validate (written by someone else, or an older version). */
export interface InvalidObject {
  readonly key: string;
  readonly revision: Revision;
  readonly error: ValidationError;
  /** As Stored.generation. */
  readonly generation?: number;
  /** A policy's status as stored (Datastore.writePolicyStatus), when it validates. */
  readonly status?: PolicyStatus;
}

/** A consistent snapshot of one kind. */
export interface ListResult<T> {
  /** Valid objects, sorted by key. */
  readonly items: Stored<T>[];
  /** Objects that failed validation; they are reported, never silently dropped. */
  readonly invalid: InvalidObject[];
  /** The revision of the snapshot: `watch(revision)` delivers exactly the changes after it. */
  readonly revision: Revision;
}

/** A change of one object, delivered to watchers in revision order. */
export type WatchEvent<T> =
  | { readonly type: "ADDED"; readonly key: string; readonly revision: Revision; readonly object: Stored<T> }
  | {
      readonly type: "MODIFIED";
      readonly key: string;
      readonly revision: Revision;
      readonly object: Stored<T>;
    }
  | { readonly type: "DELETED"; readonly key: string; readonly revision: Revision }
  /**
   * The object was written in a form that does not validate. Consumers should keep what they had
   * for it (docs/design.md#selective-encryption: nothing already installed is lost) and report the error.
   */
  | {
      readonly type: "INVALID";
      readonly key: string;
      readonly revision: Revision;
      readonly error: ValidationError;
      /** As InvalidObject.generation. */
      readonly generation?: number;
      /** As InvalidObject.status. */
      readonly status?: PolicyStatus;
    };

/** Receives a watch's events. */
export interface WatchListener<T> {
  /**
   * One change, in revision order, each exactly once (also across reconnects). If it returns a
   * promise the next event waits until it settles; a throw or rejection is passed to `error`.
   */
  event(e: WatchEvent<T>): void | Promise<void>;
  /**
   * The watch cannot go on from its revision (etcd compaction, Kubernetes 410 Gone, local journal
   * compacted). The watch is closed; the consumer relists and watches from the new list revision.
   */
  gone(err: RevisionGoneError): void;
  /** A transient problem (connection lost, listener threw); the backend keeps retrying. Optional. */
  error?(err: DatastoreError | Error): void;
}

/** A running watch. */
export interface Watch {
  /** Revision of the last event delivered (or the starting revision). */
  readonly revision: Revision;
  /** Stops delivery; no event is delivered after the returned promise resolves. Idempotent. */
  close(): Promise<void>;
}

/** Options of writes. */
export interface WriteOptions {
  /**
   * Attach the object to this lease (it is deleted when the lease expires or is revoked).
   * `create`: no lease when absent. `update`: absent keeps the object's current lease; `null`
   * detaches it.
   */
  lease?: LeaseId | null;
}

/** Options of `update`. */
export interface UpdateOptions extends WriteOptions {
  /**
   * Compare-and-swap: the write succeeds only if the stored object's revision equals this one,
   * otherwise ConflictError. Absent: unconditional (the object must still exist).
   */
  revision?: Revision;
}

/** Options of `delete`. */
export interface DeleteOptions {
  /** Compare-and-swap: delete only if the stored revision equals this one, otherwise ConflictError. */
  revision?: Revision;
}

/** The objects of one kind. */
export interface Collection<K extends ResourceKind> {
  readonly kind: K;
  /** The object under `key`, or `undefined` when there is none. */
  get(key: string): Promise<Stored<ResourceByKind[K]> | undefined>;
  /** Every object of the kind, with the snapshot's revision. */
  list(): Promise<ListResult<ResourceByKind[K]>>;
  /**
   * Validates (ValidationError) and stores a new object under its objectKey. AlreadyExistsError if
   * one is there. Returns it as stored, with defaults applied and its revision.
   */
  create(value: ResourceInputByKind[K], options?: WriteOptions): Promise<Stored<ResourceByKind[K]>>;
  /**
   * Validates and replaces the object under its objectKey. NotFoundError when absent;
   * ConflictError when `options.revision` is given and is not the stored one.
   */
  update(value: ResourceInputByKind[K], options?: UpdateOptions): Promise<Stored<ResourceByKind[K]>>;
  /** Deletes the object. NotFoundError when absent; ConflictError on a revision mismatch. */
  delete(key: string, options?: DeleteOptions): Promise<void>;
  /**
   * Delivers every change after `fromRevision` (normally a list revision), in order, each once.
   * The backend reconnects by itself and resumes after the last delivered revision; when it cannot
   * (compacted / Gone), `listener.gone` is called. Resolves once the watch is established, so
   * writes made after it resolves are certainly delivered.
   */
  watch(fromRevision: Revision, listener: WatchListener<ResourceByKind[K]>): Promise<Watch>;
}

/** Options of `grantLease`. */
export interface LeaseOptions {
  /** Refresh the lease automatically (every ttl/3). Default true. */
  autoKeepAlive?: boolean;
}

/**
 * A time-limited grant. Objects written with `{lease: lease.id}` vanish when it ends: on expiry
 * (no keep-alive for `ttlSeconds`) or on `revoke`. Used for node liveness and leadership.
 */
export interface Lease {
  readonly id: LeaseId;
  readonly ttlSeconds: number;
  /** Refreshes the lease once. LeaseExpiredError if it already ended. */
  keepAlive(): Promise<void>;
  /** Ends the lease now; its objects are deleted. Idempotent. */
  revoke(): Promise<void>;
  /**
   * Stops automatic keep-alive without revoking: the lease ends by itself after its TTL (what a
   * crashed process leaves behind). Idempotent.
   */
  release(): void;
  /** Called once when automatic keep-alive finds the lease ended. Returns an unsubscribe function. */
  onLost(cb: (err: DatastoreError) => void): () => void;
}

/**
 * A node's liveness as its agent keeps it (docs/design.md#liveness): a record per node that lives
 * as long as it is renewed (etcd: a key attached to the node's lease, renewed by lease keep-alives,
 * which write no key and so wake no watch; Kubernetes: a coordination.k8s.io Lease per node, as
 * kubelet keeps; local: a lease file naming the node). The node counts as live until `ttlSeconds`
 * after its last renewal.
 */
export interface LivenessHold {
  readonly node: string;
  /**
   * Renews the record once (the agent calls it every heartbeat). When the record ended meanwhile
   * (an outage longer than the TTL), it is made again. Rejects when the store does not answer.
   */
  renew(): Promise<void>;
  /** Stops renewing: the node stops counting as live within the TTL (what a crash leaves). Idempotent. */
  release(): void;
}

/** Which nodes are live now, as the liveness records show it; followed until `close`. */
export interface LiveNodes {
  /** Whether `node` counts as live now. */
  has(node: string): boolean;
  close(): Promise<void>;
}

/** Options of `campaign`. */
export interface CampaignOptions {
  /** The leadership lease's TTL: a crashed leader is replaced within about this time. */
  ttlSeconds: number;
}

/**
 * A participant in a leader election. Campaigning starts when `campaign` resolves and goes on in
 * the background until `resign`; at most one live participant per name is leader at a time.
 */
export interface LeaderElection {
  readonly name: string;
  readonly identity: string;
  /** Whether this participant holds leadership right now. */
  readonly isLeader: boolean;
  /** Resolves when this participant is (or becomes) leader; rejects with ClosedError after resign. */
  whenLeader(): Promise<void>;
  /**
   * Called with `true` when leadership is gained and `false` when it is lost (lease expired, store
   * unreachable past the TTL, resign). A leader that sees `false` must stop acting at once.
   * Returns an unsubscribe function.
   */
  onChange(cb: (isLeader: boolean) => void): () => void;
  /** Stops campaigning and, if leader, hands over at once (the standby need not wait for the TTL). */
  resign(): Promise<void>;
}

/** Which implementation a Datastore is. */
export type DatastoreBackend = "local" | "etcd" | "kubernetes" | "memory";

/** The datastore: typed collections per kind, leases and leader election. */
export interface Datastore {
  readonly backend: DatastoreBackend;
  /** The collection of a kind: `store.collection("nodes")`. */
  collection<K extends ResourceKind>(kind: K): Collection<K>;
  /** Grants a lease of `ttlSeconds` (the backend may round up to its minimum). */
  grantLease(ttlSeconds: number, options?: LeaseOptions): Promise<Lease>;
  /** Joins the election `name` as `identity`. */
  campaign(name: string, identity: string, options: CampaignOptions): Promise<LeaderElection>;
  /** The identity of the current leader of `name`, if any. */
  leader(name: string): Promise<string | undefined>;
  /** Makes the liveness record of `node` (renewed by the caller: LivenessHold.renew). */
  holdLiveness(node: string, ttlSeconds: number): Promise<LivenessHold>;
  /**
   * Follows which nodes are live; `onChange` is called when a node becomes live or stops being
   * live (never for a mere renewal). Resolves once the current records are read.
   */
  followLiveness(onChange: () => void): Promise<LiveNodes>;
  /**
   * When each live node last renewed its record (ISO time, second precision on etcd), for status
   * and the status page: read on demand, one request per node on etcd.
   */
  heartbeats(): Promise<Map<string, string>>;
  /**
   * Writes the status of the policy under `key` (kind `encryptionpolicies`), whether its stored
   * form validates or not, leaving the rest of it as it is: in Kubernetes through the status
   * subresource of its EncryptionPolicy or IPsecPolicy, elsewhere as the stored object's `status`.
   * ConflictError when the object's revision is no longer `options.revision`, NotFoundError when
   * it is gone. Returns the revision the write made.
   */
  writePolicyStatus(key: string, status: PolicyStatus, options: { revision: Revision }): Promise<Revision>;
  /**
   * Closes watches, stops keep-alives and campaigns, releases connections. Leases are NOT revoked
   * and leadership is not resigned: they end after their TTL (resign/revoke first for a clean
   * hand-over). Idempotent.
   */
  close(): Promise<void>;
}
