import { watch as fsWatch, type FSWatcher } from "node:fs";
import {
  appendFile,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  truncate,
  unlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Clock } from "../../clock.js";
import type { Backing, JournalEntry, RawLease, RawRecord, Tx } from "../journal/backing.js";
import { JournalDatastore } from "../journal/engine.js";
import { FileLock } from "./lock.js";

/** Options of the local (state directory) datastore. */
export interface LocalDatastoreOptions {
  /** The state directory (made with mode 0700 if absent). */
  dir: string;
  clock?: Clock;
  /** Journal entries kept before the oldest half is compacted. Default 10000. */
  maxJournalEntries?: number;
  /** Rescan period (ms), the fallback when fs.watch misses a change. Default 250. */
  pollIntervalMs?: number;
  /** Expired-lease sweep period (ms). Default 200. */
  sweepIntervalMs?: number;
}

interface State {
  revision: number;
  compactedThrough: number;
  /** Journal bytes covered by `revision`; more bytes mean a writer died after its commit point. */
  journalSize: number;
}

/** Writes `data` to `path` atomically (temp file + rename), mode 0600. */
export async function writeFileAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  await writeFile(tmp, data, { mode: 0o600 });
  await rename(tmp, path);
}

const encodeKey = (key: string): string => encodeURIComponent(key).replace(/\./g, "%2E");
const decodeKey = (file: string): string => decodeURIComponent(file.slice(0, -".json".length));

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/**
 * Files in a state directory, shared by several processes on one machine:
 *   lock                 the O_EXCL lock every write holds (FileLock)
 *   state.json           {revision, compactedThrough, journalSize}
 *   journal.jsonl        one JSON change per line; appending it is a transaction's commit point
 *   objects/KIND/K.json  {key, value, revision, lease}
 *   leases/ID.json       {id, ttlSeconds, expiresAt}
 * Every file is written atomically with mode 0600. A writer that died after appending the journal
 * but before updating objects is repaired by the next writer, which replays the journal tail.
 */
export class FileBacking implements Backing {
  private readonly lock: FileLock;
  private inProcess: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<() => void>();
  private watcher: FSWatcher | undefined;
  private poller: NodeJS.Timeout | undefined;
  private lastSeen = { ino: -1, size: -1 };
  /** Journal mirror: entries read so far, from the file with inode `ino` up to byte `offset`. */
  private cache: { ino: number; offset: number; entries: JournalEntry[] } = {
    ino: -1,
    offset: 0,
    entries: [],
  };
  private readonly maxJournalEntries: number;

  private constructor(
    readonly dir: string,
    options: LocalDatastoreOptions,
  ) {
    this.lock = new FileLock(join(dir, "lock"));
    this.maxJournalEntries = options.maxJournalEntries ?? 10_000;
  }

  /** Opens (creating if needed) the state directory. */
  static async open(options: LocalDatastoreOptions): Promise<FileBacking> {
    const b = new FileBacking(options.dir, options);
    await mkdir(join(options.dir, "objects"), { recursive: true, mode: 0o700 });
    await mkdir(join(options.dir, "leases"), { recursive: true, mode: 0o700 });
    await b.transaction(async () => {}); // creates state.json / repairs a crashed writer
    b.watcher = fsWatch(options.dir, { persistent: false }, (_ev, file) => {
      if (file === null || file === "journal.jsonl") b.notify();
    });
    b.watcher.on("error", () => {});
    b.poller = setInterval(() => void b.poll(), options.pollIntervalMs ?? 250);
    b.poller.unref();
    return b;
  }

  private get journalPath(): string {
    return join(this.dir, "journal.jsonl");
  }
  private objectPath(kind: string, key: string): string {
    return join(this.dir, "objects", encodeKey(kind), `${encodeKey(key)}.json`);
  }
  private leasePath(id: string): string {
    return join(this.dir, "leases", `${encodeKey(id)}.json`);
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  private async poll(): Promise<void> {
    try {
      const st = await stat(this.journalPath);
      if (st.ino !== this.lastSeen.ino || st.size !== this.lastSeen.size) {
        this.lastSeen = { ino: st.ino, size: st.size };
        this.notify();
      }
    } catch {
      /* not yet written */
    }
  }

  private async readState(): Promise<State> {
    return (
      (await readJson<State>(join(this.dir, "state.json"))) ?? {
        revision: 0,
        compactedThrough: 0,
        journalSize: 0,
      }
    );
  }

  /** Replays journal bytes past `st.journalSize` (a writer died after its commit point). */
  private async repair(st: State): Promise<State> {
    let size = 0;
    try {
      size = (await stat(this.journalPath)).size;
    } catch {
      return st;
    }
    if (size <= st.journalSize) return st;
    const tail = (await readFile(this.journalPath)).subarray(st.journalSize);
    const end = tail.lastIndexOf(0x0a) + 1;
    if (end < tail.length) await truncate(this.journalPath, st.journalSize + end); // torn last line
    let revision = st.revision;
    for (const line of tail.subarray(0, end).toString("utf8").split("\n")) {
      if (line === "") continue;
      const e = JSON.parse(line) as JournalEntry;
      await this.applyEntry(e);
      revision = Math.max(revision, e.rev);
    }
    const fixed = { ...st, revision, journalSize: st.journalSize + end };
    await writeFileAtomic(join(this.dir, "state.json"), JSON.stringify(fixed));
    return fixed;
  }

  private async applyEntry(e: JournalEntry): Promise<void> {
    const p = this.objectPath(e.kind, e.key);
    if (e.type === "DELETE") {
      await unlink(p).catch(() => {});
      return;
    }
    await mkdir(join(this.dir, "objects", encodeKey(e.kind)), { recursive: true, mode: 0o700 });
    const rec: RawRecord = {
      kind: e.kind,
      key: e.key,
      value: e.value,
      revision: e.rev,
      ...(e.lease !== undefined ? { lease: e.lease } : {}),
    };
    await writeFileAtomic(p, JSON.stringify(rec));
  }

  transaction<R>(fn: (tx: Tx) => Promise<R>): Promise<R> {
    const run = this.inProcess.then(() => this.locked(fn));
    this.inProcess = run.catch(() => {});
    return run;
  }

  private async locked<R>(fn: (tx: Tx) => Promise<R>): Promise<R> {
    await this.lock.acquire();
    try {
      const st = await this.repair(await this.readState());
      const overlay = new Map<string, RawRecord | null>();
      const entries: JournalEntry[] = [];
      const leaseWrites: (() => Promise<void>)[] = [];
      const leaseOverlay = new Map<string, RawLease | null>();
      let revision = st.revision;
      const ok = (kind: string, key: string): string => `${kind}\u0000${key}`;
      const get = async (kind: string, key: string): Promise<RawRecord | undefined> => {
        const o = overlay.get(ok(kind, key));
        if (o !== undefined) return o ?? undefined;
        return readJson<RawRecord>(this.objectPath(kind, key));
      };
      const list = async (kind: string): Promise<RawRecord[]> => {
        let files: string[] = [];
        try {
          files = await readdir(join(this.dir, "objects", encodeKey(kind)));
        } catch {
          /* no objects of this kind yet */
        }
        const keys = new Set(files.filter((f) => f.endsWith(".json")).map(decodeKey));
        for (const [k, v] of overlay) {
          const [kk, key] = k.split("\u0000") as [string, string];
          if (kk !== kind) continue;
          if (v === null) keys.delete(key);
          else keys.add(key);
        }
        const out: RawRecord[] = [];
        for (const key of keys) {
          const r = await get(kind, key);
          if (r !== undefined) out.push(r);
        }
        return out;
      };
      const tx: Tx = {
        get revision() {
          return revision;
        },
        get,
        list,
        listByLease: async (leaseId) => {
          let kinds: string[] = [];
          try {
            kinds = (await readdir(join(this.dir, "objects"))).map((k) => decodeURIComponent(k));
          } catch {
            /* none */
          }
          for (const k of overlay.keys()) kinds.push(k.split("\u0000")[0]!);
          const out: RawRecord[] = [];
          for (const kind of new Set(kinds))
            out.push(...(await list(kind)).filter((r) => r.lease === leaseId));
          return out;
        },
        put: async (kind, key, value, lease) => {
          const created = (await get(kind, key)) === undefined;
          revision++;
          const rec: RawRecord = { kind, key, value, revision, ...(lease !== undefined ? { lease } : {}) };
          overlay.set(ok(kind, key), rec);
          entries.push({
            rev: revision,
            kind,
            key,
            type: "PUT",
            created,
            value,
            ...(lease !== undefined ? { lease } : {}),
          });
          return rec;
        },
        delete: async (kind, key) => {
          if ((await get(kind, key)) === undefined) return;
          revision++;
          overlay.set(ok(kind, key), null);
          entries.push({ rev: revision, kind, key, type: "DELETE" });
        },
        getLease: async (id) => {
          const o = leaseOverlay.get(id);
          if (o !== undefined) return o ?? undefined;
          return readJson<RawLease>(this.leasePath(id));
        },
        putLease: async (l) => {
          leaseOverlay.set(l.id, l);
          leaseWrites.push(() => writeFileAtomic(this.leasePath(l.id), JSON.stringify(l)));
        },
        deleteLease: async (id) => {
          leaseOverlay.set(id, null);
          leaseWrites.push(() => unlink(this.leasePath(id)).catch(() => {}));
        },
      };
      const result = await fn(tx);
      let next = st;
      if (entries.length > 0) {
        const text = entries.map((e) => JSON.stringify(e) + "\n").join("");
        await appendFile(this.journalPath, text, { mode: 0o600 }); // commit point
        for (const e of entries) await this.applyEntry(e);
        next = { ...st, revision, journalSize: st.journalSize + Buffer.byteLength(text) };
      }
      for (const w of leaseWrites) await w();
      if (entries.length > 0) {
        if (this.cacheCountHint(next) > this.maxJournalEntries) next = await this.compact(next);
        await writeFileAtomic(join(this.dir, "state.json"), JSON.stringify(next));
        this.notify();
      } else if (st.journalSize === 0 && st.revision === 0) {
        await writeFileAtomic(join(this.dir, "state.json"), JSON.stringify(next));
      }
      return result;
    } finally {
      await this.lock.release();
    }
  }

  private cacheCountHint(st: State): number {
    return st.revision - st.compactedThrough;
  }

  /** Keeps the newest half of the journal; readers behind it get `gone`. Runs under the lock. */
  private async compact(st: State): Promise<State> {
    const lines = (await readFile(this.journalPath, "utf8")).split("\n").filter((l) => l !== "");
    const keep = lines.slice(-Math.floor(this.maxJournalEntries / 2));
    const firstKept = JSON.parse(keep[0]!) as JournalEntry;
    const text = keep.map((l) => l + "\n").join("");
    await writeFileAtomic(this.journalPath, text);
    return { ...st, compactedThrough: firstKept.rev - 1, journalSize: Buffer.byteLength(text) };
  }

  async getRecord(kind: string, key: string): Promise<RawRecord | undefined> {
    return readJson<RawRecord>(this.objectPath(kind, key));
  }

  async listLeases(): Promise<RawLease[]> {
    let files: string[] = [];
    try {
      files = await readdir(join(this.dir, "leases"));
    } catch {
      return [];
    }
    const out: RawLease[] = [];
    for (const f of files.filter((x) => x.endsWith(".json"))) {
      const l = await readJson<RawLease>(join(this.dir, "leases", f)).catch(() => undefined);
      if (l !== undefined) out.push(l);
    }
    return out;
  }

  /**
   * Serialised: two watches of one process read the journal concurrently, and both advancing the
   * shared mirror's offset would make the next read start mid-line.
   */
  async readJournal(afterRev: number): Promise<{ entries: JournalEntry[]; compactedThrough: number }> {
    const result = this.journalRead.then(() => this.readJournalNow(afterRev));
    this.journalRead = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  private journalRead: Promise<void> = Promise.resolve();

  private async readJournalNow(
    afterRev: number,
  ): Promise<{ entries: JournalEntry[]; compactedThrough: number }> {
    const st = await this.readState();
    let fh;
    try {
      fh = await open(this.journalPath, "r");
    } catch {
      return { entries: [], compactedThrough: st.compactedThrough };
    }
    try {
      const s = await fh.stat();
      if (s.ino !== this.cache.ino || s.size < this.cache.offset)
        this.cache = { ino: s.ino, offset: 0, entries: [] };
      if (s.size > this.cache.offset) {
        const buf = Buffer.alloc(s.size - this.cache.offset);
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.cache.offset);
        const chunk = buf.subarray(0, bytesRead);
        const end = chunk.lastIndexOf(0x0a) + 1; // only complete lines
        for (const line of chunk.subarray(0, end).toString("utf8").split("\n"))
          if (line !== "") this.cache.entries.push(JSON.parse(line) as JournalEntry);
        this.cache.offset += end;
        if (this.cache.entries.length > this.maxJournalEntries)
          this.cache.entries = this.cache.entries.slice(-this.maxJournalEntries);
      }
    } finally {
      await fh.close();
    }
    const first = this.cache.entries[0];
    // Entries older than the mirror's first one are gone from it: treat them as compacted.
    const compactedThrough = Math.max(st.compactedThrough, first !== undefined ? first.rev - 1 : 0);
    return { entries: this.cache.entries.filter((e) => e.rev > afterRev), compactedThrough };
  }

  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  async close(): Promise<void> {
    this.watcher?.close();
    if (this.poller !== undefined) clearInterval(this.poller);
    this.listeners.clear();
    await this.inProcess;
  }
}

/**
 * The `local` datastore (embedded default): a state directory shared by the controller and the
 * agents of one machine. Changes reach other processes through fs.watch, with a periodic rescan as
 * the fallback; writes are serialised by a lock file; leases are files with an expiry time that
 * every open store sweeps.
 */
export class LocalDatastore extends JournalDatastore {
  private constructor(backing: FileBacking, options: LocalDatastoreOptions) {
    super("local", backing, {
      ...(options.clock ? { clock: options.clock } : {}),
      pollIntervalMs: options.pollIntervalMs ?? 250,
      sweepIntervalMs: options.sweepIntervalMs ?? 200,
    });
  }

  /** Opens the store in `options.dir`, creating the directory if needed. */
  static async open(options: LocalDatastoreOptions): Promise<LocalDatastore> {
    return new LocalDatastore(await FileBacking.open(options), options);
  }
}
