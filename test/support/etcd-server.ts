/**
 * Starts Debian's etcd (`/usr/bin/etcd`) on 127.0.0.1 with free ports and a temp data dir, for
 * tests; with `tls`, clients must speak TLS and present a certificate of a throwaway CA made with
 * openssl in that dir. `stop()` kills it and removes the dir; `restart()` keeps the data, as do
 * `halt()` and `resume()` (an outage of a chosen length).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:https";
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

/** PEM files of a throwaway CA, a certificate of it, and its key. */
export interface TestCert {
  ca: string;
  cert: string;
  key: string;
}

/** The test PKI: etcd's server certificate and a client certificate of one CA, and a second CA. */
export interface TestPki {
  server: TestCert;
  client: TestCert;
  /** A CA that signed neither (for "wrong CA" tests), with a client certificate of its own. */
  other: TestCert;
}

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** Makes a CA `name` in `dir` (P-256 keys, valid one day). */
function makeCa(dir: string, name: string): { pem: string; key: string } {
  const pem = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  openssl(
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
      "-keyout",
      key,
      "-out",
      pem,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
    ]),
  );
  return { pem, key };
}

/** Makes a certificate `name` signed by `ca`, with `ext` (subjectAltName, extendedKeyUsage). */
function makeCert(dir: string, ca: { pem: string; key: string }, name: string, ext: string): TestCert {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const extFile = join(dir, `${name}.ext`);
  execFileSync("sh", ["-c", `printf '%s\n' "$1" > "$2"`, "sh", ext, extFile]);
  openssl(
    ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
      "-keyout",
      key,
      "-out",
      csr,
      "-subj",
      `/CN=${name}`,
    ]),
  );
  openssl(
    ["x509", "-req", "-in", csr, "-CA", ca.pem, "-CAkey", ca.key, "-CAcreateserial"].concat([
      "-out",
      cert,
      "-days",
      "1",
      "-extfile",
      extFile,
    ]),
  );
  return { ca: ca.pem, cert, key };
}

/** Makes the {@link TestPki} in `dir` with openssl. */
export function makeTestPki(dir: string): TestPki {
  const ca = makeCa(dir, "podcrypt-test-ca");
  const other = makeCa(dir, "podcrypt-other-ca");
  return {
    server: makeCert(dir, ca, "etcd-server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
    // The CN names no etcd user: with --client-cert-auth, etcd takes a certificate's CN as the user
    // of a request that carries no password token.
    client: makeCert(dir, ca, "podcrypt-test-client", "extendedKeyUsage=clientAuth"),
    other: makeCert(dir, other, "podcrypt-other-client", "extendedKeyUsage=clientAuth"),
  };
}

/** Options of {@link EtcdTestServer.start}. */
export interface EtcdTestOptions {
  /** Serve clients over TLS only, with client certificates required ({@link TestPki}). */
  tls?: boolean;
}

/** A running test etcd. */
export class EtcdTestServer {
  private proc: ChildProcess | undefined;
  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    /** The certificates, when it serves TLS. */
    readonly pki: TestPki | undefined,
  ) {}

  /** The client URL. */
  get endpoint(): string {
    return `${this.pki === undefined ? "http" : "https"}://127.0.0.1:${this.clientPort}`;
  }

  /**
   * The datastore URL podcrypt takes: with TLS, `etcds://` naming the CA and client certificate,
   * and `user`/`passwordFile` when given.
   */
  url(auth?: { user: string; passwordFile: string }): string {
    const hostPort = `127.0.0.1:${this.clientPort}`;
    if (this.pki === undefined) return `etcd://${hostPort}`;
    const q = new URLSearchParams({
      ca: this.pki.client.ca,
      cert: this.pki.client.cert,
      key: this.pki.client.key,
    });
    if (auth !== undefined) {
      q.set("user", auth.user);
      q.set("password-file", auth.passwordFile);
    }
    return `etcds://${hostPort}?${q.toString()}`;
  }

  /** Starts a fresh etcd. */
  static async start(options: EtcdTestOptions = {}): Promise<EtcdTestServer> {
    const dir = await mkdtemp(join(tmpdir(), "podcrypt-etcd-"));
    try {
      const pki = options.tls === true ? makeTestPki(dir) : undefined;
      const s = new EtcdTestServer(dir, await freePort(), await freePort(), pki);
      await s.launch();
      return s;
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  private async healthy(): Promise<boolean> {
    const url = `${this.endpoint}/health`;
    const pki = this.pki;
    if (pki === undefined) {
      const r = await fetch(url);
      return r.ok && ((await r.json()) as { health?: string }).health === "true";
    }
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(
        url,
        {
          ca: readFileSync(pki.client.ca),
          cert: readFileSync(pki.client.cert),
          key: readFileSync(pki.client.key),
        },
        (res) => {
          let b = "";
          res.on("data", (d: Buffer) => (b += d.toString()));
          res.on("end", () => resolve(b));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end();
    });
    return (JSON.parse(body) as { health?: string }).health === "true";
  }

  private async launch(): Promise<void> {
    const url = this.endpoint;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const tls =
      this.pki === undefined
        ? []
        : [
            `--cert-file=${this.pki.server.cert}`,
            `--key-file=${this.pki.server.key}`,
            `--trusted-ca-file=${this.pki.server.ca}`,
            "--client-cert-auth",
          ];
    const proc = spawn(
      "/usr/bin/etcd",
      [
        ...tls,
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
        if (await this.healthy()) return;
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
    // Already gone: killed by a signal from elsewhere (exitCode stays null then, signalCode is
    // set), its "exit" event past; waiting for it left nothing in the event loop and the process
    // ended mid-cleanup (status 13, the bench's "hang" with etcd killed).
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGKILL");
    });
  }

  /** The running etcd's process id (undefined while halted). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Kills etcd and starts it again on the same ports and data. */
  async restart(): Promise<void> {
    await this.halt();
    await this.resume();
  }

  /** Kills etcd (SIGKILL), keeping its data: clients find nothing listening until {@link resume}. */
  async halt(): Promise<void> {
    await this.kill();
  }

  /** Starts a halted etcd again on the same ports and data; resolves once it is healthy. */
  async resume(): Promise<void> {
    await this.launch();
  }

  /** Kills etcd and removes its data. */
  async stop(): Promise<void> {
    await this.kill();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}
