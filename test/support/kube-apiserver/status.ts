import { PodcryptError } from "../../../src/errors/index.js";

/** A `metav1.Status` cause (field-level detail of an Invalid error). */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** The `metav1.Status` object the API server returns for failures (and some successes). */
export interface Status {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message: string;
  reason: string;
  details?: { name?: string; group?: string; kind?: string; causes?: StatusCause[] };
  code: number;
}

/** Where a failure is about: the resource (plural), its API group and the object's name. */
export interface StatusTarget {
  group: string;
  resource: string;
  name?: string;
}

/**
 * A request failed with a Kubernetes Status. The server turns it into the HTTP response (or, in
 * a watch, into an ERROR event).
 */
export class ApiStatusError extends PodcryptError {
  override readonly name = "ApiStatusError";
  readonly status: Status;

  constructor(status: Status) {
    super("EKUBESTATUS", status.message, { context: { reason: status.reason, code: status.code } });
    this.status = status;
  }
}

/** `resource.group` as the API server spells qualified resources in messages (`nodes`, `leases.coordination.k8s.io`). */
export function qualifiedResource(t: StatusTarget): string {
  return t.group === "" ? t.resource : `${t.resource}.${t.group}`;
}

function failure(
  code: number,
  reason: string,
  message: string,
  target?: StatusTarget,
  causes?: StatusCause[],
): ApiStatusError {
  const details: Status["details"] = {};
  if (target !== undefined) {
    if (target.name !== undefined) details.name = target.name;
    if (target.group !== "") details.group = target.group;
    details.kind = target.resource;
  }
  if (causes !== undefined) details.causes = causes;
  const status: Status = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    code,
  };
  if (Object.keys(details).length > 0) status.details = details;
  return new ApiStatusError(status);
}

/** 404 NotFound: `nodes "x" not found`. */
export function notFound(t: StatusTarget): ApiStatusError {
  return failure(404, "NotFound", `${qualifiedResource(t)} "${t.name ?? ""}" not found`, t);
}

/** 409 AlreadyExists: `nodes "x" already exists`. */
export function alreadyExists(t: StatusTarget): ApiStatusError {
  return failure(409, "AlreadyExists", `${qualifiedResource(t)} "${t.name ?? ""}" already exists`, t);
}

/** 409 Conflict: the optimistic-concurrency failure of an update whose resourceVersion is stale. */
export function conflict(
  t: StatusTarget,
  why = "the object has been modified; please apply your changes to the latest version and try again",
): ApiStatusError {
  return failure(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualifiedResource(t)} "${t.name ?? ""}": ${why}`,
    t,
  );
}

/** 410 Gone, reason Expired: a watch or list asked for a resourceVersion older than the history kept. */
export function expired(requested: number, oldest: number): ApiStatusError {
  return failure(410, "Expired", `too old resource version: ${requested} (${oldest})`);
}

/** 400 BadRequest. */
export function badRequest(message: string): ApiStatusError {
  return failure(400, "BadRequest", message);
}

/** 422 Invalid, with one cause per bad field. */
export function invalid(t: StatusTarget & { kind: string }, causes: StatusCause[]): ApiStatusError {
  const list = causes.map((c) => `${c.field ?? ""}: ${c.message ?? ""}`).join(", ");
  return failure(422, "Invalid", `${t.kind} "${t.name ?? ""}" is invalid: ${list}`, t, causes);
}

/** 405 MethodNotAllowed. */
export function methodNotAllowed(method: string): ApiStatusError {
  return failure(
    405,
    "MethodNotAllowed",
    `the server does not allow this method on the requested resource (${method})`,
  );
}

/** 415 UnsupportedMediaType. */
export function unsupportedMediaType(contentType: string): ApiStatusError {
  return failure(
    415,
    "UnsupportedMediaType",
    `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${contentType})`,
  );
}

/** 401 Unauthorized. */
export function unauthorized(): ApiStatusError {
  return failure(401, "Unauthorized", "Unauthorized");
}

/** 403 Forbidden, worded as the RBAC authorizer words it. */
export function forbidden(user: string, verb: string, t: StatusTarget, namespace: string): ApiStatusError {
  const scope = namespace === "" ? "at the cluster scope" : `in the namespace "${namespace}"`;
  const group = t.group === "" ? `""` : `"${t.group}"`;
  return failure(
    403,
    "Forbidden",
    `${qualifiedResource(t)}${t.name === undefined ? "" : ` "${t.name}"`} is forbidden: User "${user}" cannot ${verb} resource "${t.resource}" in API group ${group} ${scope}`,
    t,
  );
}

/** 403 for a write a ValidatingAdmissionPolicy denied, with the API server's wording. */
export function admissionDenied(t: StatusTarget, policy: string, message: string): ApiStatusError {
  return failure(
    403,
    "Forbidden",
    `${qualifiedResource(t)}${t.name === undefined ? "" : ` "${t.name}"`} is forbidden: ValidatingAdmissionPolicy '${policy}' with binding '${policy}' denied request: ${message}`,
    t,
  );
}

/** 404 for a path that names no resource the server serves. */
export function pathNotFound(path: string): ApiStatusError {
  return failure(404, "NotFound", `the server could not find the requested resource (${path})`);
}
