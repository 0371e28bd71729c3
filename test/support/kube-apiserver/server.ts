import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { apiVersionOf, selectableFields, type ResourceType } from "./resources.js";
import { parseFieldSelector, parseLabelSelector } from "./selectors.js";
import {
  ApiStatusError,
  badRequest,
  admissionDenied,
  forbidden,
  methodNotAllowed,
  notFound,
  pathNotFound,
  unauthorized,
  type Status,
} from "./status.js";
import {
  ObjectStore,
  type DeleteOptions,
  type KubeObject,
  type WatchEvent,
  type WatchHandle,
} from "./store.js";

/** The RBAC verbs, as the API server derives them from method and query. */
export type Verb = "get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection";

/** One resource request, as the authorizer sees it, with the caller and the answer. */
export interface RequestRecord {
  verb: Verb;
  /** API group, "" for core. */
  apiGroup: string;
  apiVersion: string;
  resource: string;
  /** "" or "status". */
  subresource: string;
  /** "" for cluster-scoped requests and lists across all namespaces. */
  namespace: string;
  /** "" for collection requests. */
  name: string;
  /** The user the bearer token maps to (see `users`), "system:anonymous" without a token. */
  user: string;
  /** The bearer token presented, if any. */
  token: string | undefined;
  /** HTTP status code of the answer (200 for a watch that started). */
  code: number;
}

/** What admission sees of a write: the fields of Kubernetes' AdmissionRequest that policies use. */
export interface AdmissionRequest {
  operation: "CREATE" | "UPDATE" | "DELETE";
  group: string;
  version: string;
  resource: string;
  subresource: string;
  namespace: string;
  /** The object's name (for CREATE, from the body). */
  name: string;
  userInfo: { username: string; groups: string[]; extra: Record<string, string[]> };
  /** The object as it would be written (CREATE, UPDATE by PUT, a PATCH applied); null for DELETE. */
  object: KubeObject | null;
  /** The stored object (UPDATE, DELETE); null for CREATE. */
  oldObject: KubeObject | null;
}

/** Options of the test API server. All optional. */
export interface KubeApiServerOptions {
  /** Change events kept for watches; a watch from an older resourceVersion gets 410. Default 1000. */
  historyLimit?: number;
  /** Interval of BOOKMARK events on watches that allow them; 0 disables the timer. Default 60000 ms (the API server sends about one a minute). */
  bookmarkIntervalMs?: number;
  /**
   * Bearer token → user name, or name and `extra` user info (a bound service-account token's
   * `authentication.kubernetes.io/node-name`). When given, a request without a known token gets
   * 401; when absent, every request is accepted and a token, if any, is recorded as user
   * `token:<token>`.
   */
  users?: Record<string, string | { name: string; extra: Record<string, string[]> }>;
  /**
   * Admission of writes (create, update, patch, delete) that passed authorization: returns the
   * denying policy and its message, or undefined to admit. Default: admit everything.
   */
  admit?: (request: AdmissionRequest) => { policy: string; message: string } | undefined;
  /** Authorizer: return false to answer 403 Forbidden. Default: allow everything. */
  authorize?: (request: Omit<RequestRecord, "code">) => boolean;
  /** Clock for timestamps. Default `() => new Date()`. */
  now?: () => Date;
}

interface Route {
  type: ResourceType;
  namespace: string;
  name: string;
  subresource: "" | "status";
}

const ANONYMOUS = "system:anonymous";

function writeJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 3 * 1024 * 1024) throw badRequest("request entity too large: limit is 3145728");
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw badRequest(`error decoding request body: ${(e as Error).message}`);
  }
}

/**
 * A Kubernetes API server for tests: the API machinery (resourceVersion, optimistic concurrency,
 * merge/JSON patch, status subresources, watches with bookmarks and 410 Gone, label and field
 * selectors, CRDs) for the resources podcrypt uses, over node:http on 127.0.0.1. Every resource
 * request is recorded (verb, group, resource, subresource, namespace, user) in `requests`, so RBAC
 * rules can be checked against what a client really called.
 *
 * Not modelled: admission beyond name/label validation and CRD structure, OpenAPI validation of
 * custom resources, list pagination (`limit` is ignored, as servers may), server-side apply,
 * per-type strategic-merge list keys, protobuf.
 */
export class KubeApiServer {
  /** The storage, for tests that seed or inspect state directly. */
  readonly store: ObjectStore;
  private readonly server: Server;
  private readonly log: RequestRecord[] = [];
  private readonly streams = new Set<{ res: ServerResponse; handle: WatchHandle | undefined }>();
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private baseUrl = "";

  private constructor(private readonly options: KubeApiServerOptions) {
    const storeOptions: ConstructorParameters<typeof ObjectStore>[0] = {};
    if (options.historyLimit !== undefined) storeOptions.historyLimit = options.historyLimit;
    if (options.now !== undefined) storeOptions.now = options.now;
    this.store = new ObjectStore(storeOptions);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => this.fail(res, e));
    });
  }

  /** Start a server on 127.0.0.1 with an ephemeral port. Stop it with `close()`. */
  static async start(options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const s = new KubeApiServer(options);
    await new Promise<void>((resolve, reject) => {
      s.server.once("error", reject);
      s.server.listen(0, "127.0.0.1", () => resolve());
    });
    s.baseUrl = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
    const every = options.bookmarkIntervalMs ?? 60_000;
    if (every > 0) {
      s.bookmarkTimer = setInterval(() => s.store.bookmark(), every);
      s.bookmarkTimer.unref();
    }
    return s;
  }

  /** `http://127.0.0.1:PORT`. */
  get url(): string {
    return this.baseUrl;
  }

  /** Every resource request so far, oldest first. */
  get requests(): readonly RequestRecord[] {
    return this.log;
  }

  /** Forget the recorded requests. */
  clearRequests(): void {
    this.log.length = 0;
  }

  /** Options for `KubeConfig.loadFromOptions` pointing at this server, as `user` with `token`. */
  kubeconfig(token?: string): {
    clusters: { name: string; server: string; skipTLSVerify: boolean }[];
    users: { name: string; token?: string }[];
    contexts: { name: string; cluster: string; user: string }[];
    currentContext: string;
  } {
    const user: { name: string; token?: string } = { name: "test" };
    if (token !== undefined) user.token = token;
    return {
      clusters: [{ name: "test", server: this.baseUrl, skipTLSVerify: true }],
      users: [user],
      contexts: [{ name: "test", cluster: "test", user: "test" }],
      currentContext: "test",
    };
  }

  /** Drop the whole watch history: any watch from an older resourceVersion now gets 410 Gone. */
  compact(): void {
    this.store.compact();
  }

  /** Send a BOOKMARK now on every watch that allows them. */
  bookmarkNow(): void {
    this.store.bookmark();
  }

  /** Number of watch streams open. */
  get openWatches(): number {
    return this.streams.size;
  }

  /**
   * End every open watch stream, as an API server does on restart or watch timeout. With
   * `gone`, each first gets a 410 Expired ERROR event, as when its position fell out of the cache.
   */
  endWatches(options: { gone?: boolean } = {}): void {
    for (const s of [...this.streams]) {
      if (options.gone === true) {
        const oldest = this.store.oldestWatchable();
        s.res.write(JSON.stringify({ type: "ERROR", object: expiredStatus(oldest) }) + "\n");
      }
      this.endStream(s);
    }
  }

  /** Stop listening and cut every connection, watches included. */
  async close(): Promise<void> {
    if (this.bookmarkTimer !== undefined) clearInterval(this.bookmarkTimer);
    for (const s of [...this.streams]) this.endStream(s);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private endStream(s: { res: ServerResponse; handle: WatchHandle | undefined }): void {
    s.handle?.stop();
    this.streams.delete(s);
    s.res.end();
  }

  private fail(res: ServerResponse, e: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (e instanceof ApiStatusError) {
      writeJson(res, e.status.code, e.status);
      return;
    }
    const status: Status = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `Internal error occurred: ${(e as Error).message}`,
      reason: "InternalError",
      code: 500,
    };
    writeJson(res, 500, status);
  }

  private discovery(parts: string[]): unknown {
    const types = this.store.servedTypes();
    const resourceList = (group: string, version: string): unknown => {
      const served = types.filter((t) => t.group === group && t.version === version);
      if (served.length === 0) return undefined;
      const resources = served.flatMap((t) => {
        const verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        const main = { name: t.resource, singularName: "", namespaced: t.namespaced, kind: t.kind, verbs };
        return t.statusSubresource
          ? [
              main,
              {
                name: `${t.resource}/status`,
                singularName: "",
                namespaced: t.namespaced,
                kind: t.kind,
                verbs: ["get", "patch", "update"],
              },
            ]
          : [main];
      });
      return {
        kind: "APIResourceList",
        apiVersion: "v1",
        groupVersion: apiVersionOf({ group, version }),
        resources,
      };
    };
    if (parts[0] === "version" && parts.length === 1)
      return { major: "1", minor: "33", gitVersion: "v1.33.0-podcrypt-test", platform: "linux/amd64" };
    if (parts[0] === "api" && parts.length === 1)
      return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] };
    if (parts[0] === "api" && parts.length === 2) return resourceList("", parts[1]!);
    if (parts[0] === "apis" && parts.length === 1) {
      const groups = new Map<string, Set<string>>();
      for (const t of types)
        if (t.group !== "") groups.set(t.group, (groups.get(t.group) ?? new Set()).add(t.version));
      return {
        kind: "APIGroupList",
        apiVersion: "v1",
        groups: [...groups].map(([name, vs]) => {
          const versions = [...vs].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
          return { name, versions, preferredVersion: versions[0] };
        }),
      };
    }
    if (parts[0] === "apis" && parts.length === 3) return resourceList(parts[1]!, parts[2]!);
    return undefined;
  }

  private route(parts: string[]): Route | undefined {
    let group: string;
    let version: string;
    let rest: string[];
    if (parts[0] === "api" && parts.length >= 3) {
      group = "";
      version = parts[1]!;
      rest = parts.slice(2);
    } else if (parts[0] === "apis" && parts.length >= 4) {
      group = parts[1]!;
      version = parts[2]!;
      rest = parts.slice(3);
    } else return undefined;
    let namespace = "";
    // /namespaces/NS/RESOURCE... is namespaced; /namespaces/NAME[/status] is the Namespace itself.
    if (rest[0] === "namespaces" && rest.length >= 3 && !(rest.length === 3 && rest[2] === "status")) {
      namespace = rest[1]!;
      rest = rest.slice(2);
    }
    if (rest.length < 1 || rest.length > 3) return undefined;
    const type = this.store.lookup(group, version, rest[0]!);
    if (type === undefined) return undefined;
    const name = rest[1] ?? "";
    const sub = rest[2] ?? "";
    if (sub !== "" && !(sub === "status" && type.statusSubresource)) return undefined;
    if (namespace !== "" && !type.namespaced) return undefined;
    if (type.namespaced && namespace === "" && name !== "") return undefined;
    return { type, namespace, name, subresource: sub as "" | "status" };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const parts = url.pathname.split("/").filter((p) => p !== "");
    if (url.pathname === "/healthz" || url.pathname === "/readyz" || url.pathname === "/livez") {
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end("ok");
      return;
    }
    const auth = req.headers.authorization ?? "";
    const token = auth.startsWith("Bearer ") ? auth.slice("Bearer ".length).trim() : undefined;
    let user: string;
    let extra: Record<string, string[]> = {};
    if (this.options.users !== undefined) {
      const known = token === undefined ? undefined : this.options.users[token];
      if (known === undefined) throw unauthorized();
      if (typeof known === "string") user = known;
      else ({ name: user, extra } = known);
    } else user = token === undefined ? ANONYMOUS : `token:${token}`;

    const info = this.discovery(parts);
    if (info !== undefined && req.method === "GET") {
      writeJson(res, 200, info);
      return;
    }
    const r = this.route(parts);
    if (r === undefined) throw pathNotFound(url.pathname);
    const q = url.searchParams;
    const method = req.method ?? "GET";
    const isWatch = q.get("watch") === "1" || q.get("watch") === "true";
    let verb: Verb;
    if (r.name === "") {
      if (method === "GET") verb = isWatch ? "watch" : "list";
      else if (method === "POST") verb = "create";
      else if (method === "DELETE") verb = "deletecollection";
      else throw methodNotAllowed(method);
    } else if (method === "GET") verb = "get";
    else if (method === "PUT") verb = "update";
    else if (method === "PATCH") verb = "patch";
    else if (method === "DELETE") verb = "delete";
    else throw methodNotAllowed(method);
    if (r.subresource !== "" && !["get", "update", "patch"].includes(verb)) throw methodNotAllowed(method);

    const record: RequestRecord = {
      verb,
      apiGroup: r.type.group,
      apiVersion: r.type.version,
      resource: r.type.resource,
      subresource: r.subresource,
      namespace: r.namespace,
      name: r.name,
      user,
      token,
      code: 0,
    };
    this.log.push(record);
    try {
      if (this.options.authorize !== undefined && !this.options.authorize({ ...record })) {
        throw forbidden(
          user,
          verb,
          { group: r.type.group, resource: r.type.resource, name: r.name === "" ? undefined : r.name },
          r.namespace,
        );
      }
      if (verb === "watch") {
        this.startWatch(r, q, res);
        record.code = 200;
        return;
      }
      const { code, body } = await this.serve(verb, r, q, req, { username: user, groups: [], extra });
      record.code = code;
      writeJson(res, code, body);
    } catch (e) {
      record.code = e instanceof ApiStatusError ? e.status.code : 500;
      throw e;
    }
  }

  private selectors(
    r: Route,
    q: URLSearchParams,
  ): { labels: ReturnType<typeof parseLabelSelector>; fields: ReturnType<typeof parseFieldSelector> } {
    return {
      labels: parseLabelSelector(q.get("labelSelector") ?? ""),
      fields: parseFieldSelector(q.get("fieldSelector") ?? "", selectableFields(r.type)),
    };
  }

  private async serve(
    verb: Verb,
    r: Route,
    q: URLSearchParams,
    req: IncomingMessage,
    userInfo: AdmissionRequest["userInfo"],
  ): Promise<{ code: number; body: unknown }> {
    const { type: t, namespace: ns, name } = r;
    const admit = (operation: AdmissionRequest["operation"], object: KubeObject | null, n = name): void => {
      if (this.options.admit === undefined) return;
      // A write of an absent object is a 404 before admission, as the API server answers it.
      const oldObject = operation === "CREATE" ? null : this.store.get(t, ns, n);
      const denied = this.options.admit({
        operation,
        group: t.group,
        version: t.version,
        resource: t.resource,
        subresource: r.subresource,
        namespace: ns,
        name: n,
        userInfo,
        object,
        oldObject,
      });
      if (denied !== undefined)
        throw admissionDenied(
          { group: t.group, resource: t.resource, name: n },
          denied.policy,
          denied.message,
        );
    };
    switch (verb) {
      case "get":
        return { code: 200, body: this.store.get(t, ns, name) };
      case "list": {
        const { labels, fields } = this.selectors(r, q);
        const { items, resourceVersion } = this.store.list(t, ns, labels, fields);
        return {
          code: 200,
          body: { kind: t.listKind, apiVersion: apiVersionOf(t), metadata: { resourceVersion }, items },
        };
      }
      case "create": {
        const body = ((await readBody(req)) ?? {}) as KubeObject;
        admit("CREATE", body, body.metadata?.name ?? "");
        return { code: 201, body: this.store.create(t, ns, body) };
      }
      case "update": {
        const body = await readBody(req);
        if (body === undefined) throw badRequest("the request body is empty");
        admit("UPDATE", body as KubeObject);
        return { code: 200, body: this.store.update(t, ns, name, body as KubeObject, r.subresource) };
      }
      case "patch": {
        const contentType = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
        const body = await readBody(req);
        if (body === undefined) throw badRequest("the patch body is empty");
        const next = this.store.patched(t, ns, name, contentType, body);
        admit("UPDATE", next);
        return { code: 200, body: this.store.update(t, ns, name, next, r.subresource) };
      }
      case "delete": {
        const body = (await readBody(req)) as DeleteOptions | undefined;
        admit("DELETE", null);
        return { code: 200, body: this.store.delete(t, ns, name, body ?? {}) };
      }
      case "deletecollection": {
        const { labels, fields } = this.selectors(r, q);
        const items = this.store.deleteCollection(t, ns, labels, fields);
        return {
          code: 200,
          body: {
            kind: t.listKind,
            apiVersion: apiVersionOf(t),
            metadata: { resourceVersion: String(this.store.revision()) },
            items,
          },
        };
      }
      default:
        throw notFound({ group: t.group, resource: t.resource, name });
    }
  }

  private startWatch(r: Route, q: URLSearchParams, res: ServerResponse): void {
    const { labels, fields } = this.selectors(r, q);
    const rvParam = q.get("resourceVersion") ?? "";
    let from: number | undefined;
    if (rvParam !== "") {
      from = Number(rvParam);
      if (!Number.isSafeInteger(from) || from < 0) throw badRequest(`invalid resource version "${rvParam}"`);
    }
    res.writeHead(200, {
      "Content-Type": "application/json",
      "Transfer-Encoding": "chunked",
      "Cache-Control": "no-cache",
    });
    res.flushHeaders();
    const stream: { res: ServerResponse; handle: WatchHandle | undefined } = { res, handle: undefined };
    const send = (e: WatchEvent): void => {
      res.write(JSON.stringify(e) + "\n");
    };
    try {
      stream.handle = this.store.watch(
        {
          type: r.type,
          namespace: r.namespace,
          labels,
          fields,
          allowBookmarks: q.get("allowWatchBookmarks") === "true" || q.get("allowWatchBookmarks") === "1",
          send,
        },
        from,
      );
    } catch (e) {
      // The API server answers a too-old watch with 200 and one ERROR event, then ends the stream.
      if (!(e instanceof ApiStatusError)) throw e;
      send({ type: "ERROR", object: e.status as unknown as Record<string, unknown> });
      res.end();
      return;
    }
    this.streams.add(stream);
    res.on("close", () => {
      stream.handle?.stop();
      this.streams.delete(stream);
    });
    const timeout = Number(q.get("timeoutSeconds") ?? "0");
    if (timeout > 0) {
      const timer = setTimeout(() => this.endStream(stream), timeout * 1000);
      res.on("close", () => clearTimeout(timer));
    }
  }
}

function expiredStatus(oldest: number): Status {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: `too old resource version (oldest available: ${oldest})`,
    reason: "Expired",
    code: 410,
  };
}
