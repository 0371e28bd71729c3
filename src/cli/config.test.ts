import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isValidationError } from "../errors/index.js";
import { defaultManifestOptions } from "./manifests/options.js";
import { configFile } from "./manifests/workloads.js";
import { stringify } from "yaml";
import {
  agentSettings,
  controllerSettings,
  parseDaemonConfig,
  parseListenAddress,
  pick,
  readMetricsToken,
} from "./config.js";

/** Asserts that parsing `text` fails naming `field`. */
function rejects(text: string, field: string, message: RegExp): void {
  assert.throws(
    () => parseDaemonConfig(text, "config.yaml"),
    (e: unknown) => {
      assert.ok(isValidationError(e), String(e));
      assert.equal(e.field, `config.yaml: ${field}`);
      assert.match(e.message, message);
      return true;
    },
  );
}

describe("daemon configuration file", () => {
  it("reads what `podcrypt manifests` writes, field for field", () => {
    const generated = configFile(defaultManifestOptions("1.2.3"));
    assert.deepEqual(parseDaemonConfig(stringify(generated)), generated);
  });

  it("an empty file is no configuration", () => {
    assert.deepEqual(parseDaemonConfig(""), {});
  });

  const cases: [string, string, string, RegExp][] = [
    ["unknown field", "agent:\n  healthPort: 9809\n", "agent", /healthPort/],
    [
      "heartbeat past the liveness window",
      "agent:\n  heartbeatSeconds: 10\n",
      "agent.heartbeatSeconds",
      /at most 5/,
    ],
    ["relative state directory", "agent:\n  stateDir: keys\n", "agent.stateDir", /absolute/],
    ["bad health address", 'controller:\n  healthAddress: "9808"\n', "controller.healthAddress", /HOST:PORT/],
    ["bad mode", "cluster:\n  mode: tls\n", "cluster.mode", /wireguard/],
    [
      "bad rotation interval",
      "cluster:\n  rotationInterval: hourly\n",
      "cluster.rotationInterval",
      /duration/,
    ],
    ["bad log level", "log:\n  level: loud\n", "log.level", /info/],
    ["bad namespace", "namespace: Podcrypt\n", "namespace", /DNS-1123/],
    [
      "bad election name",
      "controller:\n  leaderElection:\n    name: A_B\n",
      "controller.leaderElection.name",
      /DNS-1123/,
    ],
    ["bad cluster CIDR", "agent:\n  clusterCIDRs: [10.0.0.0/33]\n", "agent.clusterCIDRs.0", /CIDR/],
    [
      "bad host encryption flag",
      "cluster:\n  hostEncryption: yes please\n",
      "cluster.hostEncryption",
      /boolean/,
    ],
    [
      "strict host mode without host encryption",
      "cluster:\n  strictHost: true\n",
      "cluster.strictHost",
      /needs hostEncryption: true/,
    ],
    [
      "a host exclusion that is no CIDR",
      "agent:\n  hostEncryptionExclude:\n    cidrs: [10.0.0.0/8, fd00::/129]\n",
      "agent.hostEncryptionExclude.cidrs.1",
      /must be an IPv4 or IPv6 CIDR/,
    ],
    [
      "an IPv6 host exclusion with host bits set",
      "agent:\n  hostEncryptionExclude:\n    cidrs: [fd00::1/8]\n",
      "agent.hostEncryptionExclude.cidrs.0",
      /host bits set \(write the network address, fd00::\/8\)/,
    ],
    [
      "a host exclusion with host bits set",
      "agent:\n  hostEncryptionExclude:\n    cidrs: [10.1.2.3/8]\n",
      "agent.hostEncryptionExclude.cidrs.0",
      /host bits/,
    ],
    [
      "a host exclusion port without protocol",
      "agent:\n  hostEncryptionExclude:\n    ports: ['22']\n",
      "agent.hostEncryptionExclude.ports.0",
      /tcp\/22/,
    ],
  ];
  for (const [what, text, field, message] of cases)
    it(`refuses ${what}, naming ${field}`, () => rejects(text, field, message));

  it("refuses YAML that does not parse, naming the file", () => {
    assert.throws(
      () => parseDaemonConfig("agent: [", "config.yaml"),
      /^ValidationError: config\.yaml:1:9: not valid YAML: flow sequence in block collection must be sufficiently indented and end with a \]$/,
    );
  });

  it("refuses an unresolved YAML alias as a ValidationError naming the file", () => {
    assert.throws(() => parseDaemonConfig("agent:\n  node: *missing\n", "config.yaml"), {
      name: "ValidationError",
      message: /^config\.yaml: not valid YAML: unresolved alias .*missing$/,
    });
  });

  it("reads the metrics token file, refusing an unreadable or empty one", () => {
    const dir = mkdtempSync(join(tmpdir(), "podcrypt-token-"));
    try {
      const file = join(dir, "token");
      writeFileSync(file, "  abc123\n", { mode: 0o600 });
      assert.equal(readMetricsToken(file), "abc123");
      assert.equal(readMetricsToken(undefined), undefined);
      writeFileSync(file, "\n");
      assert.throws(
        () => readMetricsToken(file),
        /^ValidationError: --metrics-token-file: .* must hold one token/,
      );
      assert.throws(
        () => readMetricsToken(join(dir, "missing")),
        /^ValidationError: --metrics-token-file: cannot read/,
      );
      assert.equal(parseDaemonConfig("agent:\n  metricsTokenFile: /t\n").agent?.metricsTokenFile, "/t");
      assert.throws(() => parseDaemonConfig("controller:\n  metricsTokenFile: rel\n"), /absolute path/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("listen addresses", () => {
    assert.deepEqual(parseListenAddress("0.0.0.0:9809"), { host: "0.0.0.0", port: 9809 });
    assert.deepEqual(parseListenAddress("[::]:0"), { host: "::", port: 0 });
    assert.deepEqual(parseListenAddress("localhost:80"), { host: "localhost", port: 80 });
    assert.equal(parseListenAddress("9809"), undefined);
    assert.equal(parseListenAddress("a:70000"), undefined);
    // A bare IPv6 literal, as $(POD_IP):9809 expands on an IPv6 cluster; not other colon soup.
    assert.deepEqual(parseListenAddress("fd00::5:9809"), { host: "fd00::5", port: 9809 });
    assert.equal(parseListenAddress("a:b:9809"), undefined);
  });

  it("a flag beats the file, the file beats the default", () => {
    assert.equal(pick("flag", "file", "default"), "flag");
    assert.equal(pick(undefined, "file", "default"), "file");
    assert.equal(pick(undefined, undefined, "default"), "default");
    assert.equal(pick(0, 5, 9), 0, "a flag of 0 is given");
  });

  const generated = parseDaemonConfig(stringify(configFile(defaultManifestOptions("1.2.3"))));

  it("agent: every field of the generated file is used, and each flag beats it", () => {
    assert.deepEqual(agentSettings({}, generated, { POD_NAMESPACE: "ignored-when-the-file-says" }), {
      datastore: "kubernetes",
      namespace: "podcrypt-system",
      stateDir: "/var/lib/podcrypt",
      clusterCidrs: [],
      underlayIf: undefined,
      wireguardPort: 51820,
      dataplane: "auto",
      heartbeatSeconds: 5,
      // Loopback by default: the manifests pass --health-address $(POD_IP):9809.
      health: { host: "127.0.0.1", port: 9809 },
      metricsTokenFile: undefined,
      logLevel: "info",
      // The manifests gate workloads on the tunnels (src/agent/gate.ts).
      notReadyTaint: true,
      hostExclude: { cidrs: [], ports: [] },
    });
    const flags = {
      datastore: "local:/tmp/x",
      namespace: "other",
      stateDir: "/keys",
      clusterCidr: ["10.0.0.0/8"],
      underlayIf: "ens3",
      wireguardPort: 4000,
      dataplane: "userspace" as const,
      heartbeatSeconds: 2,
      healthAddress: "off",
      metricsTokenFile: "/run/secrets/token",
      logLevel: "debug",
      notReadyTaint: false,
    };
    assert.deepEqual(agentSettings(flags, generated, {}), {
      datastore: "local:/tmp/x",
      namespace: "other",
      stateDir: "/keys",
      clusterCidrs: ["10.0.0.0/8"],
      underlayIf: "ens3",
      wireguardPort: 4000,
      dataplane: "userspace",
      heartbeatSeconds: 2,
      health: undefined,
      metricsTokenFile: "/run/secrets/token",
      logLevel: "debug",
      notReadyTaint: false,
      hostExclude: { cidrs: [], ports: [] },
    });
    // No file: the defaults (no taint: only a Kubernetes Node carries one), and the pod's namespace.
    const none = agentSettings({}, {}, { POD_NAMESPACE: "enc" });
    assert.deepEqual(
      [none.datastore, none.namespace, none.stateDir, none.health, none.notReadyTaint],
      ["local", "enc", "/var/lib/podcrypt/agent", { host: "127.0.0.1", port: 9809 }, false],
    );
    assert.throws(
      () => agentSettings({ healthAddress: "9809" }, {}, {}),
      /--health-address: "9809" is not HOST:PORT/,
    );
  });

  it("agent: host encryption's exclusions from the file", () => {
    const file = parseDaemonConfig(
      "agent:\n  hostEncryptionExclude:\n    cidrs: [10.0.0.0/8, 192.168.1.7/32, 'FD00:0:0::/48', '2001:db8::7/128']\n    ports: [tcp/22, udp/53]\n",
    );
    // IPv6 CIDRs in the text ip -6 rule prints them in, so a pass finds its rules as it wanted them.
    assert.deepEqual(agentSettings({}, file, {}).hostExclude, {
      cidrs: ["10.0.0.0/8", "192.168.1.7/32", "fd00::/48", "2001:db8::7/128"],
      ports: [
        { protocol: "tcp", port: 22 },
        { protocol: "udp", port: 53 },
      ],
    });
    assert.equal(parseDaemonConfig("cluster:\n  hostEncryption: true\n").cluster?.hostEncryption, true);
    assert.deepEqual(parseDaemonConfig("cluster:\n  hostEncryption: true\n  strictHost: true\n").cluster, {
      hostEncryption: true,
      strictHost: true,
    });
  });

  it("controller: every field of the generated file is used, and each flag beats it", () => {
    const s = controllerSettings({}, generated, { POD_NAME: "podcrypt-controller-7d9f" }, "host-1");
    assert.deepEqual(s, {
      datastore: "kubernetes",
      namespace: "podcrypt-system",
      identity: "podcrypt-controller-7d9f",
      electionName: "podcrypt-controller",
      leaseTtlSeconds: 15,
      phaseTimeoutSeconds: 30,
      health: { host: "127.0.0.1", port: 9808 },
      metricsTokenFile: undefined,
      logLevel: "info",
      seed: {
        enabled: true,
        mode: "wireguard",
        encryption: "all",
        strict: true,
        rotationInterval: "1h",
        hostEncryption: false,
      },
    });
    const f = controllerSettings(
      { identity: "c-2", election: "other", leaseTtl: 3, healthAddress: "127.0.0.1:0", logLevel: "warn" },
      generated,
      { POD_NAME: "p" },
      "host-1",
    );
    assert.deepEqual(
      [f.identity, f.electionName, f.leaseTtlSeconds, f.health, f.logLevel],
      ["c-2", "other", 3, { host: "127.0.0.1", port: 0 }, "warn"],
    );
    assert.equal(controllerSettings({}, {}, {}, "host-1").identity, "host-1");
    assert.equal(controllerSettings({}, {}, {}, "host-1").leaseTtlSeconds, 5);
  });

  it("takes the phase timeout from the flag, else the file, else 30 s; the file's is checked", () => {
    const file = parseDaemonConfig("controller:\n  phaseTimeoutSeconds: 120\n");
    assert.equal(controllerSettings({}, {}, {}, "h").phaseTimeoutSeconds, 30);
    assert.equal(controllerSettings({}, file, {}, "h").phaseTimeoutSeconds, 120);
    assert.equal(controllerSettings({ phaseTimeout: 60 }, file, {}, "h").phaseTimeoutSeconds, 60);
    assert.throws(() => parseDaemonConfig("controller:\n  phaseTimeoutSeconds: 1\n", "config.yaml"), {
      name: "ValidationError",
      message: /config\.yaml: controller\.phaseTimeoutSeconds: /,
    });
  });
});
