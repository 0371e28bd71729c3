import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Endpoints,
  type V1Lease,
  type V1Node,
  type V1Service,
} from "@kubernetes/client-node";
import { PodcryptError } from "../../errors/index.js";
import type { JsonPatchOp, KubeObject, ResourceRef } from "./mapping.js";

/** An API request failed with a Kubernetes Status (or could not be made: `code` 0). */
export class KubeApiError extends PodcryptError {
  override readonly name = "KubeApiError";
  /** HTTP status, 0 when no response arrived. */
  readonly status: number;
  /** The Status `reason` (`NotFound`, `AlreadyExists`, `Conflict`, ...), "" if none. */
  readonly reason: string;

  constructor(status: number, reason: string, message: string, cause: unknown) {
    super("EKUBEAPI", message, { context: { status, reason }, cause });
    this.status = status;
    this.reason = reason;
  }
}

/** Type guard for KubeApiError, optionally with the given HTTP status. */
export function isKubeApiError(e: unknown, status?: number): e is KubeApiError {
  return e instanceof KubeApiError && (status === undefined || e.status === status);
}

function toKubeError(e: unknown): KubeApiError {
  if (e instanceof KubeApiError) return e;
  if (e instanceof ApiException) {
    const ex = e as ApiException<unknown>;
    let body: unknown = ex.body;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body) as unknown;
      } catch {
        /* not a Status */
      }
    }
    const st = (typeof body === "object" && body !== null ? body : {}) as {
      reason?: string;
      message?: string;
    };
    return new KubeApiError(ex.code, st.reason ?? "", st.message ?? `HTTP ${ex.code}`, e);
  }
  return new KubeApiError(0, "", (e as Error).message ?? String(e), e);
}

/** Plain JSON of an API result (typed models hold Date objects). */
function plain(o: unknown): KubeObject {
  return JSON.parse(JSON.stringify(o)) as KubeObject;
}

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const jsonPatch = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);

/** `body` with the apiVersion and kind of `ref`, as a create or replace sends it. */
function withTypeMeta(ref: ResourceRef, body: KubeObject): KubeObject {
  return {
    apiVersion: ref.group === "" ? ref.version : `${ref.group}/${ref.version}`,
    kind: ref.kind,
    ...body,
  };
}

/**
 * The calls the Kubernetes datastore makes, through CoreV1Api, CustomObjectsApi and
 * CoordinationV1Api, on plain JSON objects. Errors are KubeApiError. Every call it can make is in
 * api-calls.ts.
 */
export class KubeClient {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly coord: CoordinationV1Api;

  constructor(readonly config: KubeConfig) {
    this.core = config.makeApiClient(CoreV1Api);
    this.custom = config.makeApiClient(CustomObjectsApi);
    this.coord = config.makeApiClient(CoordinationV1Api);
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw toKubeError(e);
    }
  }

  /** GET; `undefined` on 404. */
  async get(ref: ResourceRef, namespace: string, name: string): Promise<KubeObject | undefined> {
    try {
      return plain(
        await this.run((): Promise<unknown> => {
          switch (ref.plural) {
            case "nodes":
              return this.core.readNode({ name });
            case "services":
              return this.core.readNamespacedService({ name, namespace });
            case "endpoints":
              return this.core.readNamespacedEndpoints({ name, namespace });
            case "leases":
              return this.coord.readNamespacedLease({ name, namespace });
            default:
              return ref.namespaced
                ? this.custom.getNamespacedCustomObject({ ...this.cr(ref), namespace, name })
                : this.custom.getClusterCustomObject({ ...this.cr(ref), name });
          }
        }),
      );
    } catch (e) {
      if (isKubeApiError(e, 404)) return undefined;
      throw e;
    }
  }

  private cr(ref: ResourceRef): { group: string; version: string; plural: string } {
    return { group: ref.group, version: ref.version, plural: ref.plural };
  }

  /** LIST (namespace "" = all namespaces), with the list's resourceVersion. */
  async list(
    ref: ResourceRef,
    namespace: string,
    labelSelector?: string,
  ): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const opts = labelSelector === undefined ? {} : { labelSelector };
    const all = namespace === "" || !ref.namespaced;
    const res = await this.run((): Promise<unknown> => {
      switch (ref.plural) {
        case "nodes":
          return this.core.listNode(opts);
        case "services":
          return all
            ? this.core.listServiceForAllNamespaces(opts)
            : this.core.listNamespacedService({ namespace, ...opts });
        case "endpoints":
          return all
            ? this.core.listEndpointsForAllNamespaces(opts)
            : this.core.listNamespacedEndpoints({ namespace, ...opts });
        case "leases":
          return all
            ? this.coord.listLeaseForAllNamespaces(opts)
            : this.coord.listNamespacedLease({ namespace, ...opts });
        default:
          return all
            ? this.custom.listClusterCustomObject({ ...this.cr(ref), ...opts })
            : this.custom.listNamespacedCustomObject({ ...this.cr(ref), namespace, ...opts });
      }
    });
    const list = plain(res) as { items?: KubeObject[]; metadata?: { resourceVersion?: string } };
    return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? "" };
  }

  /** POST. */
  async create(ref: ResourceRef, namespace: string, body: KubeObject): Promise<KubeObject> {
    const full = withTypeMeta(ref, body);
    return plain(
      await this.run((): Promise<unknown> => {
        switch (ref.plural) {
          case "nodes":
            return this.core.createNode({ body: full as V1Node });
          case "services":
            return this.core.createNamespacedService({ namespace, body: full as V1Service });
          case "endpoints":
            return this.core.createNamespacedEndpoints({ namespace, body: full as V1Endpoints });
          case "leases":
            return this.coord.createNamespacedLease({ namespace, body: full as V1Lease });
          default:
            return ref.namespaced
              ? this.custom.createNamespacedCustomObject({ ...this.cr(ref), namespace, body: full })
              : this.custom.createClusterCustomObject({ ...this.cr(ref), body: full });
        }
      }),
    );
  }

  /** PUT; `body.metadata.resourceVersion` makes it conditional (409 on mismatch). */
  async replace(ref: ResourceRef, namespace: string, name: string, body: KubeObject): Promise<KubeObject> {
    const full = withTypeMeta(ref, body);
    return plain(
      await this.run((): Promise<unknown> => {
        switch (ref.plural) {
          case "services":
            return this.core.replaceNamespacedService({ name, namespace, body: full as V1Service });
          case "endpoints":
            return this.core.replaceNamespacedEndpoints({ name, namespace, body: full as V1Endpoints });
          case "leases":
            return this.coord.replaceNamespacedLease({ name, namespace, body: full as V1Lease });
          case "nodes":
            throw new KubeApiError(0, "", "nodes are written with merge patches only", undefined);
          default:
            return ref.namespaced
              ? this.custom.replaceNamespacedCustomObject({ ...this.cr(ref), namespace, name, body: full })
              : this.custom.replaceClusterCustomObject({ ...this.cr(ref), name, body: full });
        }
      }),
    );
  }

  /**
   * JSON merge patch of a custom resource's status subresource (`metadata.resourceVersion` in the
   * patch makes it conditional: 409 on mismatch).
   */
  async patchStatus(ref: ResourceRef, namespace: string, name: string, patch: object): Promise<KubeObject> {
    return plain(
      await this.run(() =>
        ref.namespaced
          ? this.custom.patchNamespacedCustomObjectStatus(
              { ...this.cr(ref), namespace, name, body: patch },
              mergePatch,
            )
          : this.custom.patchClusterCustomObjectStatus({ ...this.cr(ref), name, body: patch }, mergePatch),
      ),
    );
  }

  /**
   * RFC 6902 JSON patch of a Kubernetes Node (its main resource, never its status). The only write
   * podcrypt makes to a Node: its workload-gating taint (KubernetesDatastore.setNodeTaint). A
   * failed `test` operation is answered 422.
   */
  async patchNode(name: string, ops: readonly JsonPatchOp[]): Promise<KubeObject> {
    return plain(await this.run(() => this.core.patchNode({ name, body: ops }, jsonPatch)));
  }

  /** DELETE, conditional on `resourceVersion` when given. */
  async delete(ref: ResourceRef, namespace: string, name: string, resourceVersion?: string): Promise<void> {
    const body = resourceVersion === undefined ? {} : { body: { preconditions: { resourceVersion } } };
    await this.run((): Promise<unknown> => {
      switch (ref.plural) {
        case "services":
          return this.core.deleteNamespacedService({ name, namespace, ...body });
        case "endpoints":
          return this.core.deleteNamespacedEndpoints({ name, namespace, ...body });
        case "leases":
          return this.coord.deleteNamespacedLease({ name, namespace, ...body });
        case "nodes":
          throw new KubeApiError(0, "", "podcrypt never deletes Kubernetes nodes", undefined);
        default:
          return ref.namespaced
            ? this.custom.deleteNamespacedCustomObject({ ...this.cr(ref), namespace, name, ...body })
            : this.custom.deleteClusterCustomObject({ ...this.cr(ref), name, ...body });
      }
    });
  }
}
