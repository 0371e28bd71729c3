/**
 * Node liveness over a store's own leases (etcd, local, memory): the node's record is attached to
 * a lease of its own that the agent renews; renewing a lease writes no object, so no watch of any
 * kind sees a heartbeat. The Kubernetes store keeps a coordination Lease per node instead
 * (kubernetes/datastore.ts).
 */
import { isLeaseExpiredError } from "./errors.js";
import type { Lease, LivenessHold } from "./types.js";

/** A liveness record on a lease: `grant` makes a lease and attaches the node's record to it. */
export class LeaseLivenessHold implements LivenessHold {
  private released = false;

  private constructor(
    readonly node: string,
    private readonly grant: () => Promise<Lease>,
    private lease: Lease,
  ) {}

  /** Grants the first lease and writes the record. */
  static async start(node: string, grant: () => Promise<Lease>): Promise<LeaseLivenessHold> {
    return new LeaseLivenessHold(node, grant, await grant());
  }

  async renew(): Promise<void> {
    if (this.released) return;
    try {
      await this.lease.keepAlive();
    } catch (e) {
      // The lease ended (an outage longer than its TTL, or the store expired it): the node's
      // record went with it. A new lease and record make the node live again.
      if (!isLeaseExpiredError(e)) throw e;
      this.lease.release();
      const next = await this.grant();
      if (this.released) {
        next.release();
        return;
      }
      this.lease = next;
    }
  }

  release(): void {
    this.released = true;
    this.lease.release();
  }
}
