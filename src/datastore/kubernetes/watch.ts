import { Watch as KubeWatchClient, type KubeConfig } from "@kubernetes/client-node";
import type { KubeObject } from "./mapping.js";

/** The event types of a Kubernetes watch stream that carry objects. */
export type KubeEventType = "ADDED" | "MODIFIED" | "DELETED";

/** Callbacks of a ResumableWatch. */
export interface ResumableWatchHandlers {
  /** One ADDED/MODIFIED/DELETED event, in order. */
  event(type: KubeEventType, obj: KubeObject): void;
  /** The server answered 410 Gone: the watch stopped; relist. */
  gone(cause: unknown): void;
  /** A connection ended with an error; the watch reconnects after `retryMs`. */
  error(err: unknown): void;
}

/** Options of a ResumableWatch. */
export interface ResumableWatchOptions {
  labelSelector?: string;
  /** Delay before reconnecting after an error. Default 500 ms. */
  retryMs?: number;
}

/**
 * A Kubernetes watch that survives connection loss: it asks for bookmarks
 * (`allowWatchBookmarks=true`), keeps the resourceVersion of the last event or bookmark, and
 * reconnects from it. When the server no longer has that resourceVersion (410 Gone, as an ERROR
 * event or an HTTP status) it stops and calls `gone`: the caller relists.
 */
export class ResumableWatch {
  private resourceVersion: string;
  private abort: AbortController | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly client: KubeWatchClient;

  constructor(
    config: KubeConfig,
    private readonly path: string,
    from: string,
    private readonly handlers: ResumableWatchHandlers,
    private readonly options: ResumableWatchOptions = {},
  ) {
    this.client = new KubeWatchClient(config);
    this.resourceVersion = from;
  }

  /** The resourceVersion it would resume from: the last event's or bookmark's. */
  get revision(): string {
    return this.resourceVersion;
  }

  /** Opens the first connection; resolves once the server accepted the watch. */
  async start(): Promise<void> {
    await this.connect(true);
  }

  private async connect(first: boolean): Promise<void> {
    if (this.closed) return;
    let gone = false;
    const query: Record<string, string> = {
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: "true",
    };
    if (this.options.labelSelector !== undefined) query["labelSelector"] = this.options.labelSelector;
    const onEvent = (type: string, obj: KubeObject & { code?: number }): void => {
      if (this.closed) return;
      if (type === "ERROR") {
        if (obj.code === 410) gone = true;
        return;
      }
      const rv = obj.metadata?.resourceVersion;
      if (type !== "BOOKMARK") this.handlers.event(type as KubeEventType, obj);
      if (rv !== undefined && rv !== "") this.resourceVersion = rv;
    };
    const onDone = (err: unknown): void => {
      if (this.closed) return;
      this.abort = undefined;
      if (gone || (err as { statusCode?: number } | null)?.statusCode === 410) {
        this.closed = true;
        this.handlers.gone(err);
        return;
      }
      if (err !== null && err !== undefined && (err as Error).name !== "AbortError") this.handlers.error(err);
      this.retryTimer = setTimeout(
        () => void this.connect(false),
        err === null ? 0 : (this.options.retryMs ?? 500),
      );
    };
    try {
      this.abort = await this.client.watch(this.path, query, onEvent, onDone);
      if (this.closed) this.abort.abort();
    } catch (e) {
      if (first) throw e;
      onDone(e);
    }
  }

  /** Stops; no event is delivered afterwards. */
  close(): void {
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.abort?.abort();
  }
}

/** What an Informer reports. */
export interface InformerHandlers {
  /** An object appeared (on first list, relist or watch). */
  added?(obj: KubeObject): void;
  /** An object changed (its resourceVersion differs from the cached one). */
  modified?(obj: KubeObject, old: KubeObject): void;
  /** An object went (watch DELETED, or absent from a relist). */
  deleted?(obj: KubeObject): void;
  /** After each (re)list: the cache is complete. */
  synced?(): void;
  /** A transient error (list failed, watch broke); the informer retries. */
  error?(err: unknown): void;
}

/**
 * List-then-watch cache of one collection that relists on 410 Gone, diffing the new list against
 * its cache so consumers see added/modified/deleted as if nothing had been missed (the
 * client-go reflector's contract). Keys are `namespace/name`.
 */
export class Informer {
  private readonly cache = new Map<string, KubeObject>();
  private watch: ResumableWatch | undefined;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  /** How many lists it made (1 + relists). */
  lists = 0;

  constructor(
    private readonly config: KubeConfig,
    private readonly path: string,
    private readonly listFn: () => Promise<{ items: KubeObject[]; resourceVersion: string }>,
    private readonly handlers: InformerHandlers,
    private readonly options: ResumableWatchOptions = {},
  ) {}

  private static key(o: KubeObject): string {
    return `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;
  }

  /** The cached objects. */
  objects(): KubeObject[] {
    return [...this.cache.values()];
  }

  /** Lists, fills the cache, starts watching. Resolves after the first sync. */
  async start(): Promise<void> {
    await this.relist();
  }

  private async relist(): Promise<void> {
    if (this.closed) return;
    const { items, resourceVersion } = await this.listFn();
    this.lists++;
    const seen = new Set<string>();
    for (const o of items) {
      const k = Informer.key(o);
      seen.add(k);
      this.apply("ADDED", o);
    }
    for (const [k, o] of [...this.cache]) {
      if (!seen.has(k)) {
        this.cache.delete(k);
        this.handlers.deleted?.(o);
      }
    }
    this.handlers.synced?.();
    const w = new ResumableWatch(
      this.config,
      this.path,
      resourceVersion,
      {
        event: (type, obj) => this.apply(type, obj),
        gone: () => this.scheduleRelist(0),
        error: (e) => this.handlers.error?.(e),
      },
      this.options,
    );
    this.watch = w;
    await w.start();
  }

  private scheduleRelist(delayMs: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.relist().catch((e: unknown) => {
        this.handlers.error?.(e);
        this.scheduleRelist(this.options.retryMs ?? 500);
      });
    }, delayMs);
  }

  private apply(type: "ADDED" | "MODIFIED" | "DELETED", obj: KubeObject): void {
    const k = Informer.key(obj);
    const old = this.cache.get(k);
    if (type === "DELETED") {
      if (old === undefined) return;
      this.cache.delete(k);
      this.handlers.deleted?.(obj);
      return;
    }
    this.cache.set(k, obj);
    if (old === undefined) this.handlers.added?.(obj);
    else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion)
      this.handlers.modified?.(obj, old);
  }

  /** Stops watching. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.watch?.close();
  }
}
