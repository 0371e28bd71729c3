import { PodcryptError } from "../errors/index.js";

/** Stable codes of datastore errors. */
export const DatastoreErrorCode = {
  /** The object (or lease) does not exist. */
  NotFound: "EDS_NOTFOUND",
  /** `create` of an object that already exists. */
  AlreadyExists: "EDS_EXISTS",
  /** A compare-and-swap lost: the object's revision is not the expected one (or it vanished). */
  Conflict: "EDS_CONFLICT",
  /** A watch cannot resume from its revision (compacted / 410 Gone): relist and watch again. */
  RevisionGone: "EDS_GONE",
  /** The lease expired or was revoked. */
  LeaseExpired: "EDS_LEASE_EXPIRED",
  /** The backend cannot be reached (after the client's own retries). */
  Unavailable: "EDS_UNAVAILABLE",
  /** The store was closed. */
  Closed: "EDS_CLOSED",
  /** The backend refused the client's credentials (wrong user or password, unknown user). */
  Unauthenticated: "EDS_UNAUTHENTICATED",
  /** The backend authenticated the client but denied it this request (etcd role, RBAC). */
  PermissionDenied: "EDS_PERMISSION_DENIED",
} as const;
/** A stable datastore error code. */
export type DatastoreErrorCode = (typeof DatastoreErrorCode)[keyof typeof DatastoreErrorCode];

/** Base of every datastore error; `context` carries kind, key and revisions (never key material). */
export class DatastoreError extends PodcryptError {
  override readonly name: string = "DatastoreError";
  declare readonly code: DatastoreErrorCode;
  constructor(
    code: DatastoreErrorCode,
    message: string,
    options: { context?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(code, message, options);
  }
}

/** The object or lease does not exist (get of a must-exist object, update, delete). */
export class NotFoundError extends DatastoreError {
  override readonly name = "NotFoundError";
  constructor(kind: string, key: string, options: { cause?: unknown } = {}) {
    super(DatastoreErrorCode.NotFound, `${kind} "${key}" not found`, { ...options, context: { kind, key } });
  }
}

/** `create` found the object already there. */
export class AlreadyExistsError extends DatastoreError {
  override readonly name = "AlreadyExistsError";
  constructor(kind: string, key: string, options: { cause?: unknown } = {}) {
    super(DatastoreErrorCode.AlreadyExists, `${kind} "${key}" already exists`, {
      ...options,
      context: { kind, key },
    });
  }
}

/** A compare-and-swap lost: someone else wrote the object since `expected` was read. */
export class ConflictError extends DatastoreError {
  override readonly name = "ConflictError";
  constructor(
    kind: string,
    key: string,
    expected: string,
    actual: string | undefined,
    options: { cause?: unknown } = {},
  ) {
    super(
      DatastoreErrorCode.Conflict,
      `${kind} "${key}" changed: expected revision ${expected}, found ${actual ?? "none"}`,
      { ...options, context: { kind, key, expected, actual } },
    );
  }
}

/** A watch cannot resume from `revision` (etcd compaction, Kubernetes 410 Gone): relist. */
export class RevisionGoneError extends DatastoreError {
  override readonly name = "RevisionGoneError";
  constructor(kind: string, revision: string, options: { cause?: unknown; compactRevision?: string } = {}) {
    super(DatastoreErrorCode.RevisionGone, `${kind}: revision ${revision} is no longer available; relist`, {
      cause: options.cause,
      context: { kind, revision, compactRevision: options.compactRevision },
    });
  }
}

/** The lease expired or was revoked; records attached to it are gone. */
export class LeaseExpiredError extends DatastoreError {
  override readonly name = "LeaseExpiredError";
  constructor(leaseId: string, options: { cause?: unknown } = {}) {
    super(DatastoreErrorCode.LeaseExpired, `lease ${leaseId} expired or was revoked`, {
      ...options,
      context: { leaseId },
    });
  }
}

/** The backend could not be reached. */
export class UnavailableError extends DatastoreError {
  override readonly name = "UnavailableError";
  constructor(message: string, options: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(DatastoreErrorCode.Unavailable, message, options);
  }
}

/** The backend refused the credentials of `user`; the message names the user, never the password. */
export class UnauthenticatedError extends DatastoreError {
  override readonly name = "UnauthenticatedError";
  constructor(message: string, options: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(DatastoreErrorCode.Unauthenticated, message, options);
  }
}

/**
 * The backend itself denied an authenticated client a request: on etcd, a key outside the roles
 * of the user (an agent writing another node's record or the controller's leader key).
 */
export class PermissionDeniedError extends DatastoreError {
  override readonly name = "PermissionDeniedError";
  constructor(message: string, options: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(DatastoreErrorCode.PermissionDenied, message, options);
  }
}

/** The store (or the handle) was closed. */
export class ClosedError extends DatastoreError {
  override readonly name = "ClosedError";
  constructor(what = "datastore") {
    super(DatastoreErrorCode.Closed, `${what} is closed`);
  }
}

/** Type guard: any datastore error, optionally with the given code. */
export function isDatastoreError(e: unknown, code?: DatastoreErrorCode): e is DatastoreError {
  return e instanceof DatastoreError && (code === undefined || e.code === code);
}
/** Type guard for NotFoundError. */
export function isNotFoundError(e: unknown): e is NotFoundError {
  return isDatastoreError(e, DatastoreErrorCode.NotFound);
}
/** Type guard for AlreadyExistsError. */
export function isAlreadyExistsError(e: unknown): e is AlreadyExistsError {
  return isDatastoreError(e, DatastoreErrorCode.AlreadyExists);
}
/** Type guard for ConflictError. */
export function isConflictError(e: unknown): e is ConflictError {
  return isDatastoreError(e, DatastoreErrorCode.Conflict);
}
/** Type guard for RevisionGoneError. */
export function isRevisionGoneError(e: unknown): e is RevisionGoneError {
  return isDatastoreError(e, DatastoreErrorCode.RevisionGone);
}
/** Type guard for LeaseExpiredError. */
export function isLeaseExpiredError(e: unknown): e is LeaseExpiredError {
  return isDatastoreError(e, DatastoreErrorCode.LeaseExpired);
}
/** Type guard for UnavailableError. */
export function isUnavailableError(e: unknown): e is UnavailableError {
  return isDatastoreError(e, DatastoreErrorCode.Unavailable);
}
/** Type guard for ClosedError. */
export function isClosedError(e: unknown): e is ClosedError {
  return isDatastoreError(e, DatastoreErrorCode.Closed);
}
/** Type guard for PermissionDeniedError. */
export function isPermissionDeniedError(e: unknown): e is PermissionDeniedError {
  return isDatastoreError(e, DatastoreErrorCode.PermissionDenied);
}
