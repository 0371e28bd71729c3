import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ManualClock } from "../clock.js";
import type { ControllerHealth } from "../controller/controller.js";
import { FakeDataplane, fakeErrno } from "../../test/support/fake-dataplane/backend.js";
import { MemoryEpochKeys } from "../../test/support/fake-dataplane/keys.js";
import type { DataplaneBackend, DesiredNodeState } from "../dataplane/types.js";
import { UnavailableError } from "../datastore/errors.js";
import { MemoryBackingState, MemoryDatastore } from "../../test/support/memory-datastore/index.js";
import { isPodcryptError } from "../errors/index.js";
import { createLogger } from "../log/logger.js";
import { projectRoot } from "../paths.js";
import { instrumentBackend, ReconcileRecord } from "./backend-probe.js";
import {
  agentLiveness,
  agentReconcileReadiness,
  allOf,
  controllerLiveness,
  controllerReadiness,
  HEALTH_TIMING,
} from "./checks.js";
import { observeDatastore, Reachability } from "./datastore-probe.js";
import { parseXfrmStat } from "./drops.js";
import { agentRegistry, controllerRegistry } from "./metrics.js";
import { statusView, type StatusView } from "../statuspage/view.js";
import { bearerMatches, HealthServer, isLoopbackAddress, type CheckResult } from "./server.js";

const T0 = Date.parse("2026-02-01T00:00:00Z");
const logger = createLogger("test", { level: "silent" });

function desired(peers: string[]): DesiredNodeState {
  return {
    generations: [
      {
        epoch: 3,
        mode: "wireguard",
        slot: 1,
        ifname: "podcrypt1",
        listenPort: 51821,
        peers: peers.map((node, i) => ({
          node,
          publicKey: Buffer.alloc(32, i + 1).toString("base64"),
          endpoint: { address: `192.0.2.${i + 2}`, port: 51821 },
          allowedIps: [`10.244.${i + 2}.0/24`],
        })),
      },
    ],
    routes: [],
    strict: {
      dropOutbound: true,
      dropInbound: true,
      underlayIf: "eth0",
      localPodCidrs: ["10.244.1.0/24"],
      remotePodCidrs: [],
    },
    mtu: 1420,
  };
}

describe("health checks", () => {
  const clock = new ManualClock(0, T0);
  const reach = new Reachability(clock);

  it("agent readiness: no reconcile yet, ok, failing within the grace, failing past it", () => {
    const r = new ReconcileRecord();
    assert.equal(agentReconcileReadiness(r, T0).ok, false);
    r.lastOkAt = T0;
    assert.deepEqual(agentReconcileReadiness(r, T0 + 1000), { ok: true, detail: "last reconcile succeeded" });
    r.failingSince = T0 + 1000;
    r.lastError = "netlink: EIO";
    assert.equal(agentReconcileReadiness(r, T0 + 1000 + HEALTH_TIMING.failureGraceMs).ok, true);
    const late = agentReconcileReadiness(r, T0 + 2000 + HEALTH_TIMING.failureGraceMs);
    assert.equal(late.ok, false);
    assert.match(late.detail, /reconcile failing for 31 s: netlink: EIO/);
  });

  it("agent liveness fails only for a stuck loop, never before the cluster is initialised", () => {
    const r = new ReconcileRecord();
    r.lastEndedAt = T0;
    const idle = T0 + HEALTH_TIMING.stuckMs + 1000;
    assert.equal(agentLiveness(r, reach, idle).ok, true, "not initialised: no reconciles expected");
    reach.cluster = { applied: { enabled: true, mode: "wireguard" } } as Reachability["cluster"];
    assert.match(agentLiveness(r, reach, idle).detail, /no reconcile for 301 s/);
    r.lastEndedAt = idle - 1000;
    assert.equal(agentLiveness(r, reach, idle).ok, true);
    r.inProgressSince = T0;
    assert.match(agentLiveness(r, reach, idle).detail, /a reconcile has been running for 301 s/);
  });

  it("controller: a standby is ready, a failing leader is not; liveness needs the campaign", () => {
    const h: ControllerHealth = {
      campaigning: true,
      leader: false,
      lastStepOkAt: undefined,
      failingSince: undefined,
      stepFailures: 0,
      policyStatusWrites: 0,
      policyStatusFailures: 0,
      runsCompleted: 0,
      runsFailed: 0,
      phaseTimeouts: 0,
    };
    assert.deepEqual(controllerReadiness(h, T0), { ok: true, detail: "standby, campaigning" });
    const failing = { ...h, leader: true, failingSince: T0 };
    assert.equal(controllerReadiness(failing, T0 + 10_000).ok, true);
    assert.equal(controllerReadiness(failing, T0 + HEALTH_TIMING.failureGraceMs + 1).ok, false);
    assert.equal(controllerLiveness(failing, T0 + HEALTH_TIMING.failureGraceMs + 1).ok, true);
    assert.equal(controllerLiveness(failing, T0 + HEALTH_TIMING.stuckMs + 1).ok, false);
    assert.equal(controllerLiveness({ ...h, campaigning: false }, T0).ok, false);
    assert.deepEqual(allOf({ ok: true, detail: "a" }, { ok: false, code: "x-failed", detail: "b" }), {
      ok: false,
      code: "x-failed",
      detail: "a; b",
    });
    assert.equal(
      allOf(
        { ok: false, code: "datastore-unreachable", detail: "a" },
        { ok: false, code: "reconcile-failing", detail: "b" },
      ).code,
      "datastore-unreachable,reconcile-failing",
    );
  });
});

describe("instrumented backend and observed datastore", () => {
  it("records reconciles, failures and the failure run", async () => {
    const clock = new ManualClock(0, T0);
    const fake = new FakeDataplane({ clock });
    const keys = new MemoryEpochKeys();
    await keys.ensure(3);
    const { backend, record } = instrumentBackend(fake, clock);
    await backend.reconcile(desired(["b"]), (e) => keys.privateKey(e));
    assert.deepEqual([record.reconciles, record.failures, record.lastOkAt], [1, 0, T0]);
    fake.failNext(fakeErrno("EBUSY"));
    clock.advance(1000);
    await assert.rejects(backend.reconcile(desired(["b"]), (e) => keys.privateKey(e)));
    assert.deepEqual([record.reconciles, record.failures, record.failingSince], [2, 1, T0 + 1000]);
    assert.match(record.lastError!, /EBUSY/);
    clock.advance(1000);
    await backend.reconcile(desired(["b"]), (e) => keys.privateKey(e));
    assert.equal(record.failingSince, undefined);
    assert.equal(record.inProgressSince, undefined);
  });

  it("learns reachability from the calls made, and probes only when quiet", async () => {
    const clock = new ManualClock(0, T0);
    const state = new MemoryBackingState();
    const raw = new MemoryDatastore({ clock, state, sweepIntervalMs: 0 });
    const { store, reach } = observeDatastore(raw, clock);
    try {
      await store.collection("clusterencryptions").create({ name: "default", epoch: 4 });
      const seen = await store.collection("clusterencryptions").get("default");
      assert.equal(reach.cluster?.epoch, seen?.value.epoch);
      assert.ok(reach.fresh(1000));
      state.failNext("transaction", new UnavailableError("etcd: connection refused"));
      clock.advance(10);
      await assert.rejects(store.collection("nodes").list());
      assert.equal(reach.fresh(1000), false, "a failure since the last success");
      let probes = 0;
      const probe = async () => {
        probes++;
        return raw.collection("nodes").list();
      };
      assert.deepEqual(await reach.check(probe, 1000), { ok: true, detail: "datastore reachable" });
      assert.equal(probes, 1);
      await reach.check(probe, 1000);
      assert.equal(probes, 1, "fresh: no probe");
      clock.advance(10);
      const down: CheckResult = await reach.check(async () => {
        throw new UnavailableError("down");
      }, 0);
      assert.deepEqual(down, {
        ok: false,
        code: "datastore-unreachable",
        detail: "datastore unreachable: down",
      });
      // Typed answers show the store was reached.
      clock.advance(10);
      await assert.rejects(
        store.collection("nodes").update({ name: "absent", underlay: { ipv4: "192.0.2.1" } }),
      );
      assert.ok(reach.fresh(1000));
    } finally {
      await store.close();
    }
  });
});

describe("metrics", () => {
  it("agent: per-peer counters, handshake, reconciles, epoch and phase in Prometheus text", async () => {
    const clock = new ManualClock(0, T0);
    const fake = new FakeDataplane({ clock });
    const keys = new MemoryEpochKeys();
    await keys.ensure(3);
    const { backend, record } = instrumentBackend(fake, clock);
    await backend.reconcile(desired(["node-2", "node-3"]), (e) => keys.privateKey(e));
    const reach = new Reachability(clock);
    reach.record();
    reach.cluster = { epoch: 3, phase: "idle", enabled: true } as Reachability["cluster"];
    const text = await agentRegistry({
      node: "node-1",
      clock,
      backend,
      record,
      reach,
      choice: { wireguard: "userspace", ipsec: "kernel" },
      drops: { wireguardUserspace: ["pcmetrics-test0"], espUserspace: undefined, kernelXfrm: false },
      refused: () => [
        { node: "node-3", field: "podCIDRs", value: "10.244.2.128/25", reason: "outside-assigned-pod-cidrs" },
        { node: "node-3", field: "podCIDRs", value: "10.244.2.64/26", reason: "outside-assigned-pod-cidrs" },
        { node: "node-4", field: "underlay", value: "192.0.2.9", reason: "no-such-node" },
      ],
    }).metrics();
    const line = (re: RegExp) => assert.match(text, re);
    line(/^# TYPE podcrypt_peer_transmit_bytes_total counter$/m);
    line(/^podcrypt_peer_transmit_bytes_total\{peer="node-2",epoch="3",ifname="podcrypt1"\} 0$/m);
    line(/^podcrypt_peer_receive_bytes_total\{peer="node-3",epoch="3",ifname="podcrypt1"\} 0$/m);
    line(
      new RegExp(
        `^podcrypt_peer_latest_handshake_timestamp_seconds\\{peer="node-2",epoch="3",ifname="podcrypt1"\\} ${T0 / 1000}$`,
        "m",
      ),
    );
    line(/^podcrypt_agent_reconciles_total 1$/m);
    line(/^# TYPE podcrypt_agent_refused_claims gauge$/m);
    line(
      /^podcrypt_agent_refused_claims\{peer="node-3",field="podCIDRs",reason="outside-assigned-pod-cidrs"\} 2$/m,
    );
    line(/^podcrypt_agent_refused_claims\{peer="node-4",field="underlay",reason="no-such-node"\} 1$/m);
    line(/^podcrypt_agent_reconcile_failures_total 0$/m);
    line(/^podcrypt_cluster_epoch 3$/m);
    line(/^podcrypt_cluster_phase\{phase="idle"\} 1$/m);
    line(/^podcrypt_cluster_phase\{phase="prepare"\} 0$/m);
    line(/^podcrypt_datastore_reachable 1$/m);
    line(/^podcrypt_agent_info\{node="node-1",wireguard="userspace",ipsec="kernel"\} 1$/m);
    line(/^# TYPE podcrypt_dataplane_dropped_packets_total counter$/m);
    line(/^process_cpu_user_seconds_total /m);
    // No daemon answers on that interface's socket: no drop series, and no error.
    assert.doesNotMatch(text, /^podcrypt_dataplane_dropped_packets_total\{/m);
  });

  it("agent: handshake age, ESP sequence use and strict mode's drops per peer", async () => {
    const clock = new ManualClock(0, T0);
    // The rows a WireGuard and an ESP data plane report, and the drops the strict rules counted.
    const backend: DataplaneBackend = {
      kind: "esp-userspace",
      reconcile: async () => undefined,
      observe: async () => [
        {
          node: "node-2",
          epoch: 3,
          ifname: "podcrypt1",
          txBytes: 0,
          rxBytes: 0,
          latestHandshake: T0 - 125_000,
        },
        {
          node: "node-3",
          epoch: 3,
          ifname: "podcrypt1",
          keyId: 3,
          txBytes: 0,
          rxBytes: 0,
          sequence: 3_000_000_000,
          sequenceLimit: 0xffff_ffff,
        },
      ],
      close: async () => undefined,
      saInstance: () => undefined,
      strictDrops: async () => [
        { peer: "node-2", direction: "out", packets: 12 },
        { peer: "node-3", direction: "in", packets: 4 },
      ],
    };
    const { backend: wrapped, record } = instrumentBackend(backend, clock);
    const text = await agentRegistry({
      node: "node-1",
      clock,
      backend: wrapped,
      record,
      reach: new Reachability(clock),
      choice: { wireguard: "userspace", ipsec: "userspace" },
      drops: { wireguardUserspace: [], espUserspace: undefined, kernelXfrm: false },
    }).metrics();
    const line = (re: RegExp) => assert.match(text, re);
    line(/^podcrypt_peer_latest_handshake_age_seconds\{peer="node-2",epoch="3",ifname="podcrypt1"\} 125$/m);
    line(/^podcrypt_esp_sa_sequence\{peer="node-3",epoch="3",ifname="podcrypt1"\} 3000000000$/m);
    line(/^podcrypt_esp_sa_sequence_limit\{peer="node-3",epoch="3",ifname="podcrypt1"\} 4294967295$/m);
    line(/^# TYPE podcrypt_plaintext_dropped_packets_total counter$/m);
    line(/^podcrypt_plaintext_dropped_packets_total\{peer="node-2",direction="out"\} 12$/m);
    line(/^podcrypt_plaintext_dropped_packets_total\{peer="node-3",direction="in"\} 4$/m);
  });

  it("agent: a data plane that never answers leaves the peers out, not the scrape", async () => {
    const clock = new ManualClock(0, T0);
    const backend: DataplaneBackend = {
      kind: "wireguard-userspace",
      reconcile: async () => undefined,
      // A stopped daemon: its socket accepts and never answers.
      observe: () => new Promise<never>(() => undefined),
      close: async () => undefined,
      saInstance: () => undefined,
      strictDrops: async () => [{ peer: "node-2", direction: "out", packets: 81 }],
    };
    const text = await agentRegistry({
      node: "node-1",
      clock,
      backend,
      record: new ReconcileRecord(),
      reach: new Reachability(clock),
      choice: { wireguard: "userspace", ipsec: "userspace" },
      drops: { wireguardUserspace: [], espUserspace: undefined, kernelXfrm: false },
      observeTimeoutMs: 10,
    }).metrics();
    assert.match(text, /^podcrypt_plaintext_dropped_packets_total\{peer="node-2",direction="out"\} 81$/m);
    assert.doesNotMatch(text, /^podcrypt_peer_transmit_bytes_total\{/m);
  });

  it("controller: leadership and policy status writes", async () => {
    const reach = new Reachability(new ManualClock(0, T0));
    const h: ControllerHealth = {
      campaigning: true,
      leader: true,
      lastStepOkAt: T0,
      failingSince: undefined,
      stepFailures: 2,
      policyStatusWrites: 7,
      policyStatusFailures: 1,
      runsCompleted: 5,
      runsFailed: 1,
      phaseTimeouts: 2,
    };
    const clock = new ManualClock(0, T0);
    reach.record();
    reach.cluster = {
      epoch: 3,
      phase: "switch",
      enabled: true,
      phaseStartedAt: {
        prepare: new Date(T0 - 90_000).toISOString(),
        switch: new Date(T0 - 42_000).toISOString(),
      },
    } as Reachability["cluster"];
    const text = await controllerRegistry(() => h, reach, clock).metrics();
    assert.match(text, /^podcrypt_controller_runs_completed_total 5$/m);
    assert.match(text, /^podcrypt_controller_runs_failed_total 1$/m);
    assert.match(text, /^podcrypt_controller_phase_timeouts_total 2$/m);
    assert.match(text, /^podcrypt_cluster_phase_seconds\{phase="switch"\} 42$/m);
    reach.cluster = { epoch: 3, phase: "idle", enabled: true, phaseStartedAt: {} } as Reachability["cluster"];
    assert.doesNotMatch(
      await controllerRegistry(() => h, reach, clock).metrics(),
      /^podcrypt_cluster_phase_seconds\{/m,
      "no phase duration while idle",
    );
    reach.cluster = undefined;
    assert.match(text, /^podcrypt_controller_leader 1$/m);
    assert.match(text, /^podcrypt_controller_step_failures_total 2$/m);
    assert.match(text, /^podcrypt_policy_status_writes_total 7$/m);
    assert.match(text, /^podcrypt_policy_status_write_failures_total 1$/m);
    assert.match(text, /^podcrypt_datastore_reachable 1$/m);
  });

  it("parses a whole /proc/net/xfrm_stat (a copy of a 6.x kernel's, with errors set)", async () => {
    const text = await readFile(join(projectRoot(), "src", "health", "fixtures", "xfrm_stat"), "utf8");
    const counters = new Map(parseXfrmStat(text));
    assert.equal(counters.size, text.trim().split("\n").length, "every line is a counter");
    assert.equal(counters.get("XfrmInNoStates"), 17);
    assert.equal(counters.get("XfrmOutStateSeqError"), 3);
    assert.equal(counters.get("XfrmInStateProtoError"), 5);
    assert.equal(counters.get("XfrmInError"), 0);
  });

  it("parses /proc/net/xfrm_stat", () => {
    assert.deepEqual(parseXfrmStat("XfrmInError             \t0\nXfrmInNoStates          \t12\nnoise\n"), [
      ["XfrmInError", 0],
      ["XfrmInNoStates", 12],
    ]);
  });
});

describe("health server", () => {
  const servers: HealthServer[] = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  it("answers /healthz, /readyz and /metrics; 503 names the problem by its code only; others 404/405", async () => {
    let ready: CheckResult = {
      ok: false,
      code: "datastore-unreachable",
      detail: "datastore unreachable: connect ECONNREFUSED 10.9.8.7:2379 (/etc/secret/path)",
    };
    const reach = new Reachability(new ManualClock(0, T0));
    const s = await HealthServer.start({
      host: "127.0.0.1",
      port: 0,
      logger,
      registry: controllerRegistry(
        () => ({
          campaigning: true,
          leader: false,
          lastStepOkAt: undefined,
          failingSince: undefined,
          stepFailures: 0,
          policyStatusWrites: 0,
          policyStatusFailures: 0,
          runsCompleted: 0,
          runsFailed: 0,
          phaseTimeouts: 0,
        }),
        reach,
      ),
      liveness: () => ({ ok: true, detail: "standby" }),
      readiness: () => ready,
    });
    servers.push(s);
    const url = (p: string) => `http://127.0.0.1:${s.port}${p}`;
    const h = await fetch(url("/healthz"));
    assert.deepEqual([h.status, await h.text()], [200, "ok: standby\n"]);
    const r = await fetch(url("/readyz"));
    assert.deepEqual([r.status, await r.text()], [503, "not ok: datastore-unreachable\n"]);
    // The details are on /statusz, which answers this loopback client (no token configured).
    const st = await fetch(url("/statusz"));
    assert.equal(st.status, 200);
    const body = (await st.json()) as { readiness: CheckResult; liveness: CheckResult };
    assert.deepEqual(body.readiness, ready);
    assert.deepEqual(body.liveness, { ok: true, detail: "standby" });
    ready = { ok: true, detail: "fine" };
    assert.equal((await fetch(url("/readyz"))).status, 200);
    const m = await fetch(url("/metrics"));
    assert.equal(m.status, 200);
    assert.match(m.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(await m.text(), /^podcrypt_controller_leader 0$/m);
    assert.equal((await fetch(url("/nope"))).status, 404);
    assert.equal((await fetch(url("/healthz"), { method: "POST" })).status, 405);
    // The port is taken now: a second server says where and what to do.
    await assert.rejects(
      HealthServer.start({
        host: "127.0.0.1",
        port: s.port,
        logger,
        registry: controllerRegistry(() => ({}) as ControllerHealth, reach),
        liveness: () => ({ ok: true, detail: "" }),
        readiness: () => ({ ok: true, detail: "" }),
      }),
      (e: unknown) =>
        isPodcryptError(e, "EHEALTHLISTEN") &&
        /127\.0\.0\.1:\d+ .*EADDRINUSE.*--health-address/.test(e.message),
    );
  });

  it("with a token, /metrics and /statusz require it as a bearer token; probes stay open", async () => {
    const reach = new Reachability(new ManualClock(0, T0));
    const token = "s3cr3t-t0ken-value";
    const s = await HealthServer.start({
      host: "127.0.0.1",
      port: 0,
      logger,
      token,
      registry: controllerRegistry(() => ({}) as ControllerHealth, reach),
      liveness: () => ({ ok: true, detail: "standby" }),
      readiness: () => ({ ok: false, code: "not-campaigning", detail: "not campaigning for leadership" }),
    });
    servers.push(s);
    const url = (p: string) => `http://127.0.0.1:${s.port}${p}`;
    const auth = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
    for (const path of ["/metrics", "/statusz"]) {
      const none = await fetch(url(path));
      assert.equal(none.status, 401, path);
      assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.equal((await fetch(url(path), auth("wrong"))).status, 401, path);
      assert.equal((await fetch(url(path), auth(`${token}x`))).status, 401, path);
      assert.equal((await fetch(url(path), auth(token))).status, 200, path);
    }
    assert.equal((await fetch(url("/healthz"))).status, 200);
    const r = await fetch(url("/readyz"));
    assert.deepEqual([r.status, await r.text()], [503, "not ok: not-campaigning\n"]);
  });

  it("the status page: /status open and self-contained, /status.json behind the token", async () => {
    const reach = new Reachability(new ManualClock(0, T0));
    const token = "another-t0ken";
    let reads = 0;
    const s = await HealthServer.start({
      host: "127.0.0.1",
      port: 0,
      logger,
      token,
      registry: controllerRegistry(() => ({}) as ControllerHealth, reach),
      liveness: () => ({ ok: true, detail: "" }),
      readiness: () => ({ ok: true, detail: "" }),
      status: () => {
        reads++;
        return Promise.resolve(statusView(undefined, [], T0));
      },
    });
    servers.push(s);
    const url = (p: string) => `http://127.0.0.1:${s.port}${p}`;
    const page = await fetch(url("/status"));
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'.*connect-src 'self'/);
    const html = await page.text();
    assert.doesNotMatch(html, /(src|href)=["']?(https?:)?\/\//, "nothing loaded from elsewhere");
    assert.match(html, /fetch\("status\.json"/);
    assert.equal((await fetch(url("/status.json"))).status, 401);
    assert.equal(reads, 0, "no data without the token");
    const data = await fetch(url("/status.json"), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(data.status, 200);
    const v = (await data.json()) as StatusView;
    assert.deepEqual([v.cluster.enabled, v.pairs, v.families], [false, [], ["ipv4"]]);
    // A server without a status source (the agent's) has neither path.
    const plain = await HealthServer.start({
      host: "127.0.0.1",
      port: 0,
      logger,
      registry: controllerRegistry(() => ({}) as ControllerHealth, reach),
      liveness: () => ({ ok: true, detail: "" }),
      readiness: () => ({ ok: true, detail: "" }),
    });
    servers.push(plain);
    assert.equal((await fetch(`http://127.0.0.1:${plain.port}/status`)).status, 404);
  });

  it("knows loopback clients and compares bearer tokens exactly", () => {
    for (const a of ["127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"]) assert.ok(isLoopbackAddress(a), a);
    for (const a of ["10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "0.0.0.0", "::", undefined])
      assert.ok(!isLoopbackAddress(a), String(a));
    assert.ok(bearerMatches("Bearer abc", "abc"));
    assert.ok(bearerMatches("bearer   abc ", "abc"));
    for (const h of [undefined, "", "abc", "Basic abc", "Bearer ab", "Bearer abcd", "Bearer abc def"])
      assert.ok(!bearerMatches(h, "abc"), String(h));
  });
});
