/**
 * An etcd with TLS (client certificates) and authentication set up as documented, through the CLI
 * (`podcrypt datastore init-etcd-auth`): root, the controller and nodes node-1, node-2 and node-10,
 * each with a password file in a temporary folder. For etcd-trust.test.ts and etcd-outage.test.ts.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { openDatastore } from "../../src/cli/datastore.js";
import type { EtcdDatastore } from "../../src/datastore/etcd/index.js";
import { projectRoot } from "../../src/paths.js";
import { EtcdTestServer } from "../support/etcd-server.js";

const execFileP = promisify(execFile);

/** Runs bin/podcrypt with `args`; its exit code and output (never throws). */
export async function podcrypt(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [join(projectRoot(), "bin", "podcrypt"), ...args], {
      timeout: 60_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: x.code ?? -1, stdout: x.stdout ?? "", stderr: x.stderr ?? "" };
  }
}

/** A running etcd with authentication on, and how to reach it as each user. */
export interface AuthEtcd {
  readonly server: EtcdTestServer;
  /** The temporary folder: root.password, users/USER.password. */
  readonly dir: string;
  /** The password file of `user` (not root). */
  pwOf(user: string): string;
  /** The datastore URL that logs in as `user`. */
  urlAs(user: string): string;
  /** A datastore client logged in as `user`. */
  open(user: string): Promise<EtcdDatastore>;
  /** Stops etcd and removes the folder. */
  stop(): Promise<void>;
}

/** Starts etcd over TLS and turns authentication on through the CLI; `prefix` names the temporary folder. */
export async function startAuthEtcd(prefix: string): Promise<AuthEtcd> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const rootPw = join(dir, "root.password");
  const pwOf = (user: string): string => join(dir, "users", `${user}.password`);
  writeFileSync(rootPw, "root-secret-\u00e9-42\n", { mode: 0o600 });
  let server: EtcdTestServer | undefined;
  const stop = async (): Promise<void> => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    server = await EtcdTestServer.start({ tls: true });
    const s = server;
    const urlAs = (user: string): string =>
      s.url({ user, passwordFile: user === "root" ? rootPw : pwOf(user) });
    // The documented set-up, through the CLI: authentication is off, so root is created and it is
    // turned on at the end.
    const r = await podcrypt([
      "datastore",
      "init-etcd-auth",
      "--datastore",
      urlAs("root"),
      "--node",
      "node-1,node-2",
      "--node",
      "node-10",
      "--out",
      join(dir, "users"),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /podcrypt-node-node-1: created, password in /);
    assert.match(r.stdout, /authentication turned on/);
    return {
      server: s,
      dir,
      pwOf,
      urlAs,
      open: async (user) => (await openDatastore(urlAs(user))) as EtcdDatastore,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
