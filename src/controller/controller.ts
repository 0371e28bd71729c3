import type { Clock } from "../clock.js";
import { isConflictError } from "../datastore/errors.js";
import type { Datastore, LeaderElection, Watch } from "../datastore/types.js";
import type { Logger } from "../log/logger.js";
import { CLUSTER_ENCRYPTION_NAME, type ClusterEncryption, type Node } from "../model/index.js";
import { decide, DEFAULT_TIMING, type PhaseTiming } from "./phases.js";

/** Name of the controller's leader election. */
export const CONTROLLER_ELECTION = "podcrypt-controller";

export interface ControllerOptions {
  store: Datastore;
  identity: string;
  clock: Clock;
  logger: Logger;
  timing?: PhaseTiming;
  /** Leadership lease TTL in seconds: a crashed leader is replaced within about this. Default 5. */
  leaseTtlSeconds?: number;
}

/**
 * The controller (DESIGN.md section 1): leader-elected; drives enable, disable and rotation
 * through prepare → switch → retire. It holds no keys: it only reads nodes' acknowledgements and
 * writes the cluster's phase.
 */
export class Controller {
  private election: LeaderElection | undefined;
  private readonly watches: Watch[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private dirty = false;
  private stopped = false;

  constructor(private readonly o: ControllerOptions) {}

  get isLeader(): boolean {
    return this.election?.isLeader ?? false;
  }

  /** Joins the election; acts only while leader. Resolves once campaigning started. */
  async start(): Promise<void> {
    this.election = await this.o.store.campaign(CONTROLLER_ELECTION, this.o.identity, {
      ttlSeconds: this.o.leaseTtlSeconds ?? 5,
    });
    this.election.onChange((leader) => {
      this.o.logger.info({ identity: this.o.identity, leader }, leader ? "became leader" : "lost leadership");
      if (leader) void this.lead();
      else void this.unwatch();
    });
    if (this.election.isLeader) await this.lead();
  }

  async stop(resign = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.unwatch();
    if (resign) await this.election?.resign();
  }

  private async unwatch(): Promise<void> {
    const ws = this.watches.splice(0);
    await Promise.all(ws.map((w) => w.close()));
  }

  private async lead(): Promise<void> {
    const clusters = this.o.store.collection("clusterencryptions");
    if ((await clusters.get(CLUSTER_ENCRYPTION_NAME)) === undefined) {
      await clusters.create({ name: CLUSTER_ENCRYPTION_NAME }).catch(() => undefined);
    }
    for (const kind of ["nodes", "clusterencryptions"] as const) {
      const col = this.o.store.collection(kind);
      const start = async (): Promise<void> => {
        const list = await col.list();
        this.watches.push(
          await col.watch(list.revision, {
            event: () => this.kick(),
            gone: () => void start(),
            error: (err) => this.o.logger.warn({ kind, err: err.message }, "watch problem; retrying"),
          }),
        );
      };
      await start();
    }
    this.kick();
  }

  private kick(): void {
    this.dirty = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      while (this.dirty && !this.stopped && this.isLeader) {
        this.dirty = false;
        await this.step();
      }
    } catch (e) {
      this.o.logger.error({ err: (e as Error).message }, "controller step failed");
      this.schedule(1000);
    } finally {
      this.running = false;
    }
  }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), Math.max(0, Math.min(ms, 2_147_000_000)));
  }

  private async step(): Promise<void> {
    const clusters = this.o.store.collection("clusterencryptions");
    const cur = await clusters.get(CLUSTER_ENCRYPTION_NAME);
    if (cur === undefined) return;
    const nodes: Node[] = (await this.o.store.collection("nodes").list()).items.map((i) => i.value);
    const d = decide(cur.value, nodes, this.o.clock.wallNow(), this.o.timing ?? DEFAULT_TIMING);
    if (d.next !== undefined) {
      try {
        await clusters.update(d.next as ClusterEncryption, { revision: cur.revision });
        this.o.logger.info(
          {
            phase: d.next.phase,
            epoch: d.next.epoch,
            target: d.next.target?.epoch,
            reason: d.reason,
            timedOut: d.timedOut,
          },
          "cluster phase",
        );
      } catch (e) {
        if (!isConflictError(e)) throw e;
      }
      this.dirty = true;
      return;
    }
    if (d.recheckInMs !== undefined) this.schedule(d.recheckInMs);
  }
}
