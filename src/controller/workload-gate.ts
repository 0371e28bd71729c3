/**
 * Workload gating, the controller's half (docs/design.md#workload-gating): each node's agent
 * publishes in its own record whether its Kubernetes Node should carry the NoSchedule taint
 * `podcrypt.io/not-ready` (`status.workloadGate`: "closed" until its tunnels to every live peer
 * are up, then "open"; src/agent/gate.ts), and the leader controller writes the Node. Agents thus
 * need no write on Node objects at all; the controller's only one is that taint's patch.
 *
 * The decision is pure ({@link gateWrites}): a Node is written when its record's wish differs
 * from what the controller last saw the Node hold. {@link WorkloadGateController} keeps that
 * knowledge, runs when the node records change, never throws (a failed write is logged once per
 * distinct failure and tried again), and forgets what it knows every `resyncMs` so a Node someone
 * else changed (an operator removing the taint by hand) is read and put right again. Only the
 * kubernetes datastore has Node objects: elsewhere the controller runs none.
 */
import type { Logger } from "../log/logger.js";
import type { Node, WorkloadGateWish } from "../model/index.js";

/** Puts the not-ready taint on Node `node` (`present`) or takes it off; resolves whether the Node changed. */
export type NodeTaintWriter = (node: string, present: boolean) => Promise<boolean>;

/** One Node write: make Node `node` hold what `wish` asks. */
export interface GateWrite {
  readonly node: string;
  readonly wish: WorkloadGateWish;
}

/**
 * The Node writes the records ask for: every node whose record holds a wish that differs from
 * `known` (what the controller last saw its Node hold: "closed" tainted, "open" untainted; absent
 * when it does not know). A record without a wish asks for nothing (its agent does not gate).
 */
export function gateWrites(
  records: Iterable<Pick<Node, "name" | "status">>,
  known: ReadonlyMap<string, WorkloadGateWish>,
): GateWrite[] {
  const out: GateWrite[] = [];
  for (const r of records) {
    const wish = r.status?.workloadGate;
    if (wish !== undefined && known.get(r.name) !== wish) out.push({ node: r.name, wish });
  }
  return out;
}

/** Default of {@link WorkloadGateOptions.resyncMs}: five minutes. */
export const GATE_RESYNC_MS = 300_000;
/** Default of {@link WorkloadGateOptions.retryMs}. */
export const GATE_RETRY_MS = 2_000;

export interface WorkloadGateOptions {
  /** Writes a Node's taint (KubernetesDatastore.setNodeTaint with the not-ready taint). */
  write: NodeTaintWriter;
  /** The node records as the controller mirrors them. */
  nodes: () => Iterable<Node>;
  logger: Logger;
  /** How often every gated Node is read again, to put right what others changed. Default {@link GATE_RESYNC_MS}. */
  resyncMs?: number;
  /** How soon failed writes are tried again. Default {@link GATE_RETRY_MS}. */
  retryMs?: number;
}

/** Applies the records' wishes to their Nodes while the controller leads (see the module comment). */
export class WorkloadGateController {
  /** What each Node was seen to hold after the last write or read of it. */
  private readonly known = new Map<string, WorkloadGateWish>();
  /** The last failure logged per node, so the same one is not logged at every retry. */
  private readonly lastError = new Map<string, string>();
  private running = false;
  private dirty = false;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly resync: NodeJS.Timeout;

  constructor(private readonly o: WorkloadGateOptions) {
    this.resync = setInterval(() => {
      this.known.clear();
      this.kick();
    }, o.resyncMs ?? GATE_RESYNC_MS);
    this.resync.unref();
  }

  /** The node records changed (or a retry is due): writes what they ask, in the background. */
  kick(): void {
    this.dirty = true;
    void this.loop();
  }

  /** Stops for good (leadership lost, controller stopped); a write under way finishes. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.resync);
    if (this.retry !== undefined) clearTimeout(this.retry);
  }

  private async loop(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      while (this.dirty && !this.stopped) {
        this.dirty = false;
        if (!(await this.pass()) && !this.stopped) {
          if (this.retry !== undefined) clearTimeout(this.retry);
          this.retry = setTimeout(() => this.kick(), this.o.retryMs ?? GATE_RETRY_MS);
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** One pass over the records: writes what differs. Never throws; resolves false when a write failed. */
  async pass(): Promise<boolean> {
    const records = [...this.o.nodes()];
    const names = new Set(records.map((r) => r.name));
    for (const name of this.known.keys()) if (!names.has(name)) this.known.delete(name);
    let ok = true;
    for (const { node, wish } of gateWrites(records, this.known)) {
      if (this.stopped) break;
      try {
        const changed = await this.o.write(node, wish === "closed");
        this.known.set(node, wish);
        this.lastError.delete(node);
        if (changed)
          this.o.logger.info(
            { node, workloadGate: wish },
            wish === "closed"
              ? "tainted the Node: its agent's tunnels are not all up yet"
              : "removed the Node's taint: its agent's tunnels are up",
          );
      } catch (e) {
        ok = false;
        const message = (e as Error).message;
        if (this.lastError.get(node) !== message)
          this.o.logger.warn(
            { node, workloadGate: wish, err: message },
            "cannot write the Node's workload taint; trying again",
          );
        this.lastError.set(node, message);
      }
    }
    return ok;
  }
}
