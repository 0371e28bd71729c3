/**
 * Workload gating: a node's agent keeps the NoSchedule taint {@link NOT_READY_TAINT} on its own
 * Kubernetes Node until its tunnels to every live peer are up, so the scheduler places no pod on a
 * node whose traffic strict mode would drop (docs/design.md#workload-gating).
 *
 * The taint is a start-up gate, as Cilium's `node.cilium.io/agent-not-ready`: once the tunnels
 * are up it is removed, and this agent does not put it back when a tunnel fails later. A NoSchedule
 * taint evicts nothing already running, and a peer that breaks makes every other node's tunnel to
 * it fail: re-tainting on that would stop scheduling on the whole cluster because of one node.
 * Failing tunnels are reported instead (the node's tunnel report in `status`, the metrics and
 * their alerts). An agent that starts again (upgrade, crash) gates again: it taints its node if
 * the first tunnel report it makes is not all up.
 */
import type { Logger } from "../log/logger.js";
import { allUp, type TunnelReport } from "./tunnels.js";

/** The taint: key and effect, as Kubernetes identifies a taint. */
export const NOT_READY_TAINT = { key: "podcrypt.io/not-ready", effect: "NoSchedule" } as const;

/** Puts {@link NOT_READY_TAINT} on this node or takes it off (Kubernetes: a Node patch). */
export interface TaintPort {
  /** `present`: taint the node, else untaint it. Resolves whether the Node changed. */
  set(present: boolean): Promise<boolean>;
}

/** What the agent knows of its tunnels at a heartbeat. */
export type TunnelView =
  /** Encryption is off: pod traffic needs no tunnel. */
  | { kind: "plaintext" }
  /** The cluster's configuration is not known yet (no ClusterEncryption, not initialised). */
  | { kind: "unknown" }
  | { kind: "report"; report: TunnelReport };

/**
 * The gate of one agent's life. Call {@link WorkloadGate.observe} after each tunnel judgement; it
 * writes the Node only when its state must change (and, once, to learn that a restarted agent's
 * node is untainted already), never throws, and retries a failed write at the next observation.
 */
export class WorkloadGate {
  /** The taint was removed (or found absent) with the tunnels up: the gate stays open. */
  private opened = false;
  /** The node is known to carry the taint (this agent put it there or found it). */
  private tainted = false;
  /** The last failure logged, so the same one is not logged every heartbeat. */
  private lastError: string | undefined;

  constructor(
    private readonly port: TaintPort,
    private readonly logger: Logger,
  ) {}

  /** Whether the gate is open (the taint is off for good, for this agent's life). */
  get open(): boolean {
    return this.opened;
  }

  async observe(view: TunnelView): Promise<void> {
    if (this.opened) return;
    const ready = view.kind === "plaintext" || (view.kind === "report" && allUp(view.report));
    try {
      if (ready) {
        const removed = await this.port.set(false);
        this.opened = true;
        this.tainted = false;
        this.lastError = undefined;
        this.logger.info(
          { taint: NOT_READY_TAINT.key, removed },
          view.kind === "plaintext"
            ? "encryption is off: workloads may be scheduled on this node (taint off)"
            : "tunnels to every live peer are up: workloads may be scheduled on this node (taint off)",
        );
        return;
      }
      if (this.tainted) return;
      const added = await this.port.set(true);
      this.tainted = true;
      this.lastError = undefined;
      const waiting =
        view.kind === "report"
          ? view.report.families.flatMap((f) => [
              ...f.pending.map((p) => `${p} pending`),
              ...f.failing.map((p) => `${p} failing`),
            ])
          : ["the cluster's configuration"];
      this.logger.info(
        { taint: NOT_READY_TAINT.key, added, waiting: waiting.slice(0, 20) },
        "tunnels not up yet: no workloads scheduled on this node until they are (taint on)",
      );
    } catch (e) {
      const message = (e as Error).message;
      if (message !== this.lastError)
        this.logger.warn(
          { taint: NOT_READY_TAINT.key, err: message },
          "cannot write this node's workload taint; trying again at the next heartbeat",
        );
      this.lastError = message;
    }
  }
}
