import { ClosedError, type DatastoreError } from "./errors.js";
import type { Lease, LeaderElection, LeaseId } from "./types.js";

/** What a backend offers for the shared campaign algorithm: a leader record tied to a lease. */
export interface ElectionPort {
  /** Grants a lease with automatic keep-alive. */
  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Creates the leader record of `name` (identity, attached to `leaseId`) if absent; true if created. */
  tryAcquire(name: string, identity: string, leaseId: LeaseId): Promise<boolean>;
  /** Deletes the leader record of `name` if it still belongs to `leaseId`. */
  release(name: string, leaseId: LeaseId): Promise<void>;
  /**
   * Resolves when the leader record of `name` may have changed, or after at most `maxWaitMs`
   * (a safety net), or when `signal` aborts.
   */
  waitForChange(name: string, maxWaitMs: number, signal: AbortSignal): Promise<void>;
}

/**
 * The campaign every journal/etcd backend shares: hold a lease with keep-alive, create the leader
 * record attached to it if there is none, otherwise wait until it changes. Leadership ends when the
 * lease is lost (then the participant campaigns again with a new lease) or on resign.
 */
export class Campaign implements LeaderElection {
  private leader = false;
  private lease: Lease | undefined;
  private readonly listeners = new Set<(isLeader: boolean) => void>();
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private resigned = false;

  constructor(
    private readonly port: ElectionPort,
    readonly name: string,
    readonly identity: string,
    private readonly ttlSeconds: number,
    private readonly onProblem: (e: unknown) => void = () => {},
  ) {}

  get isLeader(): boolean {
    return this.leader;
  }

  /** Starts campaigning in the background. */
  start(): void {
    this.loop = this.run();
  }

  private setLeader(v: boolean): void {
    if (this.leader === v) return;
    this.leader = v;
    if (v) {
      for (const w of this.waiters) w.resolve();
      this.waiters = [];
    }
    for (const cb of this.listeners) {
      try {
        cb(v);
      } catch (e) {
        this.onProblem(e);
      }
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        if (this.lease === undefined) {
          const lease = await this.port.grantLease(this.ttlSeconds);
          if (signal.aborted) {
            await lease.revoke();
            return;
          }
          this.lease = lease;
          lease.onLost((e: DatastoreError) => {
            if (this.lease !== lease) return;
            this.lease = undefined;
            this.onProblem(e);
            this.setLeader(false);
            this.port.release(this.name, lease.id).catch(() => {});
          });
        }
        const lease: Lease = this.lease;
        if (!this.leader) {
          if (await this.port.tryAcquire(this.name, this.identity, lease.id)) {
            if (this.lease === lease && !signal.aborted) this.setLeader(true);
            else await this.port.release(this.name, lease.id);
          }
        }
        await this.port.waitForChange(this.name, Math.max(250, (this.ttlSeconds * 1000) / 3), signal);
      } catch (e) {
        if (signal.aborted) return;
        this.onProblem(e);
        await sleep(Math.min(1000, (this.ttlSeconds * 1000) / 4), signal);
      }
    }
  }

  whenLeader(): Promise<void> {
    if (this.leader) return Promise.resolve();
    if (this.resigned) return Promise.reject(new ClosedError("election"));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  onChange(cb: (isLeader: boolean) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Stops campaigning; with `handOver` (resign) deletes the record and revokes the lease. */
  async stop(handOver: boolean): Promise<void> {
    if (this.resigned) return;
    this.resigned = true;
    this.abort.abort();
    await this.loop;
    const lease = this.lease;
    this.lease = undefined;
    if (lease !== undefined) {
      if (handOver) {
        await this.port.release(this.name, lease.id).catch(this.onProblem);
        await lease.revoke().catch(this.onProblem);
      } else lease.release();
    }
    this.setLeader(false);
    for (const w of this.waiters) w.reject(new ClosedError("election"));
    this.waiters = [];
  }

  resign(): Promise<void> {
    return this.stop(true);
  }
}

/** A datastore's campaigns: each started through it, all stopped (without resigning) when the datastore closes. */
export class Campaigns {
  private readonly all = new Set<Campaign>();

  /** Starts campaigning in the background for `name` as `identity`, on leases of `ttlSeconds`. */
  start(port: ElectionPort, name: string, identity: string, ttlSeconds: number): Campaign {
    const c = new Campaign(port, name, identity, ttlSeconds);
    this.all.add(c);
    c.start();
    return c;
  }

  /**
   * Stops every campaign, leaving the leader records to their leases (a successor takes over when
   * they expire). Never rejects: a campaign failing to stop does not keep the datastore open.
   */
  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.all].map((c) => c.stop(false)));
  }
}

/** Sleeps `ms`, returning early when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
