/**
 * The node's private keys on disk, one file per epoch: `<dir>/epoch-<n>.key` holding the base64
 * private key. Files are 0600 in a 0700 directory and written atomically (temp file, fsync,
 * rename, fsync of the directory: CONTRIBUTING.md), so a crash leaves the old file or the new
 * one, never half of one. After a restart `load` finds every epoch again; `retire` unlinks.
 */
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { RandomBytes } from "../clock.js";
import { isPodcryptError, PodcryptError, ValidationError } from "../errors/index.js";
import { decodeKey, encodeKey, generateKeyPair, publicFromPrivate, type NodeKeyPair } from "./x25519.js";

const FILE_RE = /^epoch-([1-9][0-9]{0,15})\.key$/;
const TEMP_RE = /^\.epoch-.*\.tmp$/;

function fileName(epoch: number): string {
  if (!Number.isSafeInteger(epoch) || epoch < 1)
    throw new ValidationError("epoch", "must be a positive integer");
  return `epoch-${epoch}.key`;
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === code;
}

/**
 * What the store tells its owner about a key file it could not use: `quarantined` when a file was
 * unreadable as a key (corrupt, or open to group or others) and moved aside to `movedTo` (0600,
 * kept for a person to look at) before a fresh key takes its place. Never carries key material.
 */
export interface KeyFileWarning {
  kind: "quarantined";
  epoch: number;
  file: string;
  movedTo: string;
  /** What was wrong with the file, e.g. "key file is readable by group or others (must be 0600)". */
  reason: string;
}

/** Errors that mean "this file is not a usable key", as opposed to I/O failures. */
function isUnusableKey(e: unknown): boolean {
  return e instanceof ValidationError || (isPodcryptError(e) && e.code === "EKEYPERM");
}

/** Turns a disk-full write failure into an error that says so and names the file. */
function writeError(e: unknown, file: string): unknown {
  if (isErrno(e, "ENOSPC") || isErrno(e, "EDQUOT"))
    return new PodcryptError("ENOSPC", `cannot write key file ${file}: the disk is full`, {
      context: { file },
      cause: e,
    });
  return e;
}

/**
 * Refuses a key file readable or writable by group or others (PodcryptError "EKEYPERM"): the key
 * may have leaked, so it is not used. Throws ENOENT when the file is absent.
 */
async function checkKeyFileMode(file: string): Promise<void> {
  const st = await fs.stat(file);
  if ((st.mode & 0o077) !== 0) {
    throw new PodcryptError("EKEYPERM", "key file is readable by group or others (must be 0600)", {
      context: { file, mode: (st.mode & 0o777).toString(8) },
    });
  }
}

export class KeyStore {
  private readonly pairs = new Map<number, NodeKeyPair>();
  /** Calls of `ensure` in flight, so concurrent callers get the same key. */
  private readonly pending = new Map<number, Promise<NodeKeyPair>>();

  /**
   * `dir` is created (0700) on first use; `random` makes the private keys; `warn` hears of key files
   * that were moved aside (default: nobody).
   */
  constructor(
    readonly dir: string,
    private readonly random: RandomBytes = cryptoRandomBytes,
    private readonly warn: (w: KeyFileWarning) => void = () => undefined,
  ) {}

  /**
   * Reads every epoch file (after a restart). Removes temp files a crash left behind. A file that
   * is not a usable key (corrupt, or readable by group or others, so the key may have leaked) is
   * moved aside with a warning and not loaded: `ensure` then makes a fresh key for that epoch, and
   * the node's pairs re-key as after a deletion. Returns the epochs found, ascending.
   */
  async load(): Promise<number[]> {
    await this.ensureDir();
    this.pairs.clear();
    for (const name of await fs.readdir(this.dir)) {
      if (TEMP_RE.test(name)) {
        await fs.rm(path.join(this.dir, name), { force: true });
        continue;
      }
      const m = FILE_RE.exec(name);
      if (m === null) continue;
      const epoch = Number(m[1]);
      const pair = await this.read(epoch, path.join(this.dir, name));
      if (pair !== undefined) this.pairs.set(epoch, pair);
    }
    return this.epochs();
  }

  /** Epochs held, ascending. */
  epochs(): number[] {
    return [...this.pairs.keys()].sort((a, b) => a - b);
  }

  /** The key pair of `epoch`, if held. */
  get(epoch: number): NodeKeyPair | undefined {
    return this.pairs.get(epoch);
  }

  /**
   * The key pair of `epoch`, made and stored if it does not exist yet. Idempotent: an existing
   * usable key (in memory or on disk) is never replaced, so a retried "prepare" keeps the published
   * key; an unusable file is moved aside (see `load`). A full disk is a PodcryptError "ENOSPC"
   * naming the file, and leaves any earlier file as it was.
   */
  async ensure(epoch: number): Promise<NodeKeyPair> {
    const have = this.pairs.get(epoch);
    if (have !== undefined) return have;
    let p = this.pending.get(epoch);
    if (p === undefined) {
      p = this.make(epoch).finally(() => this.pending.delete(epoch));
      this.pending.set(epoch, p);
    }
    return p;
  }

  private async make(epoch: number): Promise<NodeKeyPair> {
    const file = path.join(this.dir, fileName(epoch));
    await this.ensureDir();
    const existing = await this.read(epoch, file);
    if (existing !== undefined) {
      this.pairs.set(epoch, existing);
      return existing;
    }
    const pair = generateKeyPair(this.random);
    await this.writeAtomic(file, `${encodeKey(pair.privateKey)}\n`);
    this.pairs.set(epoch, pair);
    return pair;
  }

  /**
   * The key in `file`, or undefined when there is none or it was unusable and has been moved aside
   * to `<file>.corrupt-<time>` (0600). I/O errors other than "absent" are thrown.
   */
  private async read(epoch: number, file: string): Promise<NodeKeyPair | undefined> {
    try {
      await checkKeyFileMode(file);
      const privateKey = decodeKey(await fs.readFile(file, "utf8"), file);
      return { privateKey, publicKey: publicFromPrivate(privateKey) };
    } catch (e) {
      if (isErrno(e, "ENOENT")) return undefined;
      if (!isUnusableKey(e)) throw e;
      const movedTo = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
      await fs.chmod(file, 0o600);
      await fs.rename(file, movedTo);
      this.warn({ kind: "quarantined", epoch, file, movedTo, reason: (e as Error).message });
      return undefined;
    }
  }

  /** Unlinks the key of `epoch` (retire). Absent is not an error. */
  async retire(epoch: number): Promise<void> {
    await fs.rm(path.join(this.dir, fileName(epoch)), { force: true });
    this.pairs.delete(epoch);
  }

  /** Retires every epoch below `epoch`. Returns the epochs removed. */
  async retireBefore(epoch: number): Promise<number[]> {
    const old = this.epochs().filter((e) => e < epoch);
    for (const e of old) await this.retire(e);
    return old;
  }

  /**
   * Creates the directory 0700, and brings a directory that already existed (mkdir keeps its mode)
   * to 0700 as well, so no other user can list or replace the key files.
   */
  private async ensureDir(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const st = await fs.stat(this.dir);
    if ((st.mode & 0o777) !== 0o700) await fs.chmod(this.dir, 0o700);
  }

  private async writeAtomic(file: string, content: string): Promise<void> {
    const tmp = path.join(this.dir, `.${path.basename(file)}.${cryptoRandomBytes(6).toString("hex")}.tmp`);
    const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL;
    try {
      const fh = await fs.open(tmp, flags, 0o600);
      try {
        await fh.writeFile(content);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, file);
    } catch (e) {
      await fs.rm(tmp, { force: true });
      throw writeError(e, file);
    }
    const d = await fs.open(this.dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
