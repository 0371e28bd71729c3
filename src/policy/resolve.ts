import { isIP } from "node:net";
import { sameList } from "../lists.js";
import { ruleKey } from "./parse.js";
import type {
  EndpointsInput,
  PodInput,
  Protocol,
  ResolveInputs,
  ResolveWarning,
  Selector,
  SelectorChange,
  SelectorDiff,
  SelectorSet,
} from "./types.js";

const PROTOCOL_ORDER: Readonly<Record<Protocol, number>> = { tcp: 0, udp: 1, sctp: 2 };

/** Orders IP strings: IPv4 before IPv6, IPv4 numerically, IPv6 by text. */
export function compareIPs(a: string, b: string): number {
  const fa = isIP(a);
  const fb = isIP(b);
  if (fa !== fb) return fa - fb;
  if (fa === 4) {
    const na = a.split(".").map(Number);
    const nb = b.split(".").map(Number);
    for (let i = 0; i < 4; i++) if (na[i] !== nb[i]) return na[i]! - nb[i]!;
    return 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function selectorKey(s: Pick<Selector, "node" | "protocol" | "port">): string {
  return `${s.node}\u0000${s.protocol}\u0000${s.port}`;
}

function compareSelectors(a: Selector, b: Selector): number {
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  if (a.protocol !== b.protocol) return PROTOCOL_ORDER[a.protocol] - PROTOCOL_ORDER[b.protocol];
  return a.port - b.port;
}

function matches(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

/**
 * The pod IPs behind one service with the node each runs on. Endpoints, when present, are
 * authoritative (they carry readiness); otherwise the service's selector is matched against pods
 * of its namespace, as the endpoints controller would. IPs whose node is unknown are returned in
 * `unplaced`.
 */
function backends(
  namespace: string,
  name: string,
  inputs: ResolveInputs,
  endpointsByKey: ReadonlyMap<string, EndpointsInput>,
  podByIP: ReadonlyMap<string, PodInput>,
): { placed: { ip: string; node: string }[]; unplaced: string[]; found: boolean } {
  const key = `${namespace}/${name}`;
  const eps = endpointsByKey.get(key);
  const placed: { ip: string; node: string }[] = [];
  const unplaced: string[] = [];
  if (eps !== undefined) {
    for (const a of eps.addresses) {
      const node = a.node ?? podByIP.get(a.ip)?.node;
      if (node === undefined) unplaced.push(a.ip);
      else placed.push({ ip: a.ip, node });
    }
    return { placed, unplaced, found: true };
  }
  const svc = inputs.services.find((s) => s.namespace === namespace && s.name === name);
  if (svc === undefined) return { placed, unplaced, found: false };
  for (const pod of inputs.pods)
    if (pod.namespace === namespace && matches(svc.selector ?? {}, pod.labels ?? {}))
      placed.push({ ip: pod.ip, node: pod.node });
  return { placed, unplaced, found: true };
}

/**
 * Resolves policies to the full desired selector set: for every rule, the pod IPs of its service
 * (docs/design.md#selective-encryption), one selector per destination node, protocol and port. Pure and
 * deterministic: the same inputs give an equal set (sorted by node, protocol, port; IPs and sources
 * sorted), so callers recompute from the full current state on any change and diff the result
 * with `diffSelectors`. Rules that resolve to nothing (service absent, no endpoints) yield warnings,
 * not errors: a policy may be created before its service.
 */
export function resolveSelectors(inputs: ResolveInputs): SelectorSet {
  const endpointsByKey = new Map<string, EndpointsInput>();
  for (const e of inputs.endpoints ?? []) endpointsByKey.set(`${e.namespace}/${e.name}`, e);
  const podByIP = new Map<string, PodInput>();
  for (const p of inputs.pods) podByIP.set(p.ip, p);

  const acc = new Map<
    string,
    { node: string; protocol: Protocol; port: number; ips: Set<string>; sources: Set<string> }
  >();
  const warnings: ResolveWarning[] = [];
  for (const policy of inputs.policies)
    for (const rule of policy.rules) {
      const source = ruleKey(policy, rule.name);
      const b = backends(rule.namespace, rule.service, inputs, endpointsByKey, podByIP);
      if (!b.found) warnings.push({ source, message: `service ${rule.namespace}/${rule.service} not found` });
      else if (b.placed.length === 0 && b.unplaced.length === 0)
        warnings.push({ source, message: `service ${rule.namespace}/${rule.service} has no endpoints` });
      if (b.unplaced.length > 0)
        warnings.push({
          source,
          message: `endpoint IPs on no known node: ${[...new Set(b.unplaced)].sort(compareIPs).join(", ")}`,
        });
      for (const { ip, node } of b.placed)
        for (const { protocol, port } of rule.ports) {
          const k = selectorKey({ node, protocol, port });
          let s = acc.get(k);
          if (s === undefined) {
            s = { node, protocol, port, ips: new Set(), sources: new Set() };
            acc.set(k, s);
          }
          s.ips.add(ip);
          s.sources.add(source);
        }
    }
  const selectors: Selector[] = [...acc.values()].map((s) => ({
    node: s.node,
    protocol: s.protocol,
    port: s.port,
    podIPs: [...s.ips].sort(compareIPs),
    sources: [...s.sources].sort(),
  }));
  selectors.sort(compareSelectors);
  warnings.sort((a, b) =>
    a.source < b.source ? -1 : a.source > b.source ? 1 : a.message < b.message ? -1 : 1,
  );
  return { selectors, warnings };
}

/**
 * The difference between two selector sets, keyed by (node, protocol, port). A selector whose pod
 * IPs or sources changed is `changed`, with the IPs added and removed. Apply `added` and `changed`
 * before `removed` so traffic that stays selected is never left unselected in between.
 */
export function diffSelectors(before: SelectorSet, after: SelectorSet): SelectorDiff {
  const old = new Map(before.selectors.map((s) => [selectorKey(s), s]));
  const now = new Map(after.selectors.map((s) => [selectorKey(s), s]));
  const added: Selector[] = [];
  const removed: Selector[] = [];
  const changed: SelectorChange[] = [];
  for (const [k, s] of now) {
    const o = old.get(k);
    if (o === undefined) added.push(s);
    else if (!sameList(o.podIPs, s.podIPs) || !sameList(o.sources, s.sources)) {
      const was = new Set(o.podIPs);
      const is = new Set(s.podIPs);
      changed.push({
        before: o,
        after: s,
        addedIPs: s.podIPs.filter((ip) => !was.has(ip)),
        removedIPs: o.podIPs.filter((ip) => !is.has(ip)),
      });
    }
  }
  for (const [k, s] of old) if (!now.has(k)) removed.push(s);
  added.sort(compareSelectors);
  removed.sort(compareSelectors);
  changed.sort((a, b) => compareSelectors(a.after, b.after));
  return { added, removed, changed };
}

/** The selectors whose pods run on `node`: what that node's agent accepts only encrypted. */
export function selectorsForNode(set: SelectorSet, node: string): Selector[] {
  return set.selectors.filter((s) => s.node === node);
}

/** True when the diff changes nothing. */
export function isEmptyDiff(d: SelectorDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0;
}
