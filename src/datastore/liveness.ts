/**
 * Node liveness over a store's own leases (etcd, local, memory): the node's record is attached to
 * a lease of its own that the agent renews; renewing a lease writes no object, so no watch of any
 * kind sees a heartbeat. The Kubernetes store keeps a coordination Lease per node instead
 * (kubernetes/datastore.ts).
 */
import { isLeaseExpiredError } from "./errors.js";
import type { Lease, LivenessHold } from "./types.js";

/**
 * A liveness record on a lease: `grant` makes a lease and attaches the node's record to it.
 *
 * One renewal at a time, by construction: a renewal asked for while one is under way joins it.
 * Two renewals that both found the lease ended would each grant a lease and write the record,
 * and the hold could keep (and go on renewing) the one whose write the store applied first, while
 * the record sits on the other, which nobody renews: when that one ran out the record went with
 * it, and the node stayed dead to every peer while its agent renewed a lease that held nothing.
 */
export class LeaseLivenessHold implements LivenessHold {
  private released = false;
  /** The renewal under way, if any (see the class comment). */
  private renewing: Promise<void> | undefined;

  private constructor(
    readonly node: string,
    private readonly grant: () => Promise<Lease>,
    private lease: Lease,
  ) {}

  /** Grants the first lease and writes the record. */
  static async start(node: string, grant: () => Promise<Lease>): Promise<LeaseLivenessHold> {
    return new LeaseLivenessHold(node, grant, await grant());
  }

  renew(): Promise<void> {
    if (this.renewing !== undefined) return this.renewing;
    const renewal = this.renewOnce().finally(() => {
      if (this.renewing === renewal) this.renewing = undefined;
    });
    this.renewing = renewal;
    return renewal;
  }

  private async renewOnce(): Promise<void> {
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
