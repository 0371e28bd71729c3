import { applied } from "../controller/phases.js";
import type { ClusterEncryption, EncryptionMode, Node } from "../model/index.js";
import type { DesiredGeneration, DesiredNodeState, DesiredRoute } from "../dataplane/types.js";

/** Node-local settings of the agent. */
export interface AgentSettings {
  node: string;
  /** Tunnel interface prefix: generation slot s is `${ifPrefix}${s}`. Default `podcrypt`. */
  ifPrefix: string;
  /** WireGuard listen port of slot 0; slot 1 uses the next. Default 51820. */
  wireguardPort: number;
  /** The underlay interface. Default `eth0`. */
  underlayIf: string;
  mtu: number;
}

interface Gen {
  epoch: number;
  mode: EncryptionMode;
}

/** The generations (epoch + mode) a node must hold in the cluster's current phase. */
export function generationsFor(c: ClusterEncryption): { installed: Gen[]; sending: Gen | undefined } {
  const a = applied(c);
  const current: Gen | undefined = a.enabled ? { epoch: c.epoch, mode: a.mode } : undefined;
  const t = c.target;
  const next: Gen | undefined = t !== undefined && t.enabled ? { epoch: t.epoch, mode: t.mode } : undefined;
  switch (c.phase) {
    case "idle":
      return { installed: current ? [current] : [], sending: current };
    case "prepare":
      return { installed: [current, next].filter((g): g is Gen => g !== undefined), sending: current };
    case "switch":
      return { installed: [current, next].filter((g): g is Gen => g !== undefined), sending: next };
    case "retire":
      return { installed: next ? [next] : [], sending: next };
  }
}

/** Epochs whose private keys the node must hold now; keys of every other epoch can be deleted. */
export function epochsNeeded(c: ClusterEncryption): number[] {
  return generationsFor(c).installed.map((g) => g.epoch);
}

/** Strict-mode drops for the phase (DESIGN.md sections 3 and 4). */
export function strictFor(c: ClusterEncryption): { dropOutbound: boolean; dropInbound: boolean } {
  if (!c.strict) return { dropOutbound: false, dropInbound: false };
  const a = applied(c).enabled;
  const t = c.target?.enabled ?? a;
  switch (c.phase) {
    case "idle":
      return { dropOutbound: a, dropInbound: a };
    case "prepare":
      // Still sending the applied way; plaintext is accepted from now on when disabling.
      return { dropOutbound: a, dropInbound: a && t };
    case "switch":
      // Sending the target way; others may still send the old way until retire.
      return { dropOutbound: t, dropInbound: a && t };
    case "retire":
      return { dropOutbound: t, dropInbound: t };
  }
}

/**
 * The desired data-plane state of `settings.node`, pure: generations with the peers that
 * published keys for their epoch, routes to every other node's pods (through the sending
 * generation, in plaintext when encryption is off, or a blackhole when the peer has no key yet),
 * and strict-mode drops.
 */
export function desiredState(settings: AgentSettings, c: ClusterEncryption, nodes: Node[]): DesiredNodeState {
  const self = nodes.find((n) => n.name === settings.node);
  const others = nodes.filter((n) => n.name !== settings.node).sort((a, b) => a.name.localeCompare(b.name));
  const { installed, sending } = generationsFor(c);
  const generations: DesiredGeneration[] = installed.map((g) => {
    const slot = (g.epoch % 2) as 0 | 1;
    const listenPort = settings.wireguardPort + slot;
    return {
      epoch: g.epoch,
      mode: g.mode,
      slot,
      ifname: `${settings.ifPrefix}${slot}`,
      listenPort,
      peers: others.flatMap((n) => {
        const key = n.publicKeys[String(g.epoch)];
        const address = n.underlay.ipv4 ?? n.underlay.ipv6;
        if (key === undefined || address === undefined) return [];
        return [
          {
            node: n.name,
            publicKey: key,
            endpoint: { address, port: listenPort },
            allowedIps: [...n.podCIDRs],
          },
        ];
      }),
    };
  });
  const routes: DesiredRoute[] = [];
  for (const n of others) {
    for (const dst of n.podCIDRs) {
      if (sending === undefined) {
        const via = n.underlay.ipv4 ?? n.underlay.ipv6;
        if (via !== undefined) routes.push({ dst, kind: "plain", via, dev: settings.underlayIf });
        continue;
      }
      // Prefer the sending generation; fall back to another installed one that knows the peer.
      const order = [...generations].sort((a, b) =>
        a.epoch === sending.epoch ? -1 : b.epoch === sending.epoch ? 1 : 0,
      );
      const gen = order.find((g) => g.peers.some((p) => p.node === n.name));
      routes.push(gen === undefined ? { dst, kind: "blackhole" } : { dst, kind: "tunnel", dev: gen.ifname });
    }
  }
  return {
    generations,
    routes,
    strict: {
      ...strictFor(c),
      underlayIf: settings.underlayIf,
      localPodCidrs: [...(self?.podCIDRs ?? [])],
      remotePodCidrs: others.flatMap((n) => n.podCIDRs),
    },
    mtu: settings.mtu,
  };
}

/**
 * Whether this node has done its part of the current phase, given what is installed: for
 * `prepare` with encryption as the target, the new generation must hold every live peer that is
 * itself live (a peer's key may come later; the controller times such peers out).
 */
export function readyToAcknowledge(
  desired: DesiredNodeState,
  c: ClusterEncryption,
  livePeers: string[],
): boolean {
  if (c.phase !== "prepare" || c.target === undefined || !c.target.enabled) return true;
  const gen = desired.generations.find((g) => g.epoch === c.target!.epoch);
  if (gen === undefined) return false;
  return livePeers.every((p) => gen.peers.some((q) => q.node === p));
}
