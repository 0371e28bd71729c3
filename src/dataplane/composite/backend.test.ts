import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { desiredState, type AgentSettings } from "../../agent/desired.js";
import { parseResource, type ClusterEncryptionInput, type EncryptionMode } from "../../model/index.js";
import type { DesiredGeneration, DesiredRoute, DesiredStrict, ObservedPeer } from "../types.js";
import type { StrictDrop } from "../node/nft.js";
import { CompositeBackend, type NodePorts } from "./backend.js";
import type { GenerationBackend } from "./types.js";

/**
 * A stateful in-memory node: interfaces, the routing table and the strict drops, with the
 * invariants of make-before-break checked on every change (a violation is a packet lost or sent in
 * plaintext on a real node).
 */
class FakeNode implements NodePorts {
  readonly ifaces = new Set<string>();
  routes = new Map<string, DesiredRoute>();
  drops = { dropOutbound: false, dropInbound: false };
  readonly violations: string[] = [];
  readonly log: string[] = [];
  failRoutesOnce = false;
  /** rp_filter by interface, as loosenUnderlay leaves it. */
  readonly rpFilter = new Map<string, string>();

  loosenUnderlay = async (ifname: string): Promise<void> => {
    this.rpFilter.set(ifname, "2");
  };

  private check(when: string): void {
    for (const r of this.routes.values()) {
      if (r.kind === "tunnel" && !this.ifaces.has(r.dev))
        this.violations.push(`${when}: route ${r.dst} into missing ${r.dev}`);
      if (r.kind === "plain" && this.drops.dropOutbound)
        this.violations.push(`${when}: plain route ${r.dst} while plaintext is dropped`);
    }
  }

  reconcileRoutes = async (routes: DesiredRoute[]): Promise<number> => {
    if (this.failRoutesOnce) {
      this.failRoutesOnce = false;
      throw new Error("EBUSY: route table locked");
    }
    this.routes = new Map(routes.map((r) => [r.dst, r]));
    this.log.push("routes");
    this.check("routes");
    return routes.length;
  };

  strict = {
    current: undefined as DesiredStrict | undefined,
    invalidations: 0,
    relax: async (s: DesiredStrict): Promise<void> => {
      const cur = this.strict.current;
      this.setDrops(
        cur === undefined
          ? s
          : {
              ...s,
              dropOutbound: s.dropOutbound && cur.dropOutbound,
              dropInbound: s.dropInbound && cur.dropInbound,
            },
      );
    },
    reconcile: async (s: DesiredStrict): Promise<void> => this.setDrops(s),
    invalidate: (): void => {
      this.strict.invalidations++;
    },
    // The fake carries no packets, so its rules never drop one.
    drops: async (): Promise<StrictDrop[]> => [],
  };

  private setDrops(s: DesiredStrict): void {
    this.strict.current = s;
    this.drops = { dropOutbound: s.dropOutbound, dropInbound: s.dropInbound };
    this.check("strict");
  }
}

/**
 * A data plane of one mode over the fake node: one interface per generation (WireGuard) or one
 * shared interface for all (ESP), with the same retire rule as the real ones.
 */
class FakeGenerations implements GenerationBackend {
  readonly installed = new Map<string, DesiredGeneration>();
  constructor(
    readonly kind: "wireguard-userspace" | "esp-userspace",
    private readonly node: FakeNode,
    private readonly shared?: string,
  ) {}

  async applyGenerations(gens: DesiredGeneration[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const g of gens) {
      const dev = this.shared ?? g.ifname;
      this.node.ifaces.add(dev);
      this.installed.set(g.ifname, g);
      out.set(g.ifname, dev);
    }
    this.node.log.push(`apply ${this.kind} ${gens.map((g) => g.epoch).join(",")}`);
    return out;
  }

  async retireGenerations(gens: DesiredGeneration[]): Promise<void> {
    const keep = new Set(gens.map((g) => g.ifname));
    for (const ifname of [...this.installed.keys()]) if (!keep.has(ifname)) this.installed.delete(ifname);
    const devs = this.shared !== undefined ? (gens.length > 0 ? [] : [this.shared]) : [];
    if (this.shared === undefined)
      for (const d of [...this.node.ifaces]) if (/^pc1w[01]$/.test(d) && !keep.has(d)) devs.push(d);
    for (const d of devs) {
      if (!this.node.ifaces.has(d)) continue;
      for (const r of this.node.routes.values())
        if (r.kind === "tunnel" && r.dev === d)
          this.node.violations.push(`retire ${d}: route ${r.dst} still there`);
      this.node.ifaces.delete(d);
    }
  }

  async observe(): Promise<ObservedPeer[]> {
    return [];
  }

  async close(): Promise<void> {}
}

const settings: AgentSettings = {
  node: "a",
  ifPrefix: "pc1w",
  wireguardPort: 51820,
  underlayIf: "eth0",
  mtu: 1440,
};
const key = (n: number): string => Buffer.alloc(32, n).toString("base64");

function nodes(epochs: number[]) {
  return ["a", "b", "c"].map((name, i) =>
    parseResource("nodes", {
      name,
      underlay: { ipv4: `172.30.0.${11 + i}` },
      podCIDRs: [`10.244.${i + 1}.0/24`],
      publicKeys: Object.fromEntries(epochs.map((e) => [String(e), key(e * 10 + i)])),
      saInstance: `${i}`.padStart(32, "0"),
    }),
  );
}

function cluster(c: Partial<ClusterEncryptionInput>) {
  return parseResource("clusterencryptions", { name: "default", ...c });
}

/** The phases of one run from `from` (epoch e) to `to` (epoch e+1), as the controller steps them. */
function run(e: number, from: EncryptionMode | "off", to: EncryptionMode | "off") {
  const applied =
    from === "off" ? { enabled: false, mode: "wireguard" as const } : { enabled: true, mode: from };
  const target = to === "off" ? { enabled: false, mode: applied.mode } : { enabled: true, mode: to };
  const base = { enabled: target.enabled, mode: target.mode, applied, epoch: e };
  return [
    cluster({ ...base, phase: "prepare", target: { epoch: e + 1, ...target } }),
    cluster({ ...base, phase: "switch", target: { epoch: e + 1, ...target } }),
    cluster({ ...base, phase: "retire", target: { epoch: e + 1, ...target } }),
    cluster({ enabled: target.enabled, mode: target.mode, applied: target, epoch: e + 1 }),
  ];
}

function setup() {
  const node = new FakeNode();
  const wg = new FakeGenerations("wireguard-userspace", node);
  const esp = new FakeGenerations("esp-userspace", node, "pc1we");
  const backend = new CompositeBackend({
    backends: { wireguard: wg, ipsec: esp },
    managedRoute: (d) => d.startsWith("10.244."),
    ports: node,
  });
  return { node, wg, esp, backend };
}

const privateKey = (): Buffer => Buffer.alloc(32, 7);
/** Every WireGuard session up: routes follow the sending generation at once. */
const sessionsUp = (): boolean => true;

describe("CompositeBackend", () => {
  it("switches wireguard -> ipsec -> wireguard -> off -> ipsec make-before-break", async () => {
    const { node, backend } = setup();
    let epoch = 1;
    await backend.reconcile(
      desiredState(
        settings,
        cluster({ mode: "wireguard", applied: { enabled: true, mode: "wireguard" }, epoch }),
        nodes([epoch]),
        sessionsUp,
      ),
      privateKey,
    );
    assert.equal(backend.kind, "wireguard-userspace");
    assert.deepEqual([...node.rpFilter], [["eth0", "2"]], "loose reverse-path filtering on the underlay");
    assert.deepEqual(node.routes.get("10.244.2.0/24"), {
      dst: "10.244.2.0/24",
      kind: "tunnel",
      dev: "pc1w1",
    });
    const seen: string[] = [];
    for (const [from, to] of [
      ["wireguard", "ipsec"],
      ["ipsec", "ipsec"],
      ["ipsec", "wireguard"],
      ["wireguard", "off"],
      ["off", "ipsec"],
    ] as const) {
      for (const c of run(epoch, from, to)) {
        await backend.reconcile(desiredState(settings, c, nodes([epoch, epoch + 1]), sessionsUp), privateKey);
        const r = node.routes.get("10.244.2.0/24")!;
        seen.push(`${c.phase}:${r.kind === "tunnel" ? r.dev : r.kind}`);
      }
      epoch++;
      assert.equal(
        backend.kind,
        to === "ipsec" ? "esp-userspace" : to === "wireguard" ? "wireguard-userspace" : backend.kind,
      );
    }
    assert.deepEqual(node.violations, []);
    // Tunnel routes follow the sending generation onto the interface that carries it.
    assert.deepEqual(seen, [
      ...["prepare:pc1w1", "switch:pc1we", "retire:pc1we", "idle:pc1we"],
      ...["prepare:pc1we", "switch:pc1we", "retire:pc1we", "idle:pc1we"],
      ...["prepare:pc1we", "switch:pc1w0", "retire:pc1w0", "idle:pc1w0"],
      ...["prepare:pc1w0", "switch:plain", "retire:plain", "idle:plain"],
      ...["prepare:plain", "switch:pc1we", "retire:pc1we", "idle:pc1we"],
    ]);
    // After the last run only the ESP interface is left, and strict drops are back on.
    assert.deepEqual([...node.ifaces], ["pc1we"]);
    assert.deepEqual(node.drops, { dropOutbound: true, dropInbound: true });
  });

  it("orders one pass: relax, generations, routes, strict, retire", async () => {
    const { node, backend } = setup();
    const [prepare, sw, retire] = run(4, "wireguard", "ipsec");
    for (const c of [prepare!, sw!])
      await backend.reconcile(desiredState(settings, c, nodes([4, 5]), sessionsUp), privateKey);
    node.log.length = 0;
    await backend.reconcile(desiredState(settings, retire!, nodes([5]), sessionsUp), privateKey);
    assert.deepEqual(node.log, ["apply esp-userspace 5", "routes"]);
    assert.ok(!node.ifaces.has("pc1w0"), "the WireGuard generation is retired after routes left it");
  });

  it("catches up in one pass when the agent missed the switch: routes move before the old generation goes", async () => {
    const { node, backend } = setup();
    const [prepare, , retire] = run(4, "wireguard", "ipsec");
    await backend.reconcile(desiredState(settings, prepare!, nodes([4, 5]), sessionsUp), privateKey);
    assert.equal((node.routes.get("10.244.3.0/24") as { dev?: string }).dev, "pc1w0");
    await backend.reconcile(desiredState(settings, retire!, nodes([5]), sessionsUp), privateKey);
    assert.equal((node.routes.get("10.244.3.0/24") as { dev?: string }).dev, "pc1we");
    assert.deepEqual(node.violations, []);
    assert.deepEqual([...node.ifaces], ["pc1we"]);
  });

  it("refuses a generation of a mode the node has no data plane for, and resyncs strict after a failure", async () => {
    const node = new FakeNode();
    const backend = new CompositeBackend({
      backends: { wireguard: new FakeGenerations("wireguard-userspace", node) },
      managedRoute: () => true,
      ports: node,
    });
    const c = cluster({ mode: "ipsec", applied: { enabled: true, mode: "ipsec" }, epoch: 1 });
    await assert.rejects(
      backend.reconcile(desiredState(settings, c, nodes([1]), sessionsUp), privateKey),
      /no data plane for mode ipsec/,
    );
    assert.equal(node.strict.invalidations, 1);
    const ok = cluster({ mode: "wireguard", applied: { enabled: true, mode: "wireguard" }, epoch: 1 });
    node.failRoutesOnce = true;
    await assert.rejects(
      backend.reconcile(desiredState(settings, ok, nodes([1]), sessionsUp), privateKey),
      /EBUSY/,
    );
    assert.equal(node.strict.invalidations, 2);
    await backend.reconcile(desiredState(settings, ok, nodes([1]), sessionsUp), privateKey);
    assert.deepEqual(node.violations, []);
  });
});
