import { randomUUID, randomInt } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { mergePatch, jsonPatch, type Json } from "./patch.js";
import { apiVersionOf, BUILTIN_TYPES, typesOfCrd, type CrdSpec, type ResourceType } from "./resources.js";
import { matchFields, matchLabels, type FieldSelector, type LabelSelector } from "./selectors.js";
import {
  alreadyExists,
  badRequest,
  conflict,
  expired,
  invalid,
  notFound,
  unsupportedMediaType,
  type StatusCause,
} from "./status.js";

/** `metav1.ObjectMeta`, the parts this server reads or sets. */
export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  [k: string]: unknown;
}

/** Any Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [k: string]: unknown;
}

/** The event types of a watch stream. */
export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

/** One line of a watch stream. */
export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject | Record<string, unknown>;
}

interface HistoryEntry {
  type: "ADDED" | "MODIFIED" | "DELETED";
  rv: number;
  typeKey: string;
  object: KubeObject;
  previous?: KubeObject;
}

/** What a watch asked for. */
export interface WatchSpec {
  type: ResourceType;
  /** "" for all namespaces. */
  namespace: string;
  labels: LabelSelector;
  fields: FieldSelector;
  allowBookmarks: boolean;
  send(event: WatchEvent): void;
}

/** A live watch registered with the store. */
export interface WatchHandle {
  /** Stop delivering events. */
  stop(): void;
}

/** Options of the store. */
export interface StoreOptions {
  /** How many change events the watch history keeps; older ones are compacted. Default 1000. */
  historyLimit?: number;
  /** Clock for creationTimestamp/deletionTimestamp. Default `() => new Date()`. */
  now?: () => Date;
}

/** Options of a delete (`metav1.DeleteOptions`, the preconditions). */
export interface DeleteOptions {
  preconditions?: { resourceVersion?: string; uid?: string };
}

/** The patch flavours the server accepts, by Content-Type. */
export const PATCH_TYPES = {
  json: "application/json-patch+json",
  merge: "application/merge-patch+json",
  strategic: "application/strategic-merge-patch+json",
} as const;

const typeKey = (t: Pick<ResourceType, "group" | "resource">): string => `${t.group}/${t.resource}`;
const objKey = (ns: string, name: string): string => `${ns}/${name}`;
const clone = <T>(v: T): T => structuredClone(v);

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Seconds-precision RFC 3339, as `metav1.Time` serialises. */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function validateMeta(t: ResourceType, obj: KubeObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const name = obj.metadata.name ?? "";
  const rule =
    t.resource === "namespaces"
      ? { re: DNS1123_LABEL, max: 63, what: "RFC 1123 label" }
      : t.resource === "services" && t.group === ""
        ? { re: DNS1035_LABEL, max: 63, what: "RFC 1035 label" }
        : { re: DNS1123_SUBDOMAIN, max: 253, what: "RFC 1123 subdomain" };
  if (name === "")
    causes.push({
      reason: "FieldValueRequired",
      field: "metadata.name",
      message: "Required value: name or generateName is required",
    });
  else if (!rule.re.test(name) || name.length > rule.max) {
    causes.push({
      reason: "FieldValueInvalid",
      field: "metadata.name",
      message: `Invalid value: "${name}": a lowercase ${rule.what} must match ${rule.re.source}`,
    });
  }
  for (const [k, v] of Object.entries(obj.metadata.labels ?? {})) {
    if (!QUALIFIED_NAME.test(k))
      causes.push({
        reason: "FieldValueInvalid",
        field: "metadata.labels",
        message: `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.'`,
      });
    if (typeof v !== "string" || !LABEL_VALUE.test(v) || v.length > 63) {
      causes.push({
        reason: "FieldValueInvalid",
        field: "metadata.labels",
        message: `Invalid value: "${String(v)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', at most 63 characters`,
      });
    }
  }
  let annotationBytes = 0;
  for (const [k, v] of Object.entries(obj.metadata.annotations ?? {})) {
    if (!QUALIFIED_NAME.test(k))
      causes.push({
        reason: "FieldValueInvalid",
        field: "metadata.annotations",
        message: `Invalid value: "${k}": name part must consist of alphanumeric characters, '-', '_' or '.'`,
      });
    if (typeof v !== "string")
      causes.push({
        reason: "FieldValueInvalid",
        field: `metadata.annotations.${k}`,
        message: "annotation values must be strings",
      });
    annotationBytes += k.length + String(v).length;
  }
  if (annotationBytes > 256 * 1024)
    causes.push({
      reason: "FieldValueTooLong",
      field: "metadata.annotations",
      message: "Too long: must have at most 262144 bytes",
    });
  return causes;
}

/** Everything but metadata (and status, when it is a subresource): what `generation` counts. */
function specPart(t: ResourceType, obj: KubeObject): Record<string, unknown> {
  const rest: Record<string, unknown> = { ...obj };
  delete rest["metadata"];
  delete rest["kind"];
  delete rest["apiVersion"];
  if (t.statusSubresource) delete rest["status"];
  return rest;
}

/**
 * The API server's storage: objects by resource type, one global resourceVersion counter, a
 * bounded history of change events for watches (older requests get 410 Gone), and the live
 * watches. CustomResourceDefinitions register their types when created and remove them (and all
 * their objects) when deleted. Everything runs synchronously, so a watch registered after a
 * replay never misses or repeats an event.
 */
export class ObjectStore {
  private rv = 1;
  private compactedRv = 1;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private history: HistoryEntry[] = [];
  private readonly watches = new Set<WatchSpec>();
  private readonly types = new Map<string, ResourceType>();
  private readonly historyLimit: number;
  private readonly now: () => Date;

  constructor(options: StoreOptions = {}) {
    this.historyLimit = options.historyLimit ?? 1000;
    this.now = options.now ?? (() => new Date());
    for (const t of BUILTIN_TYPES) this.types.set(`${t.group}/${t.version}/${t.resource}`, t);
    for (const ns of ["default", "kube-system", "kube-public", "kube-node-lease"]) {
      this.create(this.lookup("", "v1", "namespaces")!, "", { metadata: { name: ns } });
    }
  }

  /** The newest resourceVersion (what a list returns). */
  revision(): number {
    return this.rv;
  }

  /** The oldest resourceVersion a watch may still start from. */
  oldestWatchable(): number {
    return this.compactedRv;
  }

  /** Forget the watch history up to `upTo` (default: all of it), as etcd compaction does. */
  compact(upTo: number = this.rv): void {
    this.history = this.history.filter((e) => e.rv > upTo);
    this.compactedRv = Math.max(this.compactedRv, Math.min(upTo, this.rv));
  }

  /** The served type at (group, version, resource), if any. */
  lookup(group: string, version: string, resource: string): ResourceType | undefined {
    return this.types.get(`${group}/${version}/${resource}`);
  }

  /** Every served type. */
  servedTypes(): ResourceType[] {
    return [...this.types.values()];
  }

  private bucket(t: ResourceType): Map<string, KubeObject> {
    let b = this.objects.get(typeKey(t));
    if (b === undefined) {
      b = new Map();
      this.objects.set(typeKey(t), b);
    }
    return b;
  }

  /** The object as a client sees it: kind and apiVersion of the version it asked for. */
  private present(t: ResourceType, obj: KubeObject): KubeObject {
    const out = clone(obj);
    return { apiVersion: apiVersionOf(t), kind: t.kind, ...out, metadata: out.metadata };
  }

  private record(
    t: ResourceType,
    type: HistoryEntry["type"],
    object: KubeObject,
    previous?: KubeObject,
  ): void {
    const entry: HistoryEntry = { type, rv: this.rv, typeKey: typeKey(t), object: clone(object) };
    if (previous !== undefined) entry.previous = clone(previous);
    this.history.push(entry);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift()!;
      this.compactedRv = Math.max(this.compactedRv, dropped.rv);
    }
    for (const w of [...this.watches]) this.deliver(w, entry);
  }

  private matches(w: WatchSpec, obj: KubeObject): boolean {
    return (
      (w.namespace === "" || obj.metadata.namespace === w.namespace) &&
      matchLabels(w.labels, obj.metadata.labels) &&
      matchFields(w.fields, obj)
    );
  }

  private deliver(w: WatchSpec, e: HistoryEntry): void {
    if (e.typeKey !== typeKey(w.type)) return;
    const now = this.matches(w, e.object);
    const before = e.previous !== undefined && this.matches(w, e.previous);
    let type: WatchEventType | undefined;
    if (e.type === "MODIFIED") {
      // An object entering or leaving a selector's set is an ADDED or DELETED for that watch.
      type = now && before ? "MODIFIED" : now ? "ADDED" : before ? "DELETED" : undefined;
    } else if (now) {
      type = e.type;
    }
    if (type !== undefined) w.send({ type, object: this.present(w.type, e.object) });
  }

  /** Send a BOOKMARK carrying the current resourceVersion to every watch that allows them. */
  bookmark(): void {
    for (const w of this.watches) {
      if (!w.allowBookmarks) continue;
      w.send({
        type: "BOOKMARK",
        object: {
          kind: w.type.kind,
          apiVersion: apiVersionOf(w.type),
          metadata: { resourceVersion: String(this.rv) },
        },
      });
    }
  }

  /**
   * Start a watch. `from` undefined or 0: ADDED for every current object, then changes. Otherwise
   * every change after `from` still in history, then live ones; 410 Expired if history no longer
   * reaches back to `from`.
   */
  watch(spec: WatchSpec, from: number | undefined): WatchHandle {
    if (from === undefined || from === 0) {
      for (const obj of this.bucket(spec.type).values()) {
        if (this.matches(spec, obj)) spec.send({ type: "ADDED", object: this.present(spec.type, obj) });
      }
    } else {
      if (from < this.compactedRv) throw expired(from, this.compactedRv + 1);
      for (const e of this.history) if (e.rv > from) this.deliver(spec, e);
    }
    this.watches.add(spec);
    return { stop: () => this.watches.delete(spec) };
  }

  /** How many watches are live. */
  watchCount(): number {
    return this.watches.size;
  }

  /** GET one object. */
  get(t: ResourceType, ns: string, name: string): KubeObject {
    const obj = this.bucket(t).get(objKey(ns, name));
    if (obj === undefined) throw notFound({ ...t, name });
    return this.present(t, obj);
  }

  /** LIST, filtered; items carry kind/apiVersion only for custom resources, as the API server does. */
  list(
    t: ResourceType,
    ns: string,
    labels: LabelSelector,
    fields: FieldSelector,
  ): { items: KubeObject[]; resourceVersion: string } {
    const items: KubeObject[] = [];
    const keys = [...this.bucket(t).keys()].sort();
    for (const k of keys) {
      const obj = this.bucket(t).get(k)!;
      if (
        (ns !== "" && obj.metadata.namespace !== ns) ||
        !matchLabels(labels, obj.metadata.labels) ||
        !matchFields(fields, obj)
      )
        continue;
      const out = this.present(t, obj);
      if (!t.custom) {
        delete out.kind;
        delete out.apiVersion;
      }
      items.push(out);
    }
    return { items, resourceVersion: String(this.rv) };
  }

  private checkEnvelope(t: ResourceType, ns: string, body: KubeObject): void {
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw badRequest("the request body must be a JSON object");
    if (body.metadata !== undefined && (typeof body.metadata !== "object" || body.metadata === null))
      throw badRequest("metadata must be an object");
    if (body.apiVersion !== undefined && body.apiVersion !== apiVersionOf(t)) {
      throw badRequest(
        `the API version in the data (${body.apiVersion}) does not match the expected API version (${apiVersionOf(t)})`,
      );
    }
    if (body.kind !== undefined && body.kind !== t.kind) {
      throw badRequest(`the kind in the data (${body.kind}) does not match the expected kind (${t.kind})`);
    }
    const bodyNs = body.metadata?.namespace;
    if (t.namespaced && bodyNs !== undefined && bodyNs !== "" && bodyNs !== ns) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
  }

  /** POST: 409 AlreadyExists if the name is taken, 404 if the namespace does not exist. */
  create(t: ResourceType, ns: string, body: KubeObject): KubeObject {
    this.checkEnvelope(t, ns, body);
    const obj = clone(body);
    obj.metadata = { ...(obj.metadata ?? {}) };
    const meta = obj.metadata;
    if ((meta.name === undefined || meta.name === "") && meta.generateName !== undefined) {
      const alphabet = "bcdfghjklmnpqrstvwxz2456789";
      meta.name =
        meta.generateName + Array.from({ length: 5 }, () => alphabet[randomInt(alphabet.length)]).join("");
    }
    const name = meta.name ?? "";
    if (t.namespaced) {
      meta.namespace = ns;
      const nsType = this.lookup("", "v1", "namespaces")!;
      if (!this.bucket(nsType).has(objKey("", ns)))
        throw notFound({ group: "", resource: "namespaces", name: ns });
    } else {
      delete meta.namespace;
    }
    const causes = validateMeta(t, obj);
    if (causes.length > 0) throw invalid({ ...t, name }, causes);
    if (this.bucket(t).has(objKey(ns, name))) throw alreadyExists({ ...t, name });
    if (t.resetStatusOnCreate) delete obj["status"];
    if (t.group === "apiextensions.k8s.io") this.admitCrd(obj);
    this.rv++;
    meta.uid = randomUUID();
    meta.resourceVersion = String(this.rv);
    meta.creationTimestamp = rfc3339(this.now());
    meta.generation = 1;
    delete meta.deletionTimestamp;
    obj.apiVersion = apiVersionOf(t);
    obj.kind = t.kind;
    if (t.resource === "namespaces" && t.group === "") obj["status"] = { phase: "Active" };
    this.bucket(t).set(objKey(ns, name), obj);
    this.record(t, "ADDED", obj);
    return this.present(t, obj);
  }

  /**
   * PUT (or the result of a PATCH): 404 if absent; 409 Conflict when the body's resourceVersion is
   * set and is not the stored one (an empty one is an unconditional update). On the main resource
   * the stored status is kept; on `/status` only the status changes.
   */
  update(
    t: ResourceType,
    ns: string,
    name: string,
    body: KubeObject,
    subresource: "" | "status",
  ): KubeObject {
    this.checkEnvelope(t, ns, body);
    if (body.metadata?.name !== undefined && body.metadata.name !== name) {
      throw badRequest(
        `the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`,
      );
    }
    const key = objKey(ns, name);
    const old = this.bucket(t).get(key);
    if (old === undefined) throw notFound({ ...t, name });
    const wantRv = body.metadata?.resourceVersion;
    if (wantRv !== undefined && wantRv !== "" && wantRv !== old.metadata.resourceVersion)
      throw conflict({ ...t, name });
    if (
      body.metadata?.uid !== undefined &&
      body.metadata.uid !== "" &&
      body.metadata.uid !== old.metadata.uid
    ) {
      throw conflict(
        { ...t, name },
        `Precondition failed: UID in precondition: ${body.metadata.uid}, UID in object meta: ${old.metadata.uid ?? ""}`,
      );
    }
    let next: KubeObject;
    if (subresource === "status") {
      next = clone(old);
      if (body["status"] === undefined) delete next["status"];
      else next["status"] = clone(body["status"]);
    } else {
      next = clone(body);
      next.metadata = { ...(next.metadata ?? {}) };
      if (t.statusSubresource) {
        if (old["status"] === undefined) delete next["status"];
        else next["status"] = clone(old["status"]);
      }
      for (const k of ["uid", "creationTimestamp", "generation", "deletionTimestamp"] as const) {
        if (old.metadata[k] === undefined) Reflect.deleteProperty(next.metadata, k);
        else next.metadata[k] = old.metadata[k] as never;
      }
      if (t.namespaced) next.metadata.namespace = ns;
      next.metadata.name = name;
      if (next.metadata.deletionTimestamp !== undefined) {
        // Terminating objects take no new finalizers.
        const kept = new Set(old.metadata.finalizers ?? []);
        next.metadata.finalizers = (next.metadata.finalizers ?? []).filter((f) => kept.has(f));
      }
    }
    next.apiVersion = apiVersionOf(t);
    next.kind = t.kind;
    const causes = validateMeta(t, next);
    if (causes.length > 0) throw invalid({ ...t, name }, causes);
    if (t.group === "apiextensions.k8s.io" && subresource === "") this.admitCrd(next);
    // A write that changes nothing stores nothing and keeps the resourceVersion.
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    if (isDeepStrictEqual(next, old)) return this.present(t, old);
    if (!isDeepStrictEqual(specPart(t, next), specPart(t, old)))
      next.metadata.generation = (old.metadata.generation ?? 0) + 1;
    this.rv++;
    next.metadata.resourceVersion = String(this.rv);
    if (next.metadata.deletionTimestamp !== undefined && (next.metadata.finalizers ?? []).length === 0) {
      this.bucket(t).delete(key);
      this.record(t, "DELETED", next, old);
      this.afterDelete(t, next);
      return this.present(t, next);
    }
    this.bucket(t).set(key, next);
    this.record(t, "MODIFIED", next, old);
    return this.present(t, next);
  }

  /**
   * PATCH: JSON patch, merge patch, or strategic merge patch (applied as a merge patch; refused for
   * custom resources, 415, as the API server does). A patch that changes metadata.resourceVersion
   * is a precondition: 409 Conflict when it is not the stored one.
   */
  patch(
    t: ResourceType,
    ns: string,
    name: string,
    contentType: string,
    patchBody: unknown,
    subresource: "" | "status",
  ): KubeObject {
    return this.update(t, ns, name, this.patched(t, ns, name, contentType, patchBody), subresource);
  }

  /**
   * What {@link patch} would write (the stored object with the patch applied), without writing it:
   * what admission sees of a PATCH as its `object`. The same errors as {@link patch}.
   */
  patched(t: ResourceType, ns: string, name: string, contentType: string, patchBody: unknown): KubeObject {
    const current = this.bucket(t).get(objKey(ns, name));
    if (current === undefined) throw notFound({ ...t, name });
    const base = this.present(t, current) as unknown as Json;
    let result: Json;
    if (contentType === PATCH_TYPES.json) result = jsonPatch(base, patchBody);
    else if (contentType === PATCH_TYPES.merge || (contentType === PATCH_TYPES.strategic && !t.custom)) {
      if (typeof patchBody !== "object" || patchBody === null || Array.isArray(patchBody))
        throw badRequest("a merge patch must be a JSON object");
      result = mergePatch(base, patchBody as Json);
    } else throw unsupportedMediaType(contentType);
    if (typeof result !== "object" || result === null || Array.isArray(result))
      throw badRequest("the patched object is not a JSON object");
    const obj = result as unknown as KubeObject;
    if (obj.metadata?.resourceVersion !== current.metadata.resourceVersion) throw conflict({ ...t, name });
    return obj;
  }

  /**
   * DELETE: 404 if absent; 409 if a precondition fails. An object with finalizers is only marked
   * (deletionTimestamp, MODIFIED) and goes when its last finalizer is removed.
   */
  delete(t: ResourceType, ns: string, name: string, options: DeleteOptions = {}): KubeObject {
    const key = objKey(ns, name);
    const old = this.bucket(t).get(key);
    if (old === undefined) throw notFound({ ...t, name });
    const pre = options.preconditions ?? {};
    if (pre.resourceVersion !== undefined && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(
        { ...t, name },
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion ?? ""}`,
      );
    }
    if (pre.uid !== undefined && pre.uid !== old.metadata.uid) {
      throw conflict(
        { ...t, name },
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid ?? ""}`,
      );
    }
    if ((old.metadata.finalizers ?? []).length > 0) {
      if (old.metadata.deletionTimestamp !== undefined) return this.present(t, old);
      const next = clone(old);
      next.metadata.deletionTimestamp = rfc3339(this.now());
      this.rv++;
      next.metadata.resourceVersion = String(this.rv);
      this.bucket(t).set(key, next);
      this.record(t, "MODIFIED", next, old);
      return this.present(t, next);
    }
    this.bucket(t).delete(key);
    this.rv++;
    const gone = clone(old);
    gone.metadata.resourceVersion = String(this.rv);
    this.record(t, "DELETED", gone, old);
    this.afterDelete(t, gone);
    return this.present(t, gone);
  }

  /** DELETE on a collection: every object matching the selectors, as individual deletes. */
  deleteCollection(t: ResourceType, ns: string, labels: LabelSelector, fields: FieldSelector): KubeObject[] {
    const { items } = this.list(t, ns, labels, fields);
    return items.map((o) => this.delete(t, o.metadata.namespace ?? "", o.metadata.name ?? ""));
  }

  private afterDelete(t: ResourceType, obj: KubeObject): void {
    if (t.group === "" && t.resource === "namespaces") {
      for (const other of this.types.values()) {
        if (!other.namespaced) continue;
        for (const o of [...this.bucket(other).values()]) {
          if (o.metadata.namespace === obj.metadata.name)
            this.delete(other, o.metadata.namespace ?? "", o.metadata.name ?? "");
        }
      }
    }
    if (t.group === "apiextensions.k8s.io" && t.resource === "customresourcedefinitions") {
      const spec = obj["spec"] as CrdSpec;
      for (const ct of typesOfCrd(spec)) {
        for (const o of [...this.bucket(ct).values()])
          this.delete(ct, o.metadata.namespace ?? "", o.metadata.name ?? "");
        this.types.delete(`${ct.group}/${ct.version}/${ct.resource}`);
      }
      this.objects.delete(typeKey({ group: spec.group, resource: spec.names.plural }));
    }
  }

  /** Validate a CRD, mark it Established and serve its versions (a simplified apiextensions controller). */
  private admitCrd(obj: KubeObject): void {
    const spec = obj["spec"] as CrdSpec | undefined;
    const name = obj.metadata.name ?? "";
    const target = {
      group: "apiextensions.k8s.io",
      resource: "customresourcedefinitions",
      kind: "CustomResourceDefinition",
      name,
    };
    const causes: StatusCause[] = [];
    if (spec === undefined || typeof spec !== "object")
      causes.push({ field: "spec", message: "Required value" });
    else {
      if (typeof spec.group !== "string" || !spec.group.includes("."))
        causes.push({
          field: "spec.group",
          message: `Invalid value: "${String(spec.group)}": should be a domain with at least one dot`,
        });
      if (typeof spec.names?.plural !== "string" || !DNS1123_LABEL.test(spec.names.plural))
        causes.push({ field: "spec.names.plural", message: "Required value" });
      if (typeof spec.names?.kind !== "string" || spec.names.kind === "")
        causes.push({ field: "spec.names.kind", message: "Required value" });
      if (spec.scope !== "Namespaced" && spec.scope !== "Cluster")
        causes.push({
          field: "spec.scope",
          message: `Unsupported value: "${String(spec.scope)}": supported values: "Cluster", "Namespaced"`,
        });
      if (!Array.isArray(spec.versions) || spec.versions.length === 0)
        causes.push({ field: "spec.versions", message: "Required value" });
      else if (spec.versions.filter((v) => v.storage === true).length !== 1)
        causes.push({
          field: "spec.versions",
          message: "Invalid value: must have exactly one version marked as storage version",
        });
      if (causes.length === 0 && name !== `${spec.names.plural}.${spec.group}`)
        causes.push({
          field: "metadata.name",
          message: `Invalid value: "${name}": must be spec.names.plural+"."+spec.group`,
        });
    }
    if (causes.length > 0) throw invalid(target, causes);
    const s = spec!;
    for (const ct of typesOfCrd(s)) {
      const clash = this.types.get(`${ct.group}/${ct.version}/${ct.resource}`);
      if (clash !== undefined && !clash.custom)
        throw invalid(target, [
          { field: "spec.names.plural", message: "conflicts with a built-in resource" },
        ]);
    }
    for (const [k, existing] of this.types) {
      if (existing.custom && existing.group === s.group && existing.resource === s.names.plural)
        this.types.delete(k);
    }
    for (const ct of typesOfCrd(s)) this.types.set(`${ct.group}/${ct.version}/${ct.resource}`, ct);
    const ts = rfc3339(this.now());
    const previous = obj["status"] as { conditions?: unknown[] } | undefined;
    obj["status"] = {
      acceptedNames: { ...s.names, listKind: s.names.listKind ?? `${s.names.kind}List` },
      storedVersions: s.versions.filter((v) => v.storage === true).map((v) => v.name),
      conditions: previous?.conditions ?? [
        {
          type: "NamesAccepted",
          status: "True",
          reason: "NoConflicts",
          message: "no conflicts found",
          lastTransitionTime: ts,
        },
        {
          type: "Established",
          status: "True",
          reason: "InitialNamesAccepted",
          message: "the initial names have been accepted",
          lastTransitionTime: ts,
        },
      ],
    };
  }
}
