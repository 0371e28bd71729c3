import { open, readFile, stat, unlink } from "node:fs/promises";

/** Options of FileLock. */
export interface FileLockOptions {
  /** A lock older than this (ms) is stale even if its pid looks alive (pid reuse). Default 10000. */
  staleMs?: number;
  /** Give up after this long (ms). Default 30000. */
  timeoutMs?: number;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A cross-process lock file created with O_EXCL, holding "pid timestamp". A lock whose process is
 * gone, or that is older than `staleMs` (no holder keeps it that long), is broken.
 */
export class FileLock {
  private readonly staleMs: number;
  private readonly timeoutMs: number;

  constructor(
    readonly path: string,
    options: FileLockOptions = {},
  ) {
    this.staleMs = options.staleMs ?? 10_000;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Takes the lock, waiting (with backoff) while another live holder has it. */
  async acquire(): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    let backoff = 1;
    for (;;) {
      try {
        const fh = await open(this.path, "wx", 0o600);
        await fh.writeFile(`${process.pid} ${Date.now()}\n`);
        await fh.close();
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      if (await this.isStale()) {
        await unlink(this.path).catch(() => {});
        continue;
      }
      if (Date.now() > deadline) throw new Error(`lock ${this.path} still held after ${this.timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, backoff));
      // Waiters that poll fast take the CPU from the holder on a loaded machine (the test VM):
      // back off to 100 ms, still short next to a heartbeat.
      backoff = Math.min(100, backoff * 2);
    }
  }

  private async isStale(): Promise<boolean> {
    try {
      const [content, st] = await Promise.all([readFile(this.path, "utf8"), stat(this.path)]);
      const pid = Number(content.split(" ")[0]);
      if (Number.isInteger(pid) && pid > 0 && !pidAlive(pid)) return true;
      return Date.now() - st.mtimeMs > this.staleMs;
    } catch {
      return false; // vanished or half-written: retry
    }
  }

  /** Releases the lock. */
  async release(): Promise<void> {
    await unlink(this.path).catch(() => {});
  }
}
