/** The Leases the kubernetes datastore grants (coordination.k8s.io Leases, kept alive by a timer). */
import { DatastoreError, LeaseExpiredError } from "../errors.js";
import type { Lease } from "../types.js";
import { type ResourceRef } from "./mapping.js";

/** What a lease needs of its datastore. */
export interface LeaseHost {
  renew(name: string): Promise<void>;
  revoke(name: string): Promise<void>;
}

/** A coordination Lease granted by the datastore. */
export class KubeLease implements Lease {
  private timer: NodeJS.Timeout | undefined;
  private readonly lost = new Set<(err: DatastoreError) => void>();
  private ended = false;

  constructor(
    private readonly ds: LeaseHost,
    readonly id: string,
    readonly ttlSeconds: number,
    _ref: ResourceRef,
  ) {}

  startKeepAlive(): void {
    const every = Math.max(100, (this.ttlSeconds * 1000) / 3);
    this.timer = setInterval(() => {
      this.keepAlive().catch((e: unknown) => {
        if (e instanceof LeaseExpiredError) {
          this.release();
          for (const cb of this.lost) cb(e);
        }
      });
    }, every);
    this.timer.unref();
  }

  async keepAlive(): Promise<void> {
    if (this.ended) throw new LeaseExpiredError(this.id);
    await this.ds.renew(this.id);
  }

  async revoke(): Promise<void> {
    this.release();
    this.ended = true;
    await this.ds.revoke(this.id);
  }

  release(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  onLost(cb: (err: DatastoreError) => void): () => void {
    this.lost.add(cb);
    return () => this.lost.delete(cb);
  }
}
