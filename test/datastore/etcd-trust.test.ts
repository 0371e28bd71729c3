/**
 * etcd with TLS (client certificates) and authentication: the conformance suite over it, etcd itself
 * refusing an agent's write to another node's record or to the controller's leader key, plaintext
 * refused without an explicit allowance, and clear errors for bad certificates and credentials.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { openDatastore } from "../../src/cli/datastore.js";
import { CONTROLLER_USER, nodeUser } from "../../src/datastore/etcd/auth.js";
import { EtcdDatastore } from "../../src/datastore/etcd/index.js";
import {
  DatastoreErrorCode,
  isDatastoreError,
  isPermissionDeniedError,
  type Datastore,
} from "../../src/datastore/index.js";
import { isValidationError } from "../../src/errors/index.js";
import { projectRoot } from "../../src/paths.js";
import { runConformance, sampleNode } from "./conformance.js";
import { EtcdTestServer } from "./etcd-server.js";

const execFileP = promisify(execFile);

let server: EtcdTestServer;
let dir: string;
const rootPw = (): string => join(dir, "root.password");
const pwOf = (user: string): string => join(dir, "users", `${user}.password`);
const urlAs = (user: string): string =>
  server.url({ user, passwordFile: user === "root" ? rootPw() : pwOf(user) });
const open = async (user: string): Promise<EtcdDatastore> =>
  (await openDatastore(urlAs(user))) as EtcdDatastore;

async function podcrypt(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
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

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "podcrypt-etcd-trust-"));
  writeFileSync(rootPw(), "root-secret-\u00e9-42\n", { mode: 0o600 });
  server = await EtcdTestServer.start({ tls: true });
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
});
after(async () => {
  await server?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

runConformance("etcd over TLS with authentication (root)", async () => {
  const store = await open("root");
  return { store, close: () => store.close(), restart: () => server.restart() };
});

async function expectDenied(what: Promise<unknown>, user: string): Promise<void> {
  await assert.rejects(what, (e: unknown) => {
    assert.ok(isPermissionDeniedError(e), `expected permission denied, got ${String(e)}`);
    assert.match((e as Error).message, new RegExp(`etcd denied user "${user}"`));
    // From the server: etcd's own error is the cause.
    assert.match(String((e as Error).cause), /etcdserver: permission denied/);
    return true;
  });
}

describe("etcd enforces each node's role", () => {
  let rootStore: Datastore;
  let node1: EtcdDatastore;
  before(async () => {
    rootStore = await open("root");
    node1 = await open(nodeUser("node-1"));
  });
  after(async () => {
    await node1?.close();
    await rootStore?.close();
  });

  it("a node writes its own record and reads everyone's", async () => {
    await node1.collection("nodes").create(sampleNode("node-1"));
    await rootStore.collection("nodes").create(sampleNode("node-2"));
    const names = (await node1.collection("nodes").list()).items.map((i) => i.key);
    assert.ok(names.includes("node-1") && names.includes("node-2"), names.join(","));
  });

  it("a node's write to another node's record is refused by etcd itself", async () => {
    const user = nodeUser("node-1");
    const nodes = node1.collection("nodes");
    const cur = (await nodes.get("node-2"))!;
    await expectDenied(nodes.update(sampleNode("node-2", "192.0.2.66"), { revision: cur.revision }), user);
    await expectDenied(nodes.delete("node-2"), user);
    // Its own name as a prefix covers nothing: node-10 is another node.
    await expectDenied(nodes.create(sampleNode("node-10")), user);
    assert.deepEqual(
      (await rootStore.collection("nodes").get("node-2"))!.value.underlay,
      sampleNode("node-2").underlay,
    );
    // The same bytes straight through the etcd client, past podcrypt's own code: refused too.
    await assert.rejects(node1.client.put("/podcrypt/nodes/node-2").value("{}").exec(), /permission denied/);
  });

  it("a node cannot write the cluster's encryption state or policies", async () => {
    for (const key of ["/podcrypt/clusterencryptions/default", "/podcrypt/encryptionpolicies/p"])
      await assert.rejects(node1.client.put(key).value("{}").exec(), /permission denied/);
  });

  it("a node cannot take, write or revoke the controller's leader key and lease", async () => {
    const controller = await open(CONTROLLER_USER);
    try {
      const election = await controller.campaign("podcrypt-controller", "ctl-a", { ttlSeconds: 10 });
      await election.whenLeader();
      assert.equal(await node1.leader("podcrypt-controller"), "ctl-a");
      const key = "/podcrypt/__leaders/podcrypt-controller";
      await assert.rejects(
        node1.client
          .put(key)
          .value(JSON.stringify({ identity: "evil" }))
          .exec(),
        /permission denied/,
      );
      await assert.rejects(node1.client.delete().key(key).exec(), /permission denied/);
      const kv = (await node1.client.get(key).exec()).kvs[0]!;
      // Revoking a lease needs write permission on every key attached to it.
      await assert.rejects(
        node1.client.leaseClient.leaseRevoke({ ID: String(kv.lease) }),
        /permission denied/,
      );
      assert.equal(await node1.leader("podcrypt-controller"), "ctl-a");
      await election.resign();
    } finally {
      await controller.close();
    }
  });
});

/** The datastore error a first request through `url` fails with. */
async function firstError(url: string): Promise<Error> {
  const store = await openDatastore(url);
  try {
    await store.collection("nodes").list();
  } catch (e) {
    return e as Error;
  } finally {
    await store.close();
  }
  throw new Error(`a list through ${url} succeeded`);
}

describe("etcd connection errors name what is wrong", () => {
  it("plaintext to a non-loopback etcd is refused unless allowed, before any connection", async () => {
    await assert.rejects(openDatastore("etcd://192.0.2.7:2379"), (e: unknown) => {
      assert.ok(isValidationError(e), String(e));
      assert.match((e as Error).message, /plaintext etcd to 192\.0\.2\.7:2379 is refused/);
      assert.match((e as Error).message, /etcds:\/\/.*allow-insecure=true/);
      return true;
    });
    const allowed = await openDatastore("etcd://192.0.2.7:2379?allow-insecure=true");
    await allowed.close();
    // Loopback plaintext (the local cluster's own etcd) stays allowed: nothing lies in between.
    const loop = await openDatastore("etcd://127.0.0.1:2379");
    await loop.close();
  });

  it("a password is never taken from the URL", async () => {
    for (const url of [
      `etcds://root:hunter2@127.0.0.1:${server.clientPort}`,
      `etcds://127.0.0.1:${server.clientPort}?user=root&password=hunter2`,
    ])
      await assert.rejects(openDatastore(url), (e: unknown) => {
        assert.ok(isValidationError(e), String(e));
        assert.doesNotMatch((e as Error).message, /hunter2/);
        return true;
      });
  });

  it("a missing or unreadable certificate file is named", async () => {
    const missing = join(dir, "nope.pem");
    await assert.rejects(
      openDatastore(urlAs("root").replace(/cert=[^&]+/, `cert=${encodeURIComponent(missing)}`)),
      (e: unknown) => {
        assert.ok(isValidationError(e), String(e));
        assert.match(
          (e as Error).message,
          new RegExp(`cannot read the etcd cert file ${missing} \\(ENOENT\\)`),
        );
        return true;
      },
    );
    const notPem = join(dir, "not-a-cert.pem");
    writeFileSync(notPem, "hello");
    await assert.rejects(
      openDatastore(urlAs("root").replace(/ca=[^&]+/, `ca=${encodeURIComponent(notPem)}`)),
      /the etcd ca file .*not-a-cert\.pem holds no PEM CERTIFICATE/,
    );
  });

  it("a wrong CA fails the TLS handshake with a message that says so", async () => {
    const url = urlAs("root").replace(/ca=[^&]+/, `ca=${encodeURIComponent(server.pki!.other.ca)}`);
    const e = await firstError(url);
    assert.ok(isDatastoreError(e, DatastoreErrorCode.Unavailable), String(e));
    assert.match(
      e.message,
      /etcd: TLS handshake failed .*ca= names the CA that signed etcd's server certificate/,
    );
  });

  it("bad credentials: etcd refused the credentials for user X, the password never shown", async () => {
    const wrong = join(dir, "wrong.password");
    writeFileSync(wrong, "not-the-password\n", { mode: 0o600 });
    chmodSync(wrong, 0o600);
    const url = server.url({ user: nodeUser("node-1"), passwordFile: wrong });
    const e = await firstError(url);
    assert.ok(isDatastoreError(e, DatastoreErrorCode.Unauthenticated), String(e));
    assert.match(e.message, /etcd refused the credentials for user "podcrypt-node-node-1"/);
    assert.doesNotMatch(e.message, /not-the-password/);
    // Without credentials at all, etcd with authentication on is refused with a hint.
    const anon = await firstError(server.url());
    assert.ok(isDatastoreError(anon), String(anon));
    assert.match(anon.message, /authentication on.*add \?user=NAME&password-file=FILE/);
  });

  it("the CLI says the same and exits non-zero", async () => {
    const url = server.url({ user: nodeUser("node-2"), passwordFile: pwOf(nodeUser("node-1")) });
    const r = await podcrypt(["rotate", "--datastore", url]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /etcd refused the credentials for user "podcrypt-node-node-2"/);
  });
});

describe("etcd with authentication, after an outage", () => {
  it("a node's calls keep settling and it writes again once etcd is back from 30 s away", async () => {
    const store = await open(nodeUser("node-10"));
    const nodes = store.collection("nodes");
    // Heartbeats every 500 ms, not waiting for each other, as an agent's timers fire: calls are in
    // flight when etcd goes and when it comes back (etcd forgets its auth tokens on a restart).
    const beat = async (): Promise<void> => {
      const cur = await nodes.get("node-10");
      const heartbeat = new Date().toISOString();
      if (cur === undefined) await nodes.create({ ...sampleNode("node-10"), heartbeat });
      else await nodes.update({ ...cur.value, heartbeat }, { revision: cur.revision });
    };
    const calls: Array<{ at: number; settled?: number; ok?: boolean }> = [];
    const fire = (): void => {
      const c: { at: number; settled?: number; ok?: boolean } = { at: Date.now() };
      calls.push(c);
      beat().then(
        () => Object.assign(c, { settled: Date.now(), ok: true }),
        () => Object.assign(c, { settled: Date.now(), ok: false }),
      );
    };
    const timer = setInterval(fire, 500);
    try {
      await new Promise((r) => setTimeout(r, 2000));
      await server.halt();
      await new Promise((r) => setTimeout(r, 30_000));
      await server.resume();
      const back = Date.now();
      await new Promise((r) => setTimeout(r, 30_000));
      clearInterval(timer);
      // Past the call deadline (30 s): a call still open then hangs.
      await new Promise((r) => setTimeout(r, 40_000));
      const now = Date.now();
      const hung = calls.filter((c) => (c.settled ?? now) - c.at > 35_000);
      assert.deepEqual(
        hung.map((c) => `${c.at - back} ms`),
        [],
        `${hung.length} of ${calls.length} calls took over 35 s (times relative to etcd's return)`,
      );
      const first = calls.find((c) => c.at >= back && c.ok === true);
      assert.ok(first !== undefined, "no write succeeded within 30 s of etcd's return");
      process.stdout.write(
        `# ${calls.length} heartbeats; the first to succeed after etcd's return started ${first.at - back} ms after it\n`,
      );
    } finally {
      clearInterval(timer);
      await store.close();
    }
  });
});
