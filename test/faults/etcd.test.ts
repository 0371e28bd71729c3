// test-tier: netns (root: network namespaces)
/**
 * Fault rows of the datastore: the local cluster on a real etcd (Debian's etcd-server, TLS with
 * client certificates and authentication on, a user per node as deployed), etcd stopped (SIGKILL)
 * for 30 s and started again on its data, under 100 datagrams/s per pod pair with an underlay
 * capture, both modes:
 *
 * - steady: nothing may be lost or leave in plaintext; `status --timeout N` gives a clear error
 *   within N s while etcd is down; the agents report again once it is back.
 * - during a rotation: etcd stops as the run enters a phase (prepare for WireGuard, switch for
 *   IPsec, so both phases are covered); the run completes after etcd is back, nothing is lost.
 *   `rotate --wait` waits out the outage when its timeout allows (WireGuard row: it reports the
 *   datastore gone and back, then the run complete), and otherwise exits with a clear timeout
 *   error within its timeout instead of hanging (IPsec row).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDatastore } from "../../src/cli/datastore.js";
import { CLUSTER_ENCRYPTION_NAME, type Phase } from "../../src/model/index.js";
import { EtcdTestServer } from "../support/etcd-server.js";
import { clusterCli } from "../localcluster/run-cli.js";
import { assertTraffic, faultSuite, sleep, type FaultCluster, waitUntil } from "./harness.js";

/** How long etcd stays down in every row (the figure). */
const OUTAGE_MS = 30_000;
/** `status --timeout` while etcd is down, and what a command may take beyond it to start (node). */
const STATUS_TIMEOUT_S = 4;
const START_SLACK_MS = 2500;
/**
 * `rotate --wait --timeout` of the rotation rows: shorter than the outage, so it must time out
 * (`short`), or long enough to wait it out (`long`).
 */
const ROTATE_TIMEOUT_S = { short: 15, long: 90 } as const;

const haveEtcd = existsSync("/usr/bin/etcd");

let etcd: EtcdTestServer | undefined;
let dir: string | undefined;
/** The datastore URL as etcd's root user (the test's own reads), and the cluster's config file. */
let rootUrl = "";
let config = "";
/** etcd's restart after the current outage. */
let resuming: Promise<void> | undefined;

before(async () => {
  if (!haveEtcd) return;
  dir = mkdtempSync(join(tmpdir(), "podcrypt-faults-etcd-"));
  etcd = await EtcdTestServer.start({ tls: true });
  const rootPw = join(dir, "root.password");
  writeFileSync(rootPw, "faults-root-password\n", { mode: 0o600 });
  rootUrl = etcd.url({ user: "root", passwordFile: rootPw });
  const users = join(dir, "users");
  const { podcrypt, remove } = clusterCli("faults-etcd-init");
  try {
    const init = await podcrypt([
      "datastore",
      "init-etcd-auth",
      "--datastore",
      rootUrl,
      "--node",
      "node-1,node-2,node-3",
      "--out",
      users,
    ]);
    assert.equal(init.code, 0, init.stderr);
  } finally {
    remove();
  }
  const as = (user: string): string => etcd!.url({ user, passwordFile: join(users, `${user}.password`) });
  config = join(dir, "cluster.yaml");
  writeFileSync(
    config,
    JSON.stringify({
      datastore: rootUrl,
      datastores: { controller: as("podcrypt-controller"), agent: as("podcrypt-node-{node}") },
    }),
  );
});

after(async () => {
  // A row that failed mid-outage leaves etcd's restart pending: let it finish before stopping it.
  await resuming?.catch(() => {});
  await etcd?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** Stops etcd for {@link OUTAGE_MS} from now; resolves once it is healthy again. */
async function outage(): Promise<{ haltedAt: number; back: Promise<void> }> {
  await etcd!.halt();
  const haltedAt = Date.now();
  const back = sleep(OUTAGE_MS).then(() => etcd!.resume());
  resuming = back;
  return { haltedAt, back };
}

/** `status --timeout N` while etcd is down: a clear error naming the datastore, within N s. */
async function statusFailsInTime(c: FaultCluster): Promise<number> {
  const t0 = Date.now();
  const r = await c.podcrypt(["status", "--timeout", String(STATUS_TIMEOUT_S)], 60_000);
  const ms = Date.now() - t0;
  assert.notEqual(r.code, 0, `status succeeded with etcd down: ${r.stdout}`);
  // Either the connection is refused at once (etcd stopped) or nothing answers in time.
  assert.match(r.stderr, new RegExp(`cannot connect|did not answer within ${STATUS_TIMEOUT_S} s`), r.stderr);
  assert.doesNotMatch(r.stderr, /TLS handshake/, "etcd stopped is not reported as a certificate problem");
  assert.ok(
    ms <= STATUS_TIMEOUT_S * 1000 + START_SLACK_MS,
    `status --timeout ${STATUS_TIMEOUT_S} took ${ms} ms`,
  );
  return ms;
}

async function steady(c: FaultCluster): Promise<void> {
  const traffic = c.traffic(38);
  await sleep(3000);
  const { haltedAt, back } = await outage();
  let statusMs: number;
  try {
    statusMs = await statusFailsInTime(c);
  } finally {
    await back;
  }
  const backAt = Date.now();
  const v = await traffic;
  const lost = assertTraffic(v, {}, "etcd stopped 30 s, steady");
  // Every agent reports again: its heartbeat written after etcd came back.
  await waitUntil(
    async () => {
      const s = await c.status().catch(() => undefined);
      return (
        s !== undefined &&
        s.nodes.every((n) => n.live && n.heartbeat !== undefined && Date.parse(n.heartbeat) >= backAt)
      );
    },
    30_000,
    "every agent to report after etcd came back",
  );
  process.stdout.write(
    `# ${c.mode}: etcd stopped ${backAt - haltedAt} ms, steady: worst pair lost ${lost}; status --timeout ${STATUS_TIMEOUT_S} failed after ${statusMs} ms; agents reported ${Date.now() - backAt} ms after etcd was back\n`,
  );
  await c.settled();
}

async function duringRotation(
  c: FaultCluster,
  phase: Phase,
  wait: keyof typeof ROTATE_TIMEOUT_S,
): Promise<void> {
  const timeoutS = ROTATE_TIMEOUT_S[wait];
  const store = await openDatastore(rootUrl);
  let epoch: number;
  try {
    epoch = (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))!.value.epoch;
    const traffic = c.traffic(55);
    await sleep(2000);
    const rotateAt = Date.now();
    const rotate = c.podcrypt(["rotate", "--wait", "--timeout", String(timeoutS)], (timeoutS + 30) * 1000);
    // etcd stops as soon as the controller has written the phase.
    await waitUntil(
      async () => {
        const cur = (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))!.value;
        assert.ok(
          cur.epoch === epoch && (cur.phase === "idle" || cur.phase === "prepare" || cur.phase === phase),
          `the run passed ${phase} unseen (now ${cur.phase} at epoch ${cur.epoch})`,
        );
        return cur.phase === phase;
      },
      30_000,
      `the rotation to enter ${phase}`,
    );
    const { haltedAt, back } = await outage();
    // When the command ended, however late it is awaited.
    const ended = rotate.then((r) => ({ r, rotateMs: Date.now() - rotateAt }));
    let statusMs: number;
    try {
      if (wait === "short") {
        const { r } = await ended;
        assert.notEqual(r.code, 0, `rotate --wait completed with etcd down: ${r.stdout}`);
        assert.match(
          r.stderr,
          new RegExp(
            `not complete after ${timeoutS} s .*the datastore has not answered for \\d+ s|did not answer within ${timeoutS} s`,
          ),
        );
      }
      statusMs = await statusFailsInTime(c);
    } finally {
      await back;
    }
    const backAt = Date.now();
    const { r, rotateMs } = await ended;
    if (wait === "long") {
      assert.equal(r.code, 0, `rotate --wait --timeout ${timeoutS} did not wait out etcd: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`rotation complete: epoch ${epoch + 1}`));
      assert.match(
        r.stderr,
        /the datastore does not answer .*; waiting for it\n(.*\n)* {2}the datastore answers again/,
      );
    }
    assert.ok(
      rotateMs <= timeoutS * 1000 + START_SLACK_MS,
      `rotate --wait --timeout ${timeoutS} took ${rotateMs} ms`,
    );
    await waitUntil(
      async () => {
        // The test's own client may still be backing off right after etcd came back.
        const cur = await store
          .collection("clusterencryptions")
          .get(CLUSTER_ENCRYPTION_NAME)
          .catch(() => undefined);
        return cur?.value.phase === "idle" && cur.value.epoch === epoch + 1;
      },
      40_000,
      `the rotation to complete after etcd came back`,
    );
    const completedMs = Date.now() - backAt;
    const lost = assertTraffic(await traffic, {}, `etcd stopped 30 s in ${phase}`);
    process.stdout.write(
      `# ${c.mode}: etcd stopped ${backAt - haltedAt} ms from ${phase}: worst pair lost ${lost}; rotate --wait --timeout ${timeoutS} exited ${r.code} after ${rotateMs} ms (${r.stderr.trim().split("\n").pop()}); status --timeout ${STATUS_TIMEOUT_S} failed after ${statusMs} ms; the run completed ${completedMs} ms after etcd was back\n`,
    );
  } finally {
    await store.close();
  }
  await c.settled();
  const s = await c.status();
  assert.equal(s.epoch, epoch + 1);
  for (const n of s.nodes)
    assert.ok(
      n.peers.every((p) => p.epoch === s.epoch),
      `${n.name} runs epoch ${s.epoch} with every peer: ${JSON.stringify(n.peers)}`,
    );
}

if (!haveEtcd)
  describe("faults of etcd", { skip: "no /usr/bin/etcd (apt-get install etcd-server)" }, () => {});
else
  for (const [mode, phase, wait] of [
    ["wireguard", "prepare", "long"],
    ["ipsec", "switch", "short"],
  ] as const)
    faultSuite(
      mode,
      (c) => {
        it("etcd stopped 30 s, steady: 0 lost, 0 plaintext; status times out clearly; agents report again", () =>
          steady(c()));
        it(`etcd stopped 30 s from ${phase} of a rotation: 0 lost, 0 plaintext; rotate --wait ${wait === "long" ? "waits it out" : "times out clearly"}; the run completes`, () =>
          duringRotation(c(), phase, wait));
      },
      () => ["--config", config],
    );
