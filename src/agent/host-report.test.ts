import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseResource, type ClusterEncryption, type Node } from "../model/index.js";
import { desiredState, type AgentSettings } from "./desired.js";
import { hostReport } from "./host-report.js";

const SETTINGS: AgentSettings = {
  node: "node-1",
  ifPrefix: "podcrypt",
  wireguardPort: 51820,
  underlayIf: "eth0",
  mtu: 1420,
};

const KEY = (c: string): string => Buffer.alloc(32, c).toString("base64");

function node(i: number, keys: Record<string, string>): Node {
  return parseResource("nodes", {
    name: `node-${i}`,
    underlay: { ipv4: `172.30.0.${10 + i}` },
    podCIDRs: [`10.244.${i}.0/24`],
    publicKeys: keys,
  });
}

function cluster(hostEncryption: boolean, phase: "idle" | "prepare" = "idle"): ClusterEncryption {
  const at = "2026-12-01T00:00:00.000Z";
  return parseResource("clusterencryptions", {
    name: "default",
    enabled: true,
    mode: "wireguard",
    hostEncryption,
    applied: { enabled: phase === "idle", mode: "wireguard" },
    epoch: 4,
    phase,
    lastCompletedAt: at,
    ...(phase === "idle"
      ? {}
      : { target: { epoch: 5, enabled: true, mode: "wireguard" }, phaseStartedAt: { prepare: at } }),
  });
}

describe("hostReport: what a node says of its host encryption", () => {
  const nodes = [node(1, { "4": KEY("a") }), node(2, { "4": KEY("b") }), node(3, { "4": KEY("c") })];
  const up = (): boolean => true;

  it("off: not applied, no routes, no peers", () => {
    assert.deepEqual(hostReport(desiredState(SETTINGS, cluster(false), nodes, up), nodes), {
      applied: false,
      routes: 0,
      peers: [],
    });
  });

  it("on: applied, one host route per peer whose tunnel carries traffic, each named", () => {
    assert.deepEqual(hostReport(desiredState(SETTINGS, cluster(true), nodes, up), nodes), {
      applied: true,
      routes: 2,
      peers: ["node-2", "node-3"],
    });
  });

  it("on, a peer without a published key: applied, that peer has no host route (its host traffic is plaintext)", () => {
    const keyless = [nodes[0]!, nodes[1]!, node(3, {})];
    assert.deepEqual(hostReport(desiredState(SETTINGS, cluster(true), keyless, up), keyless), {
      applied: true,
      routes: 1,
      peers: ["node-2"],
    });
  });

  it("on while enable prepares (nothing sent through the tunnels yet): applied, no routes", () => {
    assert.deepEqual(hostReport(desiredState(SETTINGS, cluster(true, "prepare"), nodes, up), nodes), {
      applied: true,
      routes: 0,
      peers: [],
    });
  });
});
