/**
 * Starts Debian's etcd (`/usr/bin/etcd`) on 127.0.0.1 with free ports and a temp data dir, for
 * tests. `stop()` kills it and removes the dir; `restart()` keeps the data.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

/** A running test etcd. */
export class EtcdTestServer {
  private proc: ChildProcess | undefined;
  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
  ) {}

  /** The client URL. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  /** Starts a fresh etcd. */
  static async start(): Promise<EtcdTestServer> {
    const dir = await mkdtemp(join(tmpdir(), "podcrypt-etcd-"));
    const s = new EtcdTestServer(dir, await freePort(), await freePort());
    await s.launch();
    return s;
  }

  private async launch(): Promise<void> {
    const url = this.endpoint;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const proc = spawn(
      "/usr/bin/etcd",
      [
        "--name=test",
        `--data-dir=${join(this.dataDir, "data")}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=test=${peer}`,
        "--log-level=error",
        "--logger=zap",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    this.proc = proc;
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`etcd exited (${proc.exitCode}): ${stderr}`);
      try {
        const r = await fetch(`${url}/health`);
        if (r.ok && ((await r.json()) as { health?: string }).health === "true") return;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async kill(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p === undefined || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGKILL");
    });
  }

  /** Kills etcd and starts it again on the same ports and data. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** Kills etcd and removes its data. */
  async stop(): Promise<void> {
    await this.kill();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}
