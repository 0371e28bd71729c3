/**
 * Workload gating: a node's agent asks for the NoSchedule taint {@link NOT_READY_TAINT} on its own
 * Kubernetes Node until its tunnels to every live peer are up, so the scheduler places no pod on a
 * node whose traffic strict mode would drop (docs/design.md#workload-gating).
 *
 * The agent does not write the Node: it publishes its wish in its own node record
 * (`status.workloadGate`, "closed" or "open"), and the leader controller taints or untaints the
 * Node accordingly (src/controller/workload-gate.ts). So no agent needs any write on Node objects:
 * a compromised node cannot taint, label or cordon other Nodes, nor its own.
 *
 * The gate is a start-up gate, as Cilium's `node.cilium.io/agent-not-ready`: once the tunnels
 * are up it opens, and this agent does not close it again when a tunnel fails later. A NoSchedule
 * taint evicts nothing already running, and a peer that breaks makes every other node's tunnel to
 * it fail: re-tainting on that would stop scheduling on the whole cluster because of one node.
 * Failing tunnels are reported instead (the node's tunnel report in `status`, the metrics and
 * their alerts). An agent that starts again (upgrade, crash) gates again: it asks for the taint if
 * the first tunnel report it makes is not all up.
 */
import type { Logger } from "../log/logger.js";
import type { WorkloadGateWish } from "../model/index.js";
import { allUp, type TunnelReport } from "./tunnels.js";

/** The taint: key and effect, as Kubernetes identifies a taint. */
export const NOT_READY_TAINT = { key: "podcrypt.io/not-ready", effect: "NoSchedule" } as const;

/** Publishes the gate's wish in this node's own record (`status.workloadGate`). */
export interface GatePort {
  /** Records `wish`. Resolves whether the record changed (false: it already said so). */
  publish(wish: WorkloadGateWish): Promise<boolean>;
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
 * writes the record only when its wish must change (and, once, to learn that a restarted agent's
 * record says open already), never throws, and retries a failed write at the next observation.
 */
export class WorkloadGate {
  /** The record says open with the tunnels up: the gate stays open for this agent's life. */
  private opened = false;
  /** The record is known to say closed (this agent wrote it or found it). */
  private closed = false;
  /** The last failure logged, so the same one is not logged every heartbeat. */
  private lastError: string | undefined;

  constructor(
    private readonly port: GatePort,
    private readonly logger: Logger,
  ) {}

  /** Whether the gate is open (the record says open for good, for this agent's life). */
  get open(): boolean {
    return this.opened;
  }

  async observe(view: TunnelView): Promise<void> {
    if (this.opened) return;
    const ready = view.kind === "plaintext" || (view.kind === "report" && allUp(view.report));
    try {
      if (ready) {
        const changed = await this.port.publish("open");
        this.opened = true;
        this.closed = false;
        this.lastError = undefined;
        this.logger.info(
          { taint: NOT_READY_TAINT.key, workloadGate: "open", changed },
          view.kind === "plaintext"
            ? "encryption is off: workloads may be scheduled on this node (gate open: the controller removes the taint)"
            : "tunnels to every live peer are up: workloads may be scheduled on this node (gate open: the controller removes the taint)",
        );
        return;
      }
      if (this.closed) return;
      const changed = await this.port.publish("closed");
      this.closed = true;
      this.lastError = undefined;
      const waiting =
        view.kind === "report"
          ? view.report.families.flatMap((f) => [
              ...f.pending.map((p) => `${p} pending`),
              ...f.failing.map((p) => `${p} failing`),
            ])
          : ["the cluster's configuration"];
      this.logger.info(
        { taint: NOT_READY_TAINT.key, workloadGate: "closed", changed, waiting: waiting.slice(0, 20) },
        "tunnels not up yet: no workloads scheduled on this node until they are (gate closed: the controller taints it)",
      );
    } catch (e) {
      const message = (e as Error).message;
      if (message !== this.lastError)
        this.logger.warn(
          { taint: NOT_READY_TAINT.key, err: message },
          "cannot publish this node's workload gate in its record; trying again at the next heartbeat",
        );
      this.lastError = message;
    }
  }
}
