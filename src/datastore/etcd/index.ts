import {
  castGrpcError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  isRecoverableError,
  type IKeyValue,
  type IOptions,
  type Lease as EtcdLease,
  type Watcher,
} from "etcd3";
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen } from "cockatiel";
import { connect } from "node:net";
import type { PolicyStatus, ResourceByKind, ResourceInputByKind, ResourceKind } from "../../model/index.js";
import {
  changeEvent,
  decodeObject,
  encodeObject,
  listResult,
  storedOrThrow,
  storedRecord,
  withPolicyStatus,
  type Decoded,
} from "../codec.js";
import { Campaigns, type ElectionPort } from "../election.js";
import {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  DatastoreError,
  LeaseExpiredError,
  NotFoundError,
  PermissionDeniedError,
  RevisionGoneError,
  UnauthenticatedError,
  UnavailableError,
  isDatastoreError,
} from "../errors.js";
import { SerialQueue } from "../serial.js";
import { LeaseLivenessHold } from "../liveness.js";
import type {
  LiveNodes,
  LivenessHold,
  CampaignOptions,
  Collection,
  Datastore,
  DeleteOptions,
  LeaderElection,
  Lease,
  LeaseOptions,
  ListResult,
  Stored,
  UpdateOptions,
  Watch,
  WatchEvent,
  WatchListener,
  WriteOptions,
} from "../types.js";

/** Options of the etcd datastore. */
export interface EtcdDatastoreOptions {
  /** etcd endpoints, e.g. `["http://127.0.0.1:2379"]`. */
  hosts: string[] | string;
  /** Key prefix. Default `/podcrypt/`. Objects live at `<prefix><kind>/<key>`. */
  prefix?: string;
  /** Extra etcd3 client options (`credentials`: TLS; `auth`: etcd user; dial timeout). */
  client?: Omit<IOptions, "hosts">;
}

/**
 * Deadline of every unary etcd call (ms). Loopback or LAN etcd answers in milliseconds; a call
 * still open after this long failed, and the caller's retry (the agent's next pass) starts afresh.
 * Generous, as it counts from before the channel connects: under CPU emulation (the VM tier) a
 * first call took over 10 s.
 */
const CALL_DEADLINE_MS = 30_000;

/** The "kind" under whose prefix leader-election keys live: `<prefix>__leaders/<name>`. */
export const LEADER_KIND = "__leaders";

/**
 * The "kind" under whose prefix nodes' liveness records live: `<prefix>__liveness/<node>`, each
 * attached to its node's lease (the record says nothing more than that the lease is alive).
 */
export const LIVENESS_KIND = "__liveness";

/**
 * The parts of etcd3's connection pool this client reaches into (etcd3 1.1 keeps them private):
 * its hosts, each with its gRPC service clients made with the client's channel options, and the
 * authenticator that fetches and caches the token.
 */
interface PoolInternals {
  hosts?: Array<{ host: string; getServiceClient(service: "Auth"): AuthServiceClient }>;
  authenticator?: {
    invalidateMetadata?: () => void;
    getCredentialsFromHost?: (
      address: string,
      name: string,
      password: string,
      callOptions: object | undefined,
      credentials: unknown,
    ) => Promise<string>;
  };
}

/** etcd's Auth service as grpc-js generates it: the one call used here. */
interface AuthServiceClient {
  authenticate(
    req: { name: string; password: string },
    options: object,
    done: (err: Error | null, res?: { token: string }) => void,
  ): void;
}

/** Who the client is, for errors that must name it. */
interface ErrorContext {
  leaseId?: string | undefined;
  /** The etcd user the client authenticates as. */
  user?: string | undefined;
  /** Whether the client speaks TLS. */
  tls: boolean;
}

/** Maps etcd3/grpc failures to datastore errors, keeping the cause. */
function mapError(e: unknown, ctx: ErrorContext): Error {
  const { leaseId } = ctx;
  if (isDatastoreError(e)) return e;
  if (e instanceof EtcdAuthenticationFailedError)
    return new UnauthenticatedError(
      `etcd refused the credentials for user "${ctx.user ?? "?"}" (wrong password-file, or no such user)`,
      { cause: e, context: { user: ctx.user } },
    );
  if (e instanceof EtcdPermissionDeniedError)
    return new PermissionDeniedError(
      ctx.user === undefined
        ? "etcd denied the request: it has authentication on and this client names no user (etcd then takes a client certificate's CN as the user): add ?user=NAME&password-file=FILE"
        : `etcd denied user "${ctx.user}" this request: the user's roles do not cover the key`,
      { cause: e, context: { user: ctx.user } },
    );
  if (e instanceof EtcdInvalidAuthTokenError || /user name is empty|user name not found/i.test(String(e)))
    return new UnauthenticatedError(
      "etcd has authentication on and refused a request without valid credentials (add ?user=NAME&password-file=FILE)",
      { cause: e },
    );
  if (e instanceof EtcdLeaseInvalidError) return new LeaseExpiredError(leaseId ?? "unknown", { cause: e });
  const msg = e instanceof Error ? e.message : String(e);
  if (/lease not found/i.test(msg)) return new LeaseExpiredError(leaseId ?? "unknown", { cause: e });
  if (/closed/i.test(msg) && e instanceof Error && e.name === "ClientClosedError") return new ClosedError();
  // etcd3's failover policy: after failed attempts it fails calls at once for a while.
  if (/circuit breaker is open/i.test(msg))
    return new UnavailableError(
      "etcd: cannot connect (recent attempts failed; the client retries shortly): is etcd running and reachable?",
      { cause: e },
    );
  // grpc's "14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED
  // 127.0.0.1:2379. Resolution note: ": the last error is what a person needs.
  const unreachable = /UNAVAILABLE.*Last error: (?:Error: )?(.*?)\.?\s*(?:Resolution note:.*)?$/s.exec(msg);
  if (unreachable !== null) {
    const why = unreachable[1] ?? "";
    // grpc-js reports a failed TLS handshake as "Last error: null" (no reason of its own).
    if (ctx.tls && (why === "null" || /certificate|ssl|tls|handshake|alert/i.test(why)))
      return new UnavailableError(
        `etcd: TLS handshake failed (${why === "null" ? "no reason given" : why}): check that ca= names the CA that signed etcd's server certificate (for the host in the URL) and that cert=/key= are a client certificate etcd trusts`,
        { cause: e },
      );
    if (!ctx.tls && /ECONNRESET|Connection dropped|Protocol error|socket hang up/i.test(why))
      return new UnavailableError(
        `etcd: cannot connect (${why}): does this etcd serve TLS? Then write etcds:// with ca=FILE`,
        { cause: e },
      );
    return new UnavailableError(`etcd: cannot connect (${why})`, { cause: e });
  }
  return new UnavailableError(`etcd: ${msg}`, { cause: e });
}

/**
 * Why a TCP connection to `hostPort` fails (`connect ECONNREFUSED 127.0.0.1:2379`, or no answer
 * within a second), or undefined when it connects.
 */
function tcpFailure(hostPort: string): Promise<string | undefined> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(hostPort);
  if (m === null) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const sock = connect({ host: m[1]!, port: Number(m[2]) });
    const done = (why: string | undefined): void => {
      sock.destroy();
      resolve(why);
    };
    sock.setTimeout(1000, () => done(`no answer from ${hostPort} within 1 s`));
    sock.once("connect", () => done(undefined));
    sock.once("error", (err) => done(err.message));
  });
}

/**
 * The `etcd` datastore: objects as JSON under `/podcrypt/<kind>/<key>`, mod_revision as the
 * object revision, transactions for compare-and-swap, watches that resume from the last delivered
 * revision after a reconnect (compaction → `gone`), etcd leases for liveness and leadership.
 */
export class EtcdDatastore implements Datastore {
  readonly backend = "etcd" as const;
  /** @internal */ readonly client: Etcd3;
  /** @internal */ readonly prefix: string;
  private readonly collections = new Map<ResourceKind, EtcdCollection<ResourceKind>>();
  private readonly watches = new Set<EtcdWatch<unknown>>();
  private readonly leases = new Set<EtcdLeaseHandle>();
  private readonly campaigns = new Campaigns();
  private readonly livenessWatchers = new Set<{ close(): Promise<void> }>();
  private closed = false;

  private readonly errorContext: ErrorContext;
  /** The first endpoint, `host:port`. */
  private readonly firstHost: string;

  constructor(options: EtcdDatastoreOptions) {
    this.client = new Etcd3({
      ...options.client,
      // grpc's reconnect backoff grows to 120 s: after an etcd outage of half a minute a client
      // would stay away for as long again, its calls waiting all the while. Reconnect within 2 s.
      grpcOptions: {
        "grpc.initial_reconnect_backoff_ms": 500,
        "grpc.max_reconnect_backoff_ms": 2000,
        ...options.client?.grpcOptions,
      },
      // No call may wait forever: etcd3 sets no deadline, and a call made while etcd was away
      // could hang past its return, leaving an agent silent for good. Streams (watches, lease
      // keep-alives) are exempt; they reconnect by the watch backoff below.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
      faultHandling: {
        // The default backoff grows to 30 s: a watch would come back that long after etcd did.
        watchBackoff: new ExponentialBackoff({ initialDelay: 200, maxDelay: 2000 }).next(),
        // etcd3's breaker fails every call at once for 5 s after three failed in a row, then lets
        // one through: a client found etcd back up to 5 s late (4 s measured after a 30 s outage).
        // It serves to skip a failed host of several; one trial a second does that as well.
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 1000,
            breaker: new ConsecutiveBreaker(3),
          }),
        ...options.client?.faultHandling,
      },
      hosts: options.hosts,
    });
    this.prefix = options.prefix ?? "/podcrypt/";
    const hosts = typeof options.hosts === "string" ? [options.hosts] : options.hosts;
    this.firstHost = hosts[0]?.replace(/^[a-z]+:\/\//, "").replace(/\/.*$/, "") ?? "";
    this.errorContext = {
      user: options.client?.auth?.username,
      tls: options.client?.credentials !== undefined || hosts.some((h) => h.startsWith("https:")),
    };
    if (options.client?.auth !== undefined) this.authenticateOnPoolChannels();
  }

  /**
   * Makes etcd3 fetch its authentication token over the host's own channel. etcd3 opens a new
   * channel for every token instead, without the channel options above, so with grpc's default
   * reconnect backoff (1 s growing to 120 s); channels to one address with the same options share
   * one connection (grpc's subchannel pool), and this one is used only to authenticate. Each call
   * made while etcd is away fetches a token ({@link wrap} drops it), so after a 30 s outage that
   * connection was backing off for seconds at a time, and every call failed with "No connection
   * established" for 6-18 s after etcd was back (measured: nodes' liveness renewals). On the host's
   * channel, authentication reconnects as every other call does, within 2 s.
   */
  private authenticateOnPoolChannels(): void {
    const pool = (this.client as unknown as { pool?: PoolInternals }).pool;
    const authenticator = pool?.authenticator;
    const hosts = pool?.hosts;
    // Present in every etcd3 this project accepts (package.json); checked so an upgrade that moves
    // them fails loudly here rather than bringing the slow reconnects back unnoticed.
    if (authenticator?.getCredentialsFromHost === undefined || hosts === undefined || hosts.length === 0)
      throw new Error("etcd3's connection pool has no authenticator or hosts to configure (etcd3 upgraded?)");
    authenticator.getCredentialsFromHost = (address, name, password, callOptions) =>
      new Promise<string>((resolve, reject) => {
        const host = hosts.find((h) => h.host === address) ?? hosts[0]!;
        let auth: AuthServiceClient;
        try {
          auth = host.getServiceClient("Auth");
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
          return;
        }
        auth.authenticate({ name, password }, callOptions ?? {}, (err, res) => {
          if (err !== null) reject(castGrpcError(err));
          else if (res === undefined) reject(new Error("etcd: authenticate returned no token"));
          else resolve(res.token);
        });
      });
  }

  /** @internal Maps an etcd3/grpc failure to a datastore error naming this client's user. */
  mapError(e: unknown, leaseId?: string): Error {
    return mapError(e, { ...this.errorContext, leaseId });
  }

  /**
   * @internal Runs an etcd3 call, mapping its failure ({@link mapError}). A call that fails for
   * want of etcd, or gives no answer by {@link CALL_DEADLINE_MS}, drops the client's cached
   * authentication token: etcd forgets its tokens when it restarts, and etcd3 went on sending the
   * old one, its calls hanging for good after an outage (every agent silent until restarted).
   */
  async wrap<T>(fn: () => Promise<T>, leaseId?: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const noAnswer = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new UnavailableError(`etcd: no answer within ${CALL_DEADLINE_MS / 1000} s`)),
        CALL_DEADLINE_MS + 1000,
      );
      timer.unref();
    });
    try {
      return await Promise.race([fn(), noAnswer]);
    } catch (e) {
      // grpc-js gives no reason ("Last error: null") for a TLS connection that failed, also when
      // nothing listens (etcd stopped): a TCP connect tells that apart from a failed handshake.
      let mapped: Error | undefined;
      if (this.errorContext.tls && /Last error: null/.test(e instanceof Error ? e.message : String(e))) {
        const why = await tcpFailure(this.firstHost);
        if (why !== undefined) mapped = new UnavailableError(`etcd: cannot connect (${why})`, { cause: e });
      }
      mapped ??= e instanceof UnavailableError ? e : this.mapError(e, leaseId);
      if (mapped instanceof UnavailableError) this.forgetToken();
      throw mapped;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Makes etcd3 authenticate afresh on its next call. etcd3 has no public way to say so: its
   * connection pool's authenticator is reached as etcd3 itself does when etcd reports the token
   * invalid (`invalidateMetadata`).
   */
  private forgetToken(): void {
    const pool = (this.client as unknown as { pool?: PoolInternals }).pool;
    pool?.authenticator?.invalidateMetadata?.();
  }

  /** @internal */ assertOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  /** @internal */ keyOf(kind: string, key: string): string {
    return `${this.prefix}${kind}/${key}`;
  }

  collection<K extends ResourceKind>(kind: K): Collection<K> {
    let c = this.collections.get(kind);
    if (c === undefined) {
      c = new EtcdCollection(this, kind) as unknown as EtcdCollection<ResourceKind>;
      this.collections.set(kind, c);
    }
    return c as unknown as Collection<K>;
  }

  async grantLease(ttlSeconds: number, options: LeaseOptions = {}): Promise<Lease> {
    this.assertOpen();
    const ttl = Math.max(1, Math.ceil(ttlSeconds));
    const lease = this.client.lease(ttl, { autoKeepAlive: options.autoKeepAlive ?? true });
    lease.on("lost", () => {}); // handled through onLost; avoid unhandled 'error'-like crashes
    const id = await this.wrap(() => lease.grant());
    const h = new EtcdLeaseHandle(this, lease, id, ttl);
    this.leases.add(h);
    return h;
  }

  /** @internal */ forgetLease(h: EtcdLeaseHandle): void {
    this.leases.delete(h);
  }

  /** The liveness record of `node`: `<prefix>__liveness/<node>`, attached to the node's lease. */
  private livenessKey(node: string): string {
    return this.keyOf(LIVENESS_KIND, node);
  }

  async holdLiveness(node: string, ttlSeconds: number): Promise<LivenessHold> {
    this.assertOpen();
    return LeaseLivenessHold.start(node, async () => {
      // Renewed by the agent's heartbeat (keepaliveOnce), not by etcd3's own timer.
      const lease = await this.grantLease(ttlSeconds, { autoKeepAlive: false });
      try {
        await this.wrap(
          () =>
            this.client.put(this.livenessKey(node)).value(JSON.stringify({ node })).lease(lease.id).exec(),
          lease.id,
        );
      } catch (e) {
        lease.release();
        throw e;
      }
      return lease;
    });
  }

  async followLiveness(onChange: () => void): Promise<LiveNodes> {
    this.assertOpen();
    const prefix = this.keyOf(LIVENESS_KIND, "");
    const live = new Set<string>();
    let closed = false;
    const relist = async (): Promise<void> => {
      const keys = await this.wrap(() => this.client.getAll().prefix(prefix).keys());
      const now = new Set(keys.map((k) => k.slice(prefix.length)));
      const changed = now.size !== live.size || [...now].some((k) => !live.has(k));
      live.clear();
      for (const k of now) live.add(k);
      if (changed && !closed) onChange();
    };
    // Only puts (a node's record made: a new lease) and deletes (its lease ended) come here:
    // keep-alives write nothing.
    const watcher = this.client.watch().prefix(prefix).watcher();
    watcher.on("put", (kv) => {
      const node = kv.key.toString().slice(prefix.length);
      if (live.has(node)) return;
      live.add(node);
      if (!closed) onChange();
    });
    watcher.on("delete", (kv) => {
      if (live.delete(kv.key.toString().slice(prefix.length)) && !closed) onChange();
    });
    watcher.on("error", () => {});
    await this.wrap(
      () =>
        new Promise<void>((resolve, reject) => {
          watcher.once("connected", () => resolve());
          watcher.once("error", reject);
        }),
    ).catch(async (e: unknown) => {
      await watcher.cancel().catch(() => {});
      throw e;
    });
    await relist();
    // After a reconnect events in between may be missed (etcd3 resumes from the header revision):
    // read the records again.
    watcher.on("connected", () => void relist().catch(() => {}));
    const stop = { close: async () => void (await watcher.cancel().catch(() => {})) };
    this.livenessWatchers.add(stop);
    return {
      has: (node) => live.has(node),
      close: async () => {
        closed = true;
        this.livenessWatchers.delete(stop);
        await stop.close();
      },
    };
  }

  async heartbeats(): Promise<Map<string, string>> {
    this.assertOpen();
    const prefix = this.keyOf(LIVENESS_KIND, "");
    const res = await this.wrap(() => this.client.getAll().prefix(prefix).exec());
    const out = new Map<string, string>();
    await Promise.all(
      res.kvs.map(async (kv) => {
        const lease = String(kv.lease);
        if (lease === "0") return;
        // etcd keeps no renewal time: the lease's granted TTL less what remains of it.
        const t = await this.wrap(() => this.client.leaseClient.leaseTimeToLive({ ID: lease }), lease).catch(
          () => undefined,
        );
        if (t === undefined || Number(t.TTL) <= 0) return;
        const renewed = Date.now() - (Number(t.grantedTTL) - Number(t.TTL)) * 1000;
        out.set(kv.key.toString().slice(prefix.length), new Date(renewed).toISOString());
      }),
    );
    return out;
  }

  private electionPort(): ElectionPort {
    return {
      grantLease: (ttl) => this.grantLease(ttl),
      tryAcquire: (name, identity, leaseId) =>
        this.wrap(async () => {
          const key = this.keyOf(LEADER_KIND, name);
          const r = await this.client
            .if(key, "Create", "==", 0)
            .then(this.client.put(key).value(JSON.stringify({ identity })).lease(leaseId))
            .commit();
          return r.succeeded;
        }, leaseId),
      release: (name, leaseId) =>
        this.wrap(async () => {
          const key = this.keyOf(LEADER_KIND, name);
          await this.client.if(key, "Lease", "==", leaseId).then(this.client.delete().key(key)).commit();
        }),
      waitForChange: async (name, maxWaitMs, signal) => {
        if (signal.aborted) return;
        let w: Watcher | undefined;
        await new Promise<void>((resolve) => {
          const done = (): void => {
            clearTimeout(t);
            signal.removeEventListener("abort", done);
            resolve();
          };
          const t = setTimeout(done, maxWaitMs);
          signal.addEventListener("abort", done, { once: true });
          this.client
            .watch()
            .key(this.keyOf(LEADER_KIND, name))
            .create()
            .then((watcher) => {
              w = watcher;
              watcher.on("data", done);
              watcher.on("error", done);
              // A change may have happened before the watch started: look once.
              void this.client
                .get(this.keyOf(LEADER_KIND, name))
                .then((v) => (v === null ? done() : undefined))
                .catch(done);
            })
            .catch(done);
        });
        await w?.cancel().catch(() => {});
      },
    };
  }

  async campaign(name: string, identity: string, options: CampaignOptions): Promise<LeaderElection> {
    this.assertOpen();
    return this.campaigns.start(this.electionPort(), name, identity, options.ttlSeconds);
  }

  async leader(name: string): Promise<string | undefined> {
    this.assertOpen();
    const v = await this.wrap(() => this.client.get(this.keyOf(LEADER_KIND, name)).string());
    if (v === null) return undefined;
    return (JSON.parse(v) as { identity?: string }).identity;
  }

  async writePolicyStatus(key: string, status: PolicyStatus, options: { revision: string }): Promise<string> {
    this.assertOpen();
    const kind = "encryptionpolicies";
    const ek = this.keyOf(kind, key);
    const kv = (await this.wrap(() => this.client.get(ek).exec())).kvs[0];
    if (kv === undefined) throw new NotFoundError(kind, key);
    if (String(kv.mod_revision) !== options.revision)
      throw new ConflictError(kind, key, options.revision, String(kv.mod_revision));
    let raw: unknown;
    try {
      raw = JSON.parse(kv.value.toString());
    } catch {
      raw = undefined;
    }
    const value = withPolicyStatus(key, raw, status);
    const r = await this.wrap(() =>
      this.client
        .if(ek, "Mod", "==", options.revision)
        .then(this.client.put(ek).value(JSON.stringify(value)).ignoreLease())
        .commit(),
    );
    if (!r.succeeded) throw new ConflictError(kind, key, options.revision, undefined);
    return String(r.header.revision);
  }

  /** @internal */ trackWatch(w: EtcdWatch<unknown>, add: boolean): void {
    if (add) this.watches.add(w);
    else this.watches.delete(w);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.campaigns.stopAll();
    for (const l of this.leases) l.release();
    await Promise.all([...this.watches].map((w) => w.close()));
    await Promise.all([...this.livenessWatchers].map((w) => w.close()));
    this.client.close();
  }
}

class EtcdCollection<K extends ResourceKind> implements Collection<K> {
  constructor(
    private readonly ds: EtcdDatastore,
    readonly kind: K,
  ) {}

  private get kindPrefix(): string {
    return this.ds.keyOf(this.kind, "");
  }

  /** @internal */ decode(kv: IKeyValue): Decoded<K> {
    const key = kv.key.toString().slice(this.kindPrefix.length);
    const lease = kv.lease !== undefined && String(kv.lease) !== "0" ? String(kv.lease) : undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(kv.value.toString());
    } catch {
      raw = undefined;
    }
    return decodeObject(this.kind, key, raw, String(kv.mod_revision), lease);
  }

  async get(key: string): Promise<Stored<ResourceByKind[K]> | undefined> {
    this.ds.assertOpen();
    const res = await this.ds.wrap(() => this.ds.client.get(this.ds.keyOf(this.kind, key)).exec());
    const kv = res.kvs[0];
    if (kv === undefined) return undefined;
    return storedOrThrow(this.decode(kv));
  }

  async list(): Promise<ListResult<ResourceByKind[K]>> {
    this.ds.assertOpen();
    const res = await this.ds.wrap(() =>
      this.ds.client.getAll().prefix(this.kindPrefix).sort("Key", "Ascend").exec(),
    );
    return listResult(
      res.kvs.map((kv) => this.decode(kv)),
      String(res.header.revision),
    );
  }

  private put(etcdKey: string, value: unknown, lease: string | null | undefined) {
    const p = this.ds.client.put(etcdKey).value(JSON.stringify(value));
    if (lease === undefined) return p.ignoreLease();
    if (lease === null) return p;
    return p.lease(lease);
  }

  async create(
    input: ResourceInputByKind[K],
    options: WriteOptions = {},
  ): Promise<Stored<ResourceByKind[K]>> {
    this.ds.assertOpen();
    const { key, value } = encodeObject(this.kind, input);
    const ek = this.ds.keyOf(this.kind, key);
    const lease = options.lease ?? undefined;
    const r = await this.ds.wrap(
      () =>
        this.ds.client
          .if(ek, "Create", "==", 0)
          .then(this.put(ek, value, lease ?? null))
          .commit(),
      lease,
    );
    if (!r.succeeded) throw new AlreadyExistsError(this.kind, key);
    return storedRecord(key, value, String(r.header.revision), lease);
  }

  async update(
    input: ResourceInputByKind[K],
    options: UpdateOptions = {},
  ): Promise<Stored<ResourceByKind[K]>> {
    this.ds.assertOpen();
    const { key, value } = encodeObject(this.kind, input);
    const ek = this.ds.keyOf(this.kind, key);
    const cmp =
      options.revision !== undefined
        ? this.ds.client.if(ek, "Mod", "==", options.revision)
        : this.ds.client.if(ek, "Create", ">", 0);
    // A kept lease is read back in the same transaction, after the put: a read of its own could
    // fail (etcd gone a moment later) after the write succeeded, and the caller would take the
    // update for failed (`rotate --wait` exited 1 with its request written).
    const keepsLease = options.lease === undefined;
    const r = await this.ds.wrap(
      () =>
        cmp
          .then(this.put(ek, value, options.lease), ...(keepsLease ? [this.ds.client.get(ek)] : []))
          .else(this.ds.client.get(ek))
          .commit(),
      options.lease ?? undefined,
    );
    if (!r.succeeded) {
      const kv = r.responses[0]?.response_range?.kvs[0];
      if (options.revision === undefined) throw new NotFoundError(this.kind, key);
      throw new ConflictError(this.kind, key, options.revision, kv ? String(kv.mod_revision) : undefined);
    }
    let lease: string | undefined;
    if (keepsLease) {
      const kv = r.responses[1]?.response_range?.kvs[0];
      lease =
        kv && String(kv.lease) !== "0" && String(kv.mod_revision) === String(r.header.revision)
          ? String(kv.lease)
          : undefined;
    } else lease = options.lease ?? undefined;
    return storedRecord(key, value, String(r.header.revision), lease);
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<void> {
    this.ds.assertOpen();
    const ek = this.ds.keyOf(this.kind, key);
    const cmp =
      options.revision !== undefined
        ? this.ds.client.if(ek, "Mod", "==", options.revision)
        : this.ds.client.if(ek, "Create", ">", 0);
    const r = await this.ds.wrap(() =>
      cmp.then(this.ds.client.delete().key(ek)).else(this.ds.client.get(ek)).commit(),
    );
    if (!r.succeeded) {
      const kv = r.responses[0]?.response_range?.kvs[0];
      if (options.revision === undefined || kv === undefined) {
        if (options.revision === undefined) throw new NotFoundError(this.kind, key);
        throw new ConflictError(this.kind, key, options.revision, undefined);
      }
      throw new ConflictError(this.kind, key, options.revision, String(kv.mod_revision));
    }
  }

  async watch(fromRevision: string, listener: WatchListener<ResourceByKind[K]>): Promise<Watch> {
    this.ds.assertOpen();
    const w = new EtcdWatch<ResourceByKind[K]>(
      this.ds,
      this as unknown as EtcdCollection<ResourceKind>,
      this.kindPrefix,
      BigInt(fromRevision),
      listener,
    );
    this.ds.trackWatch(w as EtcdWatch<unknown>, true);
    try {
      await w.start();
    } catch (e) {
      this.ds.trackWatch(w as EtcdWatch<unknown>, false);
      throw this.ds.mapError(e);
    }
    return w;
  }
}

class EtcdWatch<T> implements Watch {
  private last: bigint;
  private watcher: Watcher | undefined;
  private closed = false;
  private serverCanceled = false;
  private readonly queue: SerialQueue;

  constructor(
    private readonly ds: EtcdDatastore,
    private readonly coll: EtcdCollection<ResourceKind>,
    private readonly prefix: string,
    from: bigint,
    private readonly listener: WatchListener<T>,
  ) {
    this.last = from;
    this.queue = new SerialQueue((e) => listener.error?.(e instanceof Error ? e : new Error(String(e))));
  }

  get revision(): string {
    return String(this.last);
  }

  async start(): Promise<void> {
    const w = this.ds.client
      .watch()
      .prefix(this.prefix)
      .startRevision(String(this.last + 1n))
      .watcher();
    this.watcher = w;
    // etcd3 moves its own start revision to the header revision on (re)connect, which can skip
    // events in flight; we always resume right after the last revision we delivered instead.
    w.on("connecting", (req) => {
      (req as { start_revision?: unknown }).start_revision = String(this.last + 1n);
    });
    w.on("data", (res) => {
      if (this.closed) return;
      if (res.compact_revision !== undefined && String(res.compact_revision) !== "0" && res.canceled)
        return this.goneAt(String(res.compact_revision));
      for (const ev of res.events) {
        const kv = ev.kv;
        const rev = BigInt(String(kv.mod_revision));
        if (rev <= this.last) continue; // duplicate after a reconnect
        this.last = rev;
        const e = this.toEvent(ev.type, kv);
        this.queue.push(() => this.listener.event(e));
      }
    });
    w.on("disconnected", (err: Error) =>
      this.listener.error?.(new UnavailableError("etcd watch disconnected", { cause: err })),
    );
    w.on("error", (err: Error) => {
      // etcd cancels a watch whose start revision was compacted (3.4 may send no reason); any
      // server-side cancel leaves the consumer behind, so it relists.
      if (/compacted|Watcher canceled/i.test(err.message)) this.goneAt(undefined);
      else this.listener.error?.(this.ds.mapError(err));
    });
    await new Promise<void>((resolve, reject) => {
      w.once("connected", () => resolve());
      w.once("error", reject);
    });
  }

  private goneAt(compact: string | undefined): void {
    if (this.closed) return;
    const err = new RevisionGoneError(
      this.coll.kind,
      String(this.last),
      compact === undefined ? {} : { compactRevision: compact },
    );
    // The server already dropped this watcher: etcd3's cancel() would wait for a reply forever.
    this.serverCanceled = true;
    void this.close().then(() => this.listener.gone(err));
  }

  private toEvent(type: string, kv: IKeyValue): WatchEvent<T> {
    const key = kv.key.toString().slice(this.prefix.length);
    const revision = String(kv.mod_revision);
    if (type === "Delete") return { type: "DELETED", key, revision };
    const added = String(kv.create_revision) === String(kv.mod_revision);
    return changeEvent(this.coll.decode(kv), key, revision, added) as WatchEvent<T>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ds.trackWatch(this as EtcdWatch<unknown>, false);
    if (!this.serverCanceled) await this.watcher?.cancel().catch(() => {});
    await this.queue.close();
  }
}

class EtcdLeaseHandle implements Lease {
  private readonly lostCbs = new Set<(e: DatastoreError) => void>();
  private released = false;

  constructor(
    private readonly ds: EtcdDatastore,
    private readonly lease: EtcdLease,
    readonly id: string,
    readonly ttlSeconds: number,
  ) {
    lease.on("lost", (err) => {
      if (this.released) return;
      const e = new LeaseExpiredError(id, { cause: err });
      for (const cb of this.lostCbs) cb(e);
      this.lostCbs.clear();
    });
  }

  async keepAlive(): Promise<void> {
    const r = await this.ds.wrap(() => this.lease.keepaliveOnce(), this.id);
    if (Number(r.TTL) <= 0) throw new LeaseExpiredError(this.id);
  }

  async revoke(): Promise<void> {
    this.released = true;
    this.lostCbs.clear();
    this.ds.forgetLease(this);
    await this.ds
      .wrap(() => this.lease.revoke(), this.id)
      .catch((e: unknown) => {
        if (!(e instanceof LeaseExpiredError)) throw e;
      });
  }

  release(): void {
    this.released = true;
    this.ds.forgetLease(this);
    this.lease.release();
  }

  onLost(cb: (err: DatastoreError) => void): () => void {
    this.lostCbs.add(cb);
    return () => this.lostCbs.delete(cb);
  }
}
