/**
 * etcd with TLS (client certificates) and authentication: the conformance suite over it, etcd itself
 * refusing an agent's write to another node's record or to the controller's leader key, plaintext
 * refused without an explicit allowance, and clear errors for bad certificates and credentials.
 * (A node's calls through an etcd outage: etcd-outage.test.ts.)
 */
import assert from "node:assert/strict";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
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
import { runConformance, sampleNode } from "./conformance.js";
import { podcrypt, startAuthEtcd, type AuthEtcd } from "./etcd-auth-lab.js";
import type { EtcdTestServer } from "../support/etcd-server.js";

let lab: AuthEtcd;
let server: EtcdTestServer;
let dir: string;
const pwOf = (user: string): string => lab.pwOf(user);
const urlAs = (user: string): string => lab.urlAs(user);
const open = (user: string): Promise<EtcdDatastore> => lab.open(user);

before(async () => {
  lab = await startAuthEtcd("podcrypt-etcd-trust-");
  server = lab.server;
  dir = lab.dir;
});
after(async () => {
  await lab?.stop();
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
