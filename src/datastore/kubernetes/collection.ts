/** One kind's objects in the kubernetes datastore: get, list, write, watch over the API. */
import type { KubeConfig } from "@kubernetes/client-node";
import { type ResourceByKind, type ResourceInputByKind, type ResourceKind } from "../../model/index.js";
import { ValidationError } from "../../errors/index.js";
import {
  changeEvent,
  decodeObject,
  encodeObject,
  listResult,
  storedOrThrow,
  type Decoded,
} from "../codec.js";
import {
  AlreadyExistsError,
  ConflictError,
  NotFoundError,
  RevisionGoneError,
  UnavailableError,
} from "../errors.js";
import { SerialQueue } from "../serial.js";
import type {
  Collection,
  DeleteOptions,
  ListResult,
  Stored,
  UpdateOptions,
  Watch,
  WatchEvent,
  WatchListener,
  WriteOptions,
} from "../types.js";
import { KubeClient, isKubeApiError } from "./client.js";
import {
  apiPath,
  fromKube,
  LEASE_LABEL,
  locate,
  refsOf,
  toKube,
  type KubeObject,
  type ResourceRef,
} from "./mapping.js";
import { ResumableWatch } from "./watch.js";

/** What a collection needs of its datastore. */
export interface CollectionHost {
  readonly client: KubeClient;
  readonly options: { readonly kubeConfig: KubeConfig };
  readonly watches: Set<{ close(): Promise<void> }>;
  checkOpen(): void;
  leaseLabel(lease: string): Promise<string>;
}

/** Whether resourceVersion `a` is older than `b` (both numeric in practice; else neither is). */
function olderRevision(a: string, b: string): boolean {
  return /^\d+$/.test(a) && /^\d+$/.test(b) && BigInt(a) < BigInt(b);
}

/**
 * A policy's validation error in the terms of its Kubernetes object: `policies.0.ports` of an
 * IPsecPolicy is `spec.policies[0].serviceports`, of an EncryptionPolicy `spec.policies[0].ports`.
 */
function kubeFieldError(ref: ResourceRef, e: ValidationError): ValidationError {
  if (ref.group !== "podcrypt.io" && ref.group !== "starlingx.io") return e;
  const ipsec = ref.group === "starlingx.io";
  const rename = (field: string): string => {
    const m = /^policies(?:\.(\d+)(?:\.(\w+))?)?(.*)$/.exec(field);
    if (m === null) return field === "name" ? "metadata.name" : field;
    const sub =
      m[2] === undefined
        ? ""
        : `.${ipsec ? ({ service: "servicename", namespace: "servicens", ports: "serviceports" }[m[2]] ?? m[2]) : m[2]}`;
    return `spec.policies${m[1] === undefined ? "" : `[${m[1]}]`}${sub}${m[3] ?? ""}`;
  };
  const prefix = `${e.field}: `;
  const detail = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
  const issues = (e.context["issues"] as { field: string; message: string }[] | undefined) ?? [];
  const text = issues.length > 1 ? issues.map((i) => `${rename(i.field)}: ${i.message}`).join("; ") : detail;
  return new ValidationError(rename(e.field), text, { cause: e, context: { kind: ref.kind } });
}

/** An error of the API client as the datastore reports it: unreachable is UnavailableError. */
export function unavailable(e: unknown): unknown {
  return isKubeApiError(e, 0)
    ? new UnavailableError(`Kubernetes API unreachable: ${(e as Error).message}`, { cause: e })
    : e;
}

/** One kind's objects in Kubernetes (encryptionpolicies: two resources, see mapping.ts). */
export class KubeCollection<K extends ResourceKind> implements Collection<K> {
  private readonly refs: readonly ResourceRef[];

  constructor(
    private readonly ds: CollectionHost,
    readonly kind: K,
  ) {
    this.refs = refsOf(kind);
  }

  /** The object's record, or an InvalidObject. */
  decodeAny(obj: KubeObject, ref: ResourceRef): Decoded<K> {
    const rec = fromKube(this.kind, obj, ref);
    const meta = obj.metadata ?? {};
    const generation = typeof meta["generation"] === "number" ? meta["generation"] : undefined;
    const d = decodeObject(
      this.kind,
      rec.key,
      rec.raw,
      meta.resourceVersion ?? "",
      meta.labels?.[LEASE_LABEL],
      this.kind === "encryptionpolicies" ? generation : undefined,
    );
    if (d.ok) return d;
    return { ok: false, invalid: { ...d.invalid, error: kubeFieldError(ref, d.invalid.error) } };
  }

  private decode(obj: KubeObject, ref: ResourceRef): Stored<ResourceByKind[K]> {
    return storedOrThrow(this.decodeAny(obj, ref));
  }

  private async fetch(key: string): Promise<KubeObject | undefined> {
    const { ref, namespace, name } = locate(this.kind, key);
    try {
      return await this.ds.client.get(ref, namespace, name);
    } catch (e) {
      throw unavailable(e);
    }
  }

  async get(key: string): Promise<Stored<ResourceByKind[K]> | undefined> {
    this.ds.checkOpen();
    const obj = await this.fetch(key);
    return obj === undefined ? undefined : this.decode(obj, locate(this.kind, key).ref);
  }

  /**
   * Lists every resource of the kind. With two (policies), the revision is the first list's: a
   * watch from it may deliver again a change of the second that its list already showed, never
   * miss one (resourceVersions are cluster-wide).
   */
  async list(): Promise<ListResult<ResourceByKind[K]>> {
    this.ds.checkOpen();
    const decoded: Decoded<K>[] = [];
    let revision: string | undefined;
    for (const ref of this.refs) {
      const res = await this.ds.client.list(ref, "").catch((e: unknown) => {
        throw unavailable(e);
      });
      revision ??= res.resourceVersion;
      for (const o of res.items) decoded.push(this.decodeAny(o, ref));
    }
    return listResult(decoded, revision ?? "");
  }

  private async leaseValue(
    lease: string | null | undefined,
    current: string | undefined,
  ): Promise<string | null> {
    if (lease === undefined) return current ?? null;
    if (lease === null) return null;
    return this.ds.leaseLabel(lease);
  }

  async create(
    value: ResourceInputByKind[K],
    options: WriteOptions = {},
  ): Promise<Stored<ResourceByKind[K]>> {
    this.ds.checkOpen();
    const { key, value: v } = encodeObject(this.kind, value);
    const lease = await this.leaseValue(options.lease, undefined);
    const parts = toKube(this.kind, v);
    if (lease !== null) parts.labels[LEASE_LABEL] = lease;
    const { ref, namespace, name } = locate(this.kind, key);
    try {
      return this.decode(
        await this.ds.client.create(ref, namespace, {
          metadata: { name, labels: parts.labels },
          ...parts.body,
        }),
        ref,
      );
    } catch (e) {
      if (isKubeApiError(e, 409)) throw new AlreadyExistsError(this.kind, key, { cause: e });
      if (isKubeApiError(e, 404)) throw new NotFoundError("namespaces", namespace, { cause: e });
      throw unavailable(e);
    }
  }

  async update(
    value: ResourceInputByKind[K],
    options: UpdateOptions = {},
  ): Promise<Stored<ResourceByKind[K]>> {
    this.ds.checkOpen();
    const { key, value: v } = encodeObject(this.kind, value);
    const parts = toKube(this.kind, v);
    const { ref, namespace, name } = locate(this.kind, key);
    for (;;) {
      const cur = await this.fetch(key);
      if (cur === undefined) throw new NotFoundError(this.kind, key);
      const rv = cur.metadata?.resourceVersion ?? "";
      if (options.revision !== undefined && options.revision !== rv)
        throw new ConflictError(this.kind, key, options.revision, rv);
      const lease = await this.leaseValue(options.lease, cur.metadata?.labels?.[LEASE_LABEL]);
      try {
        const labels = { ...(cur.metadata?.labels ?? {}), ...parts.labels };
        if (lease === null) Reflect.deleteProperty(labels, LEASE_LABEL);
        else labels[LEASE_LABEL] = lease;
        const body: KubeObject = {
          ...cur,
          ...parts.body,
          metadata: { ...cur.metadata, labels, resourceVersion: rv },
        };
        // A verify run changes only in its status (the nodes' reports), through the subresource.
        if (this.kind === "verifyruns")
          return this.decode(
            await this.ds.client.patchStatus(ref, namespace, name, {
              metadata: { resourceVersion: rv },
              status: parts.body["status"] ?? null,
            }),
            ref,
          );
        // A node record's status is an ordinary field: one the value no longer has goes.
        if (this.kind === "nodes" && parts.body["status"] === undefined)
          Reflect.deleteProperty(body, "status");
        return this.decode(await this.ds.client.replace(ref, namespace, name, body), ref);
      } catch (e) {
        if (isKubeApiError(e, 404)) throw new NotFoundError(this.kind, key, { cause: e });
        if (!isKubeApiError(e, 409)) throw unavailable(e);
        if (options.revision !== undefined)
          throw new ConflictError(this.kind, key, options.revision, undefined, { cause: e });
      }
    }
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<void> {
    this.ds.checkOpen();
    const { ref, namespace, name } = locate(this.kind, key);
    try {
      await this.ds.client.delete(ref, namespace, name, options.revision);
    } catch (e) {
      if (isKubeApiError(e, 404)) throw new NotFoundError(this.kind, key, { cause: e });
      if (isKubeApiError(e, 409))
        throw new ConflictError(this.kind, key, options.revision ?? "", undefined, { cause: e });
      throw unavailable(e);
    }
  }

  async watch(fromRevision: string, listener: WatchListener<ResourceByKind[K]>): Promise<Watch> {
    this.ds.checkOpen();
    const queue = new SerialQueue((e) => listener.error?.(e as Error));
    // What this watch last saw per key: the record's JSON (with its lease), or null when absent.
    const known = new Map<string, string | null>();
    const emit = (e: WatchEvent<ResourceByKind[K]>): void => queue.push(() => listener.event(e));
    const onEvent = (ref: ResourceRef, type: "ADDED" | "MODIFIED" | "DELETED", obj: KubeObject): void => {
      const rec = fromKube(this.kind, obj, ref);
      const revision = obj.metadata?.resourceVersion ?? "";
      const prev = known.get(rec.key);
      if (type === "DELETED") {
        emit({ type: "DELETED", key: rec.key, revision });
        known.set(rec.key, null);
        return;
      }
      const json = JSON.stringify([rec.raw, obj.metadata?.labels?.[LEASE_LABEL] ?? null]);
      if (prev === json) return;
      known.set(rec.key, json);
      const fresh = prev === null || (prev === undefined && type === "ADDED");
      emit(changeEvent(this.decodeAny(obj, ref), rec.key, revision, fresh));
    };
    const streams: ResumableWatch[] = [];
    let goneOnce = false;
    for (const ref of this.refs) {
      const rw: ResumableWatch = new ResumableWatch(
        this.ds.options.kubeConfig,
        apiPath(ref, ""),
        fromRevision,
        {
          event: (type, obj) => onEvent(ref, type, obj),
          gone: (cause) => {
            // One stream gone: the whole watch is; the consumer relists every resource.
            for (const s of streams) s.close();
            if (goneOnce) return;
            goneOnce = true;
            queue.push(() => listener.gone(new RevisionGoneError(this.kind, rw.revision, { cause })));
          },
          error: (e) => listener.error?.(unavailable(e) as Error),
        },
      );
      streams.push(rw);
    }
    try {
      for (const rw of streams) await rw.start();
    } catch (e) {
      for (const rw of streams) rw.close();
      if (isKubeApiError(e, 410) || (e as { statusCode?: number }).statusCode === 410)
        throw new RevisionGoneError(this.kind, fromRevision, { cause: e });
      throw new UnavailableError(`${this.kind}: watch failed: ${(e as Error).message}`, { cause: e });
    }
    const handle = {
      /** The oldest position of its streams: resuming from it misses nothing. */
      get revision(): string {
        return streams.map((s) => s.revision).reduce((a, b) => (olderRevision(b, a) ? b : a));
      },
      close: async (): Promise<void> => {
        for (const rw of streams) rw.close();
        this.ds.watches.delete(handle);
        await queue.close();
      },
    };
    this.ds.watches.add(handle);
    return handle;
  }
}
