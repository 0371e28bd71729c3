/**
 * Policy status (docs/design.md#selective-encryption): the leader controller reports on every stored
 * policy, EncryptionPolicy or StarlingX IPsecPolicy, whether it was accepted and whether it is
 * programmed on every live node.
 *
 * - `Accepted`: True when the stored object validates; False with the validation error (naming
 *   the field) when it does not (the datastores list such objects as `invalid` and send INVALID
 *   watch events).
 * - `Programmed`: "programmed on N of M nodes": a live node counts when the selector-set hash it
 *   publishes (`status.selection`, src/agent/selection.ts) equals the hash of the set the
 *   controller resolves from the same policies, services and endpoints. The controller mirrors
 *   the policies as agents do (an object that turns invalid keeps its last valid version), so both
 *   resolve the same set.
 *
 * The computation is pure ({@link policyStatuses}); {@link PolicyStatusController} mirrors the
 * datastore, runs it when something it reads changed (and every few seconds, for liveness) and
 * writes a status only when it differs from the stored one.
 */
import type { Clock } from "../clock.js";
import { isConflictError, isNotFoundError } from "../datastore/errors.js";
import type { Datastore, InvalidObject, LiveNodes, Stored, Watch } from "../datastore/types.js";
import type { Logger } from "../log/logger.js";
import {
  CLUSTER_ENCRYPTION_NAME,
  type ClusterEncryption,
  type EncryptionPolicy,
  type Endpoints,
  type Node,
  type PolicyCondition,
  type PolicyStatus,
  type Service,
} from "../model/index.js";
import { fromStored, policyKey, resolveSelectors } from "../policy/index.js";
import { applied, isLive, selectionHash, type Liveness } from "../protocol/index.js";

/** Everything the status of the policies depends on. */
export interface PolicyStatusInputs {
  /** Valid policies by key, as agents hold them (an object that turned invalid keeps its last valid version). */
  readonly policies: ReadonlyMap<string, Stored<EncryptionPolicy>>;
  /** Policies whose stored form does not validate now, by key. */
  readonly invalid: ReadonlyMap<string, InvalidObject>;
  readonly services: readonly Service[];
  readonly endpoints: readonly Endpoints[];
  readonly nodes: readonly Node[];
  /** Which nodes are live (only live nodes count). */
  readonly live: Liveness;
  readonly cluster: ClusterEncryption | undefined;
  /** Wall-clock ms, for transition times. */
  readonly now: number;
}

/** A status to write: to the object under `key` whose revision is `revision`. */
export interface PolicyStatusWrite {
  readonly key: string;
  readonly revision: string;
  readonly status: PolicyStatus;
  /** What the object holds now (for "only when changed"), if anything. */
  readonly current: PolicyStatus | undefined;
}

/** Whether two statuses say the same (transition times aside). */
export function sameStatus(a: PolicyStatus | undefined, b: PolicyStatus | undefined): boolean {
  const strip = (s: PolicyStatus | undefined) =>
    s === undefined
      ? undefined
      : {
          ...s,
          conditions: [...s.conditions]
            .sort((x, y) => (x.type < y.type ? -1 : 1))
            .map(({ lastTransitionTime: _t, ...c }) => c),
        };
  return JSON.stringify(strip(a)) === JSON.stringify(strip(b));
}

/** A condition keeping the stored one's transition time when its status did not change. */
function condition(
  previous: PolicyStatus | undefined,
  next: Omit<PolicyCondition, "lastTransitionTime">,
  now: number,
): PolicyCondition {
  const before = previous?.conditions.find((c) => c.type === next.type);
  const since =
    before !== undefined && before.status === next.status
      ? before.lastTransitionTime
      : new Date(now).toISOString().replace(/\.\d{3}Z$/, "Z");
  return { ...next, lastTransitionTime: since };
}

/**
 * The status every stored policy should have. Pure: the same inputs give the same statuses (and
 * transition times carried over from the stored ones).
 */
export function policyStatuses(inputs: PolicyStatusInputs): PolicyStatusWrite[] {
  const valid = [...inputs.policies.values()];
  const policies = valid.map((s) => ({ stored: s, policy: fromStored(s.value) }));
  const set = resolveSelectors({
    policies: policies.map((p) => p.policy),
    services: inputs.services,
    endpoints: inputs.endpoints,
    pods: [],
  });
  const hash = selectionHash(set.selectors);
  const live = inputs.nodes.filter((n) => isLive(n, inputs.live));
  const programmed = live.filter((n) => n.status?.selection === hash).length;
  const c = inputs.cluster;
  const on = c !== undefined && c.enabled && applied(c).enabled;
  const selective = c?.encryption === "selective";
  const gen = (g: number | undefined) => (g === undefined ? {} : { observedGeneration: g });
  const out: PolicyStatusWrite[] = [];

  for (const { stored, policy } of policies) {
    if (inputs.invalid.has(stored.key)) continue;
    const prefix = `${policyKey(policy)}#`;
    const mine = set.selectors.filter((s) => s.sources.some((src) => src.startsWith(prefix)));
    const ips = new Set(mine.flatMap((s) => s.podIPs));
    const warnings = set.warnings
      .filter((w) => w.source.startsWith(prefix))
      .map((w) => `rule ${w.source.slice(prefix.length)}: ${w.message}`);
    let programmedCond: Omit<PolicyCondition, "lastTransitionTime">;
    if (!selective)
      programmedCond = {
        type: "Programmed",
        status: "False",
        reason: "NotSelective",
        message: `ClusterEncryption "${CLUSTER_ENCRYPTION_NAME}" has encryption: ${c?.encryption ?? "(none yet)"}; policies select traffic only with encryption: selective`,
      };
    else if (!on)
      programmedCond = {
        type: "Programmed",
        status: "False",
        reason: "EncryptionDisabled",
        message: "encryption is disabled in the cluster: nothing is programmed",
      };
    else {
      const all = programmed === live.length && live.length > 0;
      programmedCond = {
        type: "Programmed",
        status: all ? "True" : "False",
        reason: all ? "Programmed" : "Pending",
        message: [`programmed on ${programmed} of ${live.length} nodes`, ...warnings].join("; "),
      };
    }
    const previous = stored.value.status;
    const status: PolicyStatus = {
      conditions: [
        condition(
          previous,
          {
            type: "Accepted",
            status: "True",
            reason: "Valid",
            message: "the policy is valid",
            ...gen(stored.generation),
          },
          inputs.now,
        ),
        condition(previous, { ...programmedCond, ...gen(stored.generation) }, inputs.now),
      ],
      programmedNodes: selective && on ? programmed : 0,
      nodes: live.length,
      selectedEndpoints: ips.size,
      ...gen(stored.generation),
    };
    out.push({ key: stored.key, revision: stored.revision, status, current: previous });
  }

  for (const bad of inputs.invalid.values()) {
    const previous = bad.status;
    const kept = inputs.policies.has(bad.key);
    const status: PolicyStatus = {
      conditions: [
        condition(
          previous,
          {
            type: "Accepted",
            status: "False",
            reason: "Invalid",
            message: bad.error.message,
            ...gen(bad.generation),
          },
          inputs.now,
        ),
        condition(
          previous,
          {
            type: "Programmed",
            status: "False",
            reason: "NotAccepted",
            message: kept
              ? "the policy is invalid: nodes keep its last valid version installed"
              : "the policy is invalid: nothing of it is installed",
            ...gen(bad.generation),
          },
          inputs.now,
        ),
      ],
      programmedNodes: 0,
      nodes: live.length,
      selectedEndpoints: 0,
      ...gen(bad.generation),
    };
    out.push({ key: bad.key, revision: bad.revision, status, current: previous });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Options of the PolicyStatusController. */
export interface PolicyStatusControllerOptions {
  store: Datastore;
  clock: Clock;
  logger: Logger;
  /** Look again this often even without changes (node liveness moves with time). Default 5 s. */
  recheckMs?: number;
  /** At most one computation per this many ms (writes of many nodes coalesce). Default 500. */
  minIntervalMs?: number;
}

type Mirrored = "encryptionpolicies" | "services" | "endpoints" | "nodes" | "clusterencryptions";

/**
 * Mirrors policies, services, endpoints, nodes and the cluster configuration, and keeps every
 * policy's status current. Run by the leader only: {@link start} when it leads, {@link stop} when
 * it loses leadership. Writes are conditional on the revision the status was computed from; a
 * conflict means a newer version is on its way through the watch.
 */
export class PolicyStatusController {
  private readonly watches: Watch[] = [];
  private readonly policies = new Map<string, Stored<EncryptionPolicy>>();
  private readonly invalid = new Map<string, InvalidObject>();
  private readonly services = new Map<string, Service>();
  private readonly endpoints = new Map<string, Endpoints>();
  private readonly nodes = new Map<string, Node>();
  private cluster: ClusterEncryption | undefined;
  private liveness: LiveNodes | undefined;
  private timer: NodeJS.Timeout | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private running = false;
  private dirty = false;
  private stopped = true;
  private lastRun = 0;
  /** Status writes made, and those that failed (conflicts excluded): for metrics. */
  readonly counters = { writes: 0, failures: 0 };

  constructor(private readonly o: PolicyStatusControllerOptions) {}

  /** Lists and watches what the statuses depend on, then computes and writes them. */
  async start(): Promise<void> {
    this.stopped = false;
    this.liveness = await this.o.store.followLiveness(() => this.kick());
    for (const kind of [
      "clusterencryptions",
      "nodes",
      "services",
      "endpoints",
      "encryptionpolicies",
    ] as const)
      await this.mirror(kind);
    this.recheck = setInterval(() => this.kick(), this.o.recheckMs ?? 5000);
    this.kick();
  }

  /** Stops watching and writing. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.recheck !== undefined) clearInterval(this.recheck);
    await Promise.all([...this.watches.splice(0).map((w) => w.close()), this.liveness?.close()]);
  }

  private async mirror(kind: Mirrored): Promise<void> {
    const relist = async (): Promise<void> => {
      if (this.stopped) return;
      const col = this.o.store.collection(kind);
      const list = await col.list();
      this.apply(kind, list.items, list.invalid);
      const w = await col.watch(list.revision, {
        event: (e) => {
          if (e.type === "DELETED") this.remove(kind, e.key);
          else if (e.type === "INVALID") {
            if (kind === "encryptionpolicies") this.invalid.set(e.key, e);
          } else if (!this.put(kind, e.object)) return;
          this.kick();
        },
        gone: () => {
          void relist().catch((err: unknown) => this.o.logger.warn({ kind, err }, "relist failed"));
        },
        error: (err) => this.o.logger.warn({ kind, err }, "watch problem; retrying"),
      });
      if (this.stopped) await w.close();
      else this.watches.push(w);
    };
    await relist();
  }

  private apply(kind: Mirrored, items: Stored<unknown>[], invalid: InvalidObject[]): void {
    if (kind === "encryptionpolicies") {
      this.policies.clear();
      this.invalid.clear();
      for (const i of invalid) this.invalid.set(i.key, i);
    } else if (kind === "services") this.services.clear();
    else if (kind === "endpoints") this.endpoints.clear();
    else if (kind === "nodes") this.nodes.clear();
    else this.cluster = undefined;
    for (const s of items) this.put(kind, s);
  }

  /** Records a new version; false when nothing the statuses depend on changed. */
  private put(kind: Mirrored, s: Stored<unknown>): boolean {
    switch (kind) {
      case "encryptionpolicies":
        this.invalid.delete(s.key);
        this.policies.set(s.key, s as Stored<EncryptionPolicy>);
        return true;
      case "services":
        this.services.set(s.key, s.value as Service);
        return true;
      case "endpoints":
        this.endpoints.set(s.key, s.value as Endpoints);
        return true;
      case "nodes": {
        const n = s.value as Node;
        const before = this.nodes.get(s.key);
        this.nodes.set(s.key, n);
        // Only the selection hash counts here (liveness comes from the liveness records).
        return before === undefined || before.status?.selection !== n.status?.selection;
      }
      case "clusterencryptions":
        if (s.key === CLUSTER_ENCRYPTION_NAME) this.cluster = s.value as ClusterEncryption;
        return true;
    }
  }

  private remove(kind: Mirrored, key: string): void {
    if (kind === "encryptionpolicies") {
      this.policies.delete(key);
      this.invalid.delete(key);
    } else if (kind === "services") this.services.delete(key);
    else if (kind === "endpoints") this.endpoints.delete(key);
    else if (kind === "nodes") this.nodes.delete(key);
    else if (key === CLUSTER_ENCRYPTION_NAME) this.cluster = undefined;
  }

  private kick(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (this.timer !== undefined) return;
    const wait = Math.max(0, this.lastRun + (this.o.minIntervalMs ?? 500) - this.o.clock.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.loop();
    }, wait);
  }

  private async loop(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      while (this.dirty && !this.stopped) {
        this.dirty = false;
        this.lastRun = this.o.clock.now();
        await this.writeAll();
      }
    } finally {
      this.running = false;
    }
  }

  /** Computes every status and writes those that changed. */
  async writeAll(): Promise<void> {
    if (this.liveness === undefined) return;
    const writes = policyStatuses({
      live: this.liveness,
      policies: this.policies,
      invalid: this.invalid,
      services: [...this.services.values()],
      endpoints: [...this.endpoints.values()],
      nodes: [...this.nodes.values()],
      cluster: this.cluster,
      now: this.o.clock.wallNow(),
    });
    const changed = writes.filter((w) => !sameStatus(w.status, w.current));
    this.o.logger.debug({ policies: writes.length, changed: changed.length }, "policy status computed");
    for (const w of changed) {
      if (this.stopped) return;
      try {
        const revision = await this.o.store.writePolicyStatus(w.key, w.status, { revision: w.revision });
        this.counters.writes++;
        // The watch brings this version too; until then, judge by what was just written.
        const valid = this.policies.get(w.key);
        if (this.invalid.has(w.key))
          this.invalid.set(w.key, { ...this.invalid.get(w.key)!, revision, status: w.status });
        else if (valid !== undefined)
          this.policies.set(w.key, { ...valid, revision, value: { ...valid.value, status: w.status } });
        this.o.logger.info(
          {
            policy: w.key,
            conditions: w.status.conditions.map((c) => `${c.type}=${c.status}`).join(","),
            programmed: `${w.status.programmedNodes}/${w.status.nodes}`,
          },
          "policy status",
        );
      } catch (e) {
        // Conflict: a newer version is coming through the watch; gone: so is its deletion.
        if (isConflictError(e) || isNotFoundError(e)) continue;
        this.counters.failures++;
        this.o.logger.warn({ policy: w.key, err: e }, "policy status write failed");
        this.dirty = true;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
}
