import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import { parseWith, policyStatusSchema, type PolicyStatus, type ResourceKind } from "../../model/index.js";
import type { AuthoritySource, NodeAuthority } from "../../agent/claims.js";
import { Campaigns, type ElectionPort } from "../election.js";
import { ClosedError, ConflictError, LeaseExpiredError, NotFoundError } from "../errors.js";
import type {
  CampaignOptions,
  Collection,
  Datastore,
  Lease,
  LeaseOptions,
  LeaderElection,
  LiveNodes,
  LivenessHold,
} from "../types.js";
import { KubeClient, isKubeApiError } from "./client.js";
import {
  apiPath,
  fromKube,
  LEASE_LABEL,
  locate,
  KUBE_NODE_REF,
  MANAGED_LABEL,
  policyStatusPatch,
  REFS,
  taintPatch,
  type NodeTaint,
  refsOf,
  type KubeObject,
  type ResourceRef,
} from "./mapping.js";
import { Informer } from "./watch.js";
import { KubeCollection, unavailable } from "./collection.js";
import { KubeLease } from "./lease.js";

const LEASES: ResourceRef = {
  group: "coordination.k8s.io",
  version: "v1",
  plural: "leases",
  kind: "Lease",
  namespaced: true,
};

/** Options of the Kubernetes datastore. */
export interface KubernetesDatastoreOptions {
  /** How to reach the API server (in a pod: `kc.loadFromCluster()`). */
  kubeConfig: KubeConfig;
  /** Namespace of the datastore's own Leases. Must exist. Default `podcrypt-system`. */
  namespace?: string;
  /** Holder identity written into granted Leases. Default the host name. */
  identity?: string;
  /**
   * Whether this client deletes Leases not renewed in time (and what is attached to them). Default
   * true; agents pass false: they may not write Leases (the controller's leader Lease among them),
   * and the controller expires them.
   */
  expireLeases?: boolean;
  /** How often lease expiry is checked. Default 200 ms. */
  leaseCheckMs?: number;
  /** Clock. Default `() => new Date()`. */
  now?: () => Date;
}

/** A Node's addresses (`status.addresses`) and pod CIDRs (`spec.podCIDRs`, or the older `spec.podCIDR`). */
export function nodeNetworkOf(obj: KubeObject): {
  addresses: { type: string; address: string }[];
  podCIDRs: string[];
} {
  const status = (obj["status"] ?? {}) as { addresses?: { type?: unknown; address?: unknown }[] };
  const spec = (obj["spec"] ?? {}) as { podCIDRs?: unknown; podCIDR?: unknown };
  const addresses = (Array.isArray(status.addresses) ? status.addresses : [])
    .filter((a) => typeof a.type === "string" && typeof a.address === "string")
    .map((a) => ({ type: a.type as string, address: a.address as string }));
  const podCIDRs = Array.isArray(spec.podCIDRs)
    ? spec.podCIDRs.filter((c): c is string => typeof c === "string")
    : typeof spec.podCIDR === "string"
      ? [spec.podCIDR]
      : [];
  return { addresses, podCIDRs };
}

/** What a Node says Kubernetes assigned it, as claims are vetted against (src/agent/claims.ts). */
export function authorityOf(obj: KubeObject): NodeAuthority {
  const { addresses, podCIDRs } = nodeNetworkOf(obj);
  return { podCIDRs, addresses: addresses.map((a) => a.address) };
}

/** How often {@link KubernetesDatastore.setNodeTaint} reads and patches again when the Node raced it. */
const TAINT_ATTEMPTS = 5;

/** Kubernetes MicroTime: RFC 3339 with microseconds. */
/** The name prefix of nodes' liveness Leases (the rest is the node's name). */
export const NODE_LEASE_PREFIX = "podcrypt-node-";

function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

interface TrackedLease {
  resourceVersion: string;
  observedAt: number;
  ttlMs: number;
}

/**
 * The `kubernetes` datastore (docs/design.md#datastores): CRDs ClusterEncryption, EncryptionPolicy and
 * StarlingX's IPsecPolicy (the cluster-wide policies), node records as PodcryptNodes (one per
 * node, named after it; Nodes are read, and only the controller patches their workload-gating
 * taint), Services and Endpoints, coordination
 * Leases for liveness and leadership; policy status through the policies' status subresource. See
 * mapping.ts for the object mapping.
 *
 * Revisions are Kubernetes resourceVersions (in practice etcd revisions: numeric, increasing).
 * Differences from the interface's ideal, all documented here:
 * - Leases are coordination.k8s.io Leases labelled `podcrypt.io/managed=grant`. Kubernetes has no
 *   server-side expiry: every datastore client tracks the Leases and, when one was not renewed
 *   within its duration of local time (client-go's rule, immune to clock skew), deletes it and
 *   every object labelled `podcrypt.io/lease=<id>`. Expiry therefore needs at least one live client
 *   that expires leases (`expireLeases`: the controller; agents may not write Leases).
 * - Watch.revision also advances on BOOKMARK events, so a resumed watch starts from a recent
 *   resourceVersion and is less likely to get 410 Gone.
 * - Policies live in two resources (EncryptionPolicy, IPsecPolicy), listed one after the other:
 *   the list's revision is the first list's, so a watch from it may deliver once more a change of
 *   IPsecPolicies that the list already showed (never miss one; resourceVersions are
 *   cluster-wide). A policy watch is one stream per resource; Watch.revision is the older one's.
 * - An update of a policy keeps its status (the status subresource); Stored.generation is its
 *   metadata.generation, which moves with the spec only.
 */
export class KubernetesDatastore implements Datastore {
  readonly backend = "kubernetes" as const;
  readonly client: KubeClient;
  private readonly namespace: string;
  private readonly identity: string;
  private readonly now: () => Date;
  private readonly collections = new Map<ResourceKind, KubeCollection<ResourceKind>>();
  private readonly tracked = new Map<string, TrackedLease>();
  private readonly leaseWaiters = new Map<string, Set<() => void>>();
  private readonly leases = new Set<KubeLease>();
  private readonly campaigns = new Campaigns();
  /** Open watches, closed with the store. */
  readonly watches = new Set<{ close(): Promise<void> }>();
  private informer: Informer | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(readonly options: KubernetesDatastoreOptions) {
    this.client = new KubeClient(options.kubeConfig);
    this.namespace = options.namespace ?? "podcrypt-system";
    this.identity = options.identity ?? hostname();
    this.now = options.now ?? (() => new Date());
  }

  /** Connects and starts lease tracking; resolves once the Leases are listed. */
  static async connect(options: KubernetesDatastoreOptions): Promise<KubernetesDatastore> {
    const ds = new KubernetesDatastore(options);
    await ds.startLeaseTracking();
    return ds;
  }

  /** The namespace of the datastore's Leases and cluster-wide policies. */
  get leaseNamespace(): string {
    return this.namespace;
  }

  private async startLeaseTracking(): Promise<void> {
    const observe = (o: KubeObject): void => {
      const name = o.metadata?.name ?? "";
      for (const w of this.leaseWaiters.get(name) ?? []) w();
      if (o.metadata?.labels?.[MANAGED_LABEL] !== "grant") return;
      const spec = (o["spec"] ?? {}) as { leaseDurationSeconds?: number };
      const prev = this.tracked.get(name);
      if (prev?.resourceVersion === o.metadata?.resourceVersion) return;
      this.tracked.set(name, {
        resourceVersion: o.metadata?.resourceVersion ?? "",
        observedAt: Date.now(),
        ttlMs: (spec.leaseDurationSeconds ?? 1) * 1000,
      });
    };
    const selector = `${MANAGED_LABEL} in (grant,leader)`;
    this.informer = new Informer(
      this.options.kubeConfig,
      apiPath(LEASES, this.namespace),
      () => this.client.list(LEASES, this.namespace, selector),
      {
        added: observe,
        modified: observe,
        deleted: (o) => {
          const name = o.metadata?.name ?? "";
          for (const w of this.leaseWaiters.get(name) ?? []) w();
          if (this.tracked.delete(name) && this.options.expireLeases !== false)
            void this.sweepAttached(name).catch(() => {});
        },
      },
      { labelSelector: selector },
    );
    await this.informer.start();
    if (this.options.expireLeases === false) return;
    this.checkTimer = setInterval(() => void this.expireLeases(), this.options.leaseCheckMs ?? 200);
    this.checkTimer.unref();
  }

  private async expireLeases(): Promise<void> {
    const now = Date.now();
    for (const [name, t] of [...this.tracked]) {
      if (now - t.observedAt <= t.ttlMs) continue;
      try {
        await this.client.delete(LEASES, this.namespace, name, t.resourceVersion);
        this.tracked.delete(name);
        await this.sweepAttached(name);
      } catch (e) {
        // 409: renewed meanwhile (the informer will tell); 404: someone else expired it.
        if (isKubeApiError(e, 404)) this.tracked.delete(name);
      }
    }
  }

  /** Deletes every object attached to lease `id` (and leader records that name it). */
  async sweepAttached(id: string): Promise<void> {
    const selector = `${LEASE_LABEL}=${id}`;
    for (const kind of Object.keys(REFS) as ResourceKind[]) {
      const col = this.collection(kind);
      for (const ref of refsOf(kind)) {
        const { items } = await this.client.list(ref, "", selector);
        for (const o of items) {
          const rec = fromKube(kind, o, ref);
          await col.delete(rec.key, { revision: o.metadata?.resourceVersion ?? "" }).catch(() => {});
        }
      }
    }
    const { items } = await this.client.list(LEASES, this.namespace, selector);
    for (const o of items) {
      await this.client
        .delete(LEASES, this.namespace, o.metadata?.name ?? "", o.metadata?.resourceVersion)
        .catch(() => {});
    }
  }

  /** Resolves when the Lease `name` changes, after `maxWaitMs`, or when `signal` aborts. */
  private waitForLease(name: string, maxWaitMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.leaseWaiters.get(name);
      if (set === undefined) {
        set = new Set();
        this.leaseWaiters.set(name, set);
      }
      const s = set;
      const done = (): void => {
        clearTimeout(timer);
        s.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, maxWaitMs);
      s.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Throws ClosedError after close. */
  checkOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  /** The label value for `lease` after checking it is alive (LeaseExpiredError otherwise). */
  async leaseLabel(lease: string): Promise<string> {
    const obj = await this.client.get(LEASES, this.namespace, lease).catch((e: unknown) => {
      throw unavailable(e);
    });
    if (obj === undefined || obj.metadata?.labels?.[MANAGED_LABEL] !== "grant")
      throw new LeaseExpiredError(lease);
    return lease;
  }

  collection<K extends ResourceKind>(kind: K): Collection<K> {
    let c = this.collections.get(kind);
    if (c === undefined) {
      c = new KubeCollection(this, kind) as never;
      this.collections.set(kind, c!);
    }
    return c as unknown as Collection<K>;
  }

  /**
   * Writes a policy's status through the status subresource of its EncryptionPolicy (key
   * `namespace/name`) or IPsecPolicy (key `name`): a JSON merge patch conditional on the
   * resourceVersion: the one call is `patch <resource>/status`.
   */
  async writePolicyStatus(key: string, status: PolicyStatus, options: { revision: string }): Promise<string> {
    this.checkOpen();
    const valid = parseWith(policyStatusSchema, status, "status");
    const { ref, namespace, name } = locate("encryptionpolicies", key);
    try {
      const obj = await this.client.patchStatus(ref, namespace, name, {
        metadata: { resourceVersion: options.revision },
        status: policyStatusPatch(valid),
      });
      return obj.metadata?.resourceVersion ?? "";
    } catch (e) {
      if (isKubeApiError(e, 404)) throw new NotFoundError("encryptionpolicies", key, { cause: e });
      if (isKubeApiError(e, 409))
        throw new ConflictError("encryptionpolicies", key, options.revision, undefined, { cause: e });
      throw unavailable(e);
    }
  }

  /**
   * Registers Node `name` as a kubelet does when Kubernetes has none: `status.addresses` with its
   * InternalIP and `spec.podCIDRs`, as the kubelet and the node IPAM controller would publish them.
   * For clusters without kubelets (the local cluster, tests); podcrypt's components are not granted
   * `create nodes`. Returns whether it created the Node (false: there is one, left as it is).
   */
  async registerNode(o: {
    name: string;
    internalIP: string;
    /** A second InternalIP, of the other family (a dual-stack node lists one of each). */
    internalIP2?: string;
    podCIDRs: readonly string[];
  }): Promise<boolean> {
    this.checkOpen();
    try {
      await this.client.create(KUBE_NODE_REF, "", {
        metadata: { name: o.name, labels: { "kubernetes.io/hostname": o.name } },
        spec: { podCIDR: o.podCIDRs[0], podCIDRs: [...o.podCIDRs] },
        status: {
          addresses: [
            { type: "InternalIP", address: o.internalIP },
            ...(o.internalIP2 === undefined ? [] : [{ type: "InternalIP", address: o.internalIP2 }]),
            { type: "Hostname", address: o.name },
          ],
        },
      });
      return true;
    } catch (e) {
      if (isKubeApiError(e, 409)) return false;
      throw unavailable(e);
    }
  }

  /**
   * What Kubernetes says about the network of Node `name` (as the kubelet and the node IPAM
   * controller publish it): `status.addresses` by type and `spec.podCIDRs` (or the older
   * `spec.podCIDR`). NotFoundError when there is no such Node. One `get nodes` call.
   */
  async nodeNetwork(
    name: string,
  ): Promise<{ addresses: { type: string; address: string }[]; podCIDRs: string[] }> {
    this.checkOpen();
    const obj = await this.client.get(KUBE_NODE_REF, "", name).catch((e: unknown) => {
      throw unavailable(e);
    });
    if (obj === undefined) throw new NotFoundError("nodes", `${name} (no such Kubernetes Node)`);
    return nodeNetworkOf(obj);
  }

  /**
   * Adds (`present`) or removes `taint` on Node `name`: a JSON patch of `spec.taints` that tests
   * the resourceVersion it was computed from ({@link taintPatch}), so no other taint is lost or
   * removed by a race; when the Node changed meanwhile (422, or 409) it is read again and the
   * patch made anew, up to {@link TAINT_ATTEMPTS} times. Returns whether it changed the Node
   * (false: it already was as asked). NotFoundError when there is no such Node. One `get nodes`
   * and at most one `patch nodes` call per attempt.
   */
  async setNodeTaint(name: string, taint: NodeTaint, present: boolean): Promise<boolean> {
    this.checkOpen();
    for (let attempt = 1; ; attempt++) {
      const obj = await this.client.get(KUBE_NODE_REF, "", name).catch((e: unknown) => {
        throw unavailable(e);
      });
      if (obj === undefined) throw new NotFoundError("nodes", `${name} (no such Kubernetes Node)`);
      const ops = taintPatch(obj, taint, present);
      if (ops === undefined) return false;
      try {
        await this.client.patchNode(name, ops);
        return true;
      } catch (e) {
        const raced = isKubeApiError(e, 422) || isKubeApiError(e, 409);
        if (raced && attempt < TAINT_ATTEMPTS) continue;
        if (isKubeApiError(e, 404)) throw new NotFoundError("nodes", `${name} (no such Kubernetes Node)`);
        throw unavailable(e);
      }
    }
  }

  /**
   * What Kubernetes assigned every Node (`spec.podCIDRs`, `status.addresses`), the authority agents
   * vet peers' claims against (src/agent/claims.ts), kept current by a Node informer, closed with
   * the store. `onChange`
   * runs when what Kubernetes assigned some node changed (not on every Node write: kubelet
   * heartbeats and record writes move Nodes all the time).
   */
  async watchNodeAuthorities(onChange: () => void): Promise<AuthoritySource> {
    this.checkOpen();
    const current = new Map<string, { authority: NodeAuthority; json: string }>();
    const set = (o: KubeObject): void => {
      const name = o.metadata?.name ?? "";
      const authority = authorityOf(o);
      const json = JSON.stringify(authority);
      if (current.get(name)?.json === json) return;
      current.set(name, { authority, json });
      onChange();
    };
    const informer = new Informer(
      this.options.kubeConfig,
      apiPath(KUBE_NODE_REF, ""),
      () => this.client.list(KUBE_NODE_REF, ""),
      {
        added: set,
        modified: set,
        deleted: (o) => {
          if (current.delete(o.metadata?.name ?? "")) onChange();
        },
      },
    );
    await informer.start().catch((e: unknown) => {
      informer.close();
      throw unavailable(e);
    });
    const source: AuthoritySource = {
      lookup: (name) => current.get(name)?.authority,
      close: () => {
        informer.close();
        this.watches.delete(closer);
      },
    };
    const closer = { close: async () => source.close() };
    this.watches.add(closer);
    return source;
  }

  async grantLease(ttlSeconds: number, options: LeaseOptions = {}): Promise<Lease> {
    this.checkOpen();
    const ttl = Math.max(1, Math.ceil(ttlSeconds));
    const name = `podcrypt-lease-${randomBytes(8).toString("hex")}`;
    const now = microTime(this.now());
    await this.client
      .create(LEASES, this.namespace, {
        metadata: { name, labels: { [MANAGED_LABEL]: "grant" } },
        spec: { holderIdentity: this.identity, leaseDurationSeconds: ttl, acquireTime: now, renewTime: now },
      })
      .catch((e: unknown) => {
        throw unavailable(e);
      });
    const lease = new KubeLease(this, name, ttl, LEASES);
    this.leases.add(lease);
    if (options.autoKeepAlive !== false) lease.startKeepAlive();
    return lease;
  }

  /** Renews lease `name` (KubeLease.keepAlive). */
  async renew(name: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.client.get(LEASES, this.namespace, name).catch((e: unknown) => {
        throw unavailable(e);
      });
      if (cur === undefined) throw new LeaseExpiredError(name);
      const spec = { ...(cur["spec"] as object), renewTime: microTime(this.now()) };
      try {
        await this.client.replace(LEASES, this.namespace, name, { metadata: cur.metadata ?? {}, spec });
        return;
      } catch (e) {
        if (isKubeApiError(e, 404)) throw new LeaseExpiredError(name, { cause: e });
        if (!isKubeApiError(e, 409) || attempt >= 3) throw unavailable(e);
      }
    }
  }

  /** The coordination Lease that keeps `node` live: `podcrypt-node-<node>`. */
  static nodeLeaseName(node: string): string {
    return `${NODE_LEASE_PREFIX}${node}`;
  }

  /**
   * A coordination Lease per node, as kubelet keeps in kube-node-lease: the agent renews its
   * `renewTime`. The agents' admission policy lets an agent write only its own node's Lease
   * (src/cli/manifests/admission.ts). Renewals are events of Lease watches only, never of the
   * agents' watches of nodes.
   */
  async holdLiveness(node: string, ttlSeconds: number): Promise<LivenessHold> {
    this.checkOpen();
    const ttl = Math.max(1, Math.ceil(ttlSeconds));
    const name = KubernetesDatastore.nodeLeaseName(node);
    const write = async (): Promise<void> => {
      const now = microTime(this.now());
      for (let attempt = 0; ; attempt++) {
        try {
          const cur = await this.client.get(LEASES, this.namespace, name);
          const spec = { holderIdentity: node, leaseDurationSeconds: ttl, renewTime: now };
          if (cur === undefined)
            await this.client.create(LEASES, this.namespace, {
              metadata: { name, labels: { [MANAGED_LABEL]: "node" } },
              spec: { ...spec, acquireTime: now },
            });
          else
            await this.client.replace(LEASES, this.namespace, name, {
              metadata: cur.metadata ?? {},
              spec: { ...(cur["spec"] as object), ...spec },
            });
          return;
        } catch (e) {
          // 409: written meanwhile (created by an earlier agent of this node, or a retry): again.
          if (!isKubeApiError(e, 409) || attempt >= 3) throw unavailable(e);
        }
      }
    };
    await write();
    let released = false;
    return {
      node,
      renew: async () => {
        if (!released) await write();
      },
      release: () => void (released = true),
    };
  }

  async followLiveness(onChange: () => void): Promise<LiveNodes> {
    this.checkOpen();
    /** Node → when its Lease was last seen renewed (local time, client-go's rule) and its duration. */
    const seen = new Map<string, { renewTime: string; observedAt: number; ttlMs: number }>();
    const isLive = (n: string): boolean => {
      const t = seen.get(n);
      return t !== undefined && Date.now() - t.observedAt <= t.ttlMs;
    };
    let live = new Set<string>();
    let closed = false;
    const recheck = (): void => {
      const next = new Set([...seen.keys()].filter(isLive));
      const changed = next.size !== live.size || [...next].some((n) => !live.has(n));
      live = next;
      if (changed && !closed) onChange();
    };
    const observe = (o: KubeObject): void => {
      const spec = (o["spec"] ?? {}) as {
        holderIdentity?: string;
        leaseDurationSeconds?: number;
        renewTime?: string;
      };
      const node = spec.holderIdentity ?? "";
      const prev = seen.get(node);
      if (prev?.renewTime === spec.renewTime) return;
      seen.set(node, {
        renewTime: spec.renewTime ?? "",
        observedAt: Date.now(),
        ttlMs: (spec.leaseDurationSeconds ?? 1) * 1000,
      });
      recheck();
    };
    const selector = `${MANAGED_LABEL}=node`;
    const informer = new Informer(
      this.options.kubeConfig,
      apiPath(LEASES, this.namespace),
      () => this.client.list(LEASES, this.namespace, selector),
      {
        added: observe,
        modified: observe,
        deleted: (o) => {
          seen.delete(((o["spec"] ?? {}) as { holderIdentity?: string }).holderIdentity ?? "");
          recheck();
        },
      },
      { labelSelector: selector },
    );
    await informer.start();
    // A node stops being live when its Lease is not renewed in time: nothing is written then.
    const timer = setInterval(recheck, 1000);
    timer.unref();
    const handle = {
      close: async () => {
        closed = true;
        clearInterval(timer);
        this.watches.delete(handle);
        informer.close();
      },
    };
    this.watches.add(handle);
    return { has: isLive, close: handle.close };
  }

  async heartbeats(): Promise<Map<string, string>> {
    this.checkOpen();
    const { items } = await this.client
      .list(LEASES, this.namespace, `${MANAGED_LABEL}=node`)
      .catch((e: unknown) => {
        throw unavailable(e);
      });
    const out = new Map<string, string>();
    for (const o of items) {
      const spec = (o["spec"] ?? {}) as { holderIdentity?: string; renewTime?: string };
      if (spec.holderIdentity !== undefined && spec.renewTime !== undefined)
        out.set(spec.holderIdentity, new Date(spec.renewTime).toISOString());
    }
    return out;
  }

  /** Revokes lease `name`: deletes it and what is attached. */
  async revoke(name: string): Promise<void> {
    await this.client.delete(LEASES, this.namespace, name).catch((e: unknown) => {
      if (!isKubeApiError(e, 404)) throw unavailable(e);
    });
    this.tracked.delete(name);
    await this.sweepAttached(name);
  }

  private leaderRecord(name: string): string {
    return `podcrypt-leader-${name}`;
  }

  async campaign(name: string, identity: string, options: CampaignOptions): Promise<LeaderElection> {
    this.checkOpen();
    const port: ElectionPort = {
      grantLease: (ttl) => this.grantLease(ttl),
      tryAcquire: async (n, id, leaseId) => {
        try {
          const now = microTime(this.now());
          await this.client.create(LEASES, this.namespace, {
            metadata: {
              name: this.leaderRecord(n),
              labels: { [MANAGED_LABEL]: "leader", [LEASE_LABEL]: leaseId },
            },
            spec: {
              holderIdentity: id,
              leaseDurationSeconds: options.ttlSeconds,
              acquireTime: now,
              renewTime: now,
            },
          });
          return true;
        } catch (e) {
          if (isKubeApiError(e, 409)) return false;
          throw unavailable(e);
        }
      },
      release: async (n, leaseId) => {
        const cur = await this.client.get(LEASES, this.namespace, this.leaderRecord(n));
        if (cur?.metadata?.labels?.[LEASE_LABEL] !== leaseId) return;
        await this.client
          .delete(LEASES, this.namespace, this.leaderRecord(n), cur.metadata.resourceVersion)
          .catch((e: unknown) => {
            if (!isKubeApiError(e, 404) && !isKubeApiError(e, 409)) throw e;
          });
      },
      waitForChange: (n, maxWaitMs, signal) => this.waitForLease(this.leaderRecord(n), maxWaitMs, signal),
    };
    return this.campaigns.start(port, name, identity, options.ttlSeconds);
  }

  async leader(name: string): Promise<string | undefined> {
    this.checkOpen();
    const rec = await this.client.get(LEASES, this.namespace, this.leaderRecord(name)).catch((e: unknown) => {
      throw unavailable(e);
    });
    return (rec?.["spec"] as { holderIdentity?: string } | undefined)?.holderIdentity;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.checkTimer !== undefined) clearInterval(this.checkTimer);
    this.informer?.close();
    for (const l of this.leases) l.release();
    await this.campaigns.stopAll();
    await Promise.allSettled([...this.watches].map((w) => w.close()));
  }
}
