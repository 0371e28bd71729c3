import { randomBytes } from "node:crypto";
import { probeEndpointAddress, probeEndpointAddress6, PROBE_PORT } from "../agent/verify/endpoint.js";
import type { Datastore } from "../datastore/types.js";
import { PodcryptError } from "../errors/index.js";
import { parsePortRef } from "../localcluster/echo.js";
import type { PairResult, VerifyResult } from "../localcluster/verify.js";
import {
  CLUSTER_ENCRYPTION_NAME,
  verifyMarker,
  type Endpoints,
  type Service,
  type VerifyCheck,
  type VerifyRun,
} from "../model/index.js";
import { cidrContains } from "../platform/netlink/addr.js";
import { fromStored, resolveSelectors } from "../policy/index.js";
import type { Selector } from "../policy/types.js";

/** How long before a run's start the CLI writes it: agents must see it and open their captures. */
const LEAD_MS = 2500;
/** How long the probes wait for late echoes, and the captures after that (runner.ts). */
const RUN_TAIL_MS = 2000 + 1500;

/** What a selective run probes besides the endpoints: the services, their pods, the resolved policies. */
export interface SelectiveTargets {
  services: readonly Service[];
  endpoints: readonly Endpoints[];
  selectors: readonly Selector[];
}

/**
 * The run `verify --via-agents` asks for: every ordered pair of the nodes with a probe endpoint
 * (an IPv4 pod CIDR) and an underlay address, udp/7 between their endpoints. With selective
 * encryption (`selective` given) also, as the namespace verify does, every port of every service
 * with a pod on the receiving node: from the sender's probe endpoint to that pod (its IPv4
 * address), `selected` when the policies select it (the agent marks its endpoint's traffic as its
 * pods': src/dataplane/node/nft.ts), so both a selected port (must be encrypted) and unselected
 * ones (plaintext allowed, reported as such) are probed; the endpoints' own echo is never
 * selected. Nodes that both have IPv6 pods also get the echo between their IPv6 endpoints; with
 * `host` (host encryption on) every pair of nodes with IPv4 host addresses gets a node-to-node
 * echo between those addresses (`host: true`), which must be encrypted. Pure.
 */
export function planRun(
  nodes: ReadonlyArray<{ name: string; podCIDRs: string[]; underlay: { ipv4?: string; ipv6?: string } }>,
  o: {
    nonce: string;
    now: number;
    seconds: number;
    count: number;
    selective?: SelectiveTargets;
    /** Host encryption is on: add the node-to-node checks. */
    host?: boolean;
  },
): Omit<VerifyRun, "status"> {
  const usable = nodes.flatMap((n) => {
    const endpoint = probeEndpointAddress(n.podCIDRs);
    const underlay = n.underlay.ipv4 ?? n.underlay.ipv6;
    return endpoint === undefined || underlay === undefined
      ? []
      : [
          {
            name: n.name,
            endpoint,
            endpoint6: probeEndpointAddress6(n.podCIDRs),
            underlay,
            hostIPv4: n.underlay.ipv4,
            podCIDRs: n.podCIDRs,
          },
        ];
  });
  // Host encryption tunnels the nodes' IPv4 host addresses (docs/design.md#host-encryption): one
  // node-to-node echo per ordered pair of nodes that both have one, which must not be seen in
  // plaintext. The sender's source is its underlay address, the run's node entry.
  const hostCheck = (a: (typeof usable)[number], b: (typeof usable)[number]): VerifyCheck[] =>
    o.host === true && a.hostIPv4 !== undefined && a.underlay === a.hostIPv4 && b.hostIPv4 !== undefined
      ? [
          {
            from: a.name,
            to: b.name,
            address: b.hostIPv4,
            protocol: "udp",
            port: PROBE_PORT,
            selected: true,
            host: true,
          },
        ]
      : [];
  const sel = o.selective;
  const onNode = (b: (typeof usable)[number], a: Endpoints["addresses"][number]): boolean =>
    a.node !== undefined
      ? a.node === b.name
      : b.podCIDRs.some((c) => !c.includes(":") && cidrContains(c, `${a.ip}/32`));
  const serviceChecks = (from: string, b: (typeof usable)[number]): VerifyCheck[] =>
    (sel?.services ?? []).flatMap((svc) => {
      const eps = sel?.endpoints.find((e) => e.namespace === svc.namespace && e.name === svc.name);
      const pod = eps?.addresses.find((a) => !a.ip.includes(":") && onNode(b, a));
      if (pod === undefined) return [];
      return svc.ports.map((text) => {
        const { protocol, port } = parsePortRef(text);
        return {
          from,
          to: b.name,
          address: pod.ip,
          protocol,
          port,
          selected: (sel?.selectors ?? []).some(
            (x) => x.protocol === protocol && x.port === port && x.podIPs.includes(pod.ip),
          ),
          service: `${svc.namespace}/${svc.name}`,
        };
      });
    });
  const checks: VerifyCheck[] = usable.flatMap((a) =>
    usable
      .filter((b) => b.name !== a.name)
      .flatMap((b) => [
        {
          from: a.name,
          to: b.name,
          address: b.endpoint,
          protocol: "udp" as const,
          port: PROBE_PORT,
          // The endpoints are no pods of any policy: selective encryption leaves them in plaintext.
          selected: sel === undefined,
        },
        // Dual-stack pods: the endpoints' echo over IPv6 too, when both nodes have IPv6 pods.
        ...(a.endpoint6 === undefined || b.endpoint6 === undefined
          ? []
          : [
              {
                from: a.name,
                to: b.name,
                address: b.endpoint6,
                protocol: "udp" as const,
                port: PROBE_PORT,
                selected: sel === undefined,
              },
            ]),
        ...serviceChecks(a.name, b),
        ...hostCheck(a, b),
      ]),
  );
  return {
    name: `verify-${o.nonce}`,
    nonce: o.nonce,
    startAt: o.now + LEAD_MS,
    seconds: o.seconds,
    count: o.count,
    size: 0,
    nodes: usable.map(({ name, endpoint, endpoint6, underlay }) => ({
      name,
      endpoint,
      ...(endpoint6 === undefined ? {} : { endpoint6 }),
      underlay,
    })),
    checks,
  };
}

/** The verdicts of a finished run, in `verify`'s shape (see {@link PairResult}). Pure. */
export function runResult(run: VerifyRun, selective: boolean): VerifyResult {
  const reports = run.status?.reports ?? {};
  const gapMs = (run.seconds * 1000) / run.count;
  const pairs = run.checks.map((c): PairResult => {
    const marker = verifyMarker(run, c);
    const sender = reports[c.from];
    const receiver = reports[c.to];
    const probe = sender?.probes.find((p) => p.marker === marker);
    const seen = [sender, receiver].flatMap((r) => r?.seen.filter((s) => s.marker === marker) ?? []);
    const errors = [
      sender === undefined ? `no report from ${c.from}` : sender.error,
      receiver === undefined ? `no report from ${c.to}` : undefined,
    ].filter((x): x is string => x !== undefined);
    const lost = probe?.lost ?? [[0, run.count - 1]];
    const started = probe?.startedAt ?? run.startAt;
    const p: PairResult = {
      from: c.from,
      to: c.to,
      delivered: probe !== undefined && probe.echoed === run.count,
      plaintextSeen: seen.length > 0,
      fromPod:
        c.host === true
          ? `host/${run.nodes.find((n) => n.name === c.from)?.underlay ?? "?"}`
          : `probe-endpoint/${(c.address.includes(":") ? run.nodes.find((n) => n.name === c.from)?.endpoint6 : run.nodes.find((n) => n.name === c.from)?.endpoint) ?? "?"}`,
      toPod:
        c.host === true
          ? `host/${c.address}`
          : c.service === undefined
            ? `probe-endpoint/${c.address}`
            : `${c.service}/${c.address}`,
      family: c.address.includes(":") ? "ipv6" : "ipv4",
      protocol: c.protocol,
      port: c.port,
      ...(c.service === undefined ? {} : { service: c.service }),
      selected: c.selected,
      ...(c.host === true ? { host: true as const } : {}),
      sent: run.count,
      echoed: probe?.echoed ?? 0,
      losses: lost.map(([a, b]) => ({
        atMs: Math.round(a * gapMs),
        untilMs: Math.round(b * gapMs),
        at: new Date(started + Math.round(a * gapMs)).toISOString(),
        packets: b - a + 1,
      })),
      // The sender's capture must have seen its own negative control towards the receiver;
      // without a report there is no capture to trust either.
      captureBlind: sender?.controls.find((x) => x.to === c.to)?.seen !== true,
    };
    if (errors.length > 0) p.error = errors.join("; ");
    if (seen.length > 0) {
      const lastBySource: Record<string, number> = {};
      for (const s of seen)
        for (const [ip, t] of Object.entries(s.lastBySource))
          lastBySource[ip] = Math.max(t, lastBySource[ip] ?? 0);
      p.plaintextAt = {
        first: Math.min(...seen.map((s) => s.first)),
        last: Math.max(...seen.map((s) => s.last)),
        lastBySource,
      };
    }
    return p;
  });
  const reportList = Object.values(reports);
  return {
    ok:
      pairs.length > 0 &&
      pairs.every((p) => p.delivered && !(p.selected && p.plaintextSeen) && p.captureBlind !== true),
    encrypted: pairs.every((p) => !(p.selected && (p.plaintextSeen || p.captureBlind === true))),
    selective,
    pairs,
    capture: {
      packets: reportList.reduce((a, r) => a + r.capture.packets, 0),
      bytes: reportList.reduce((a, r) => a + r.capture.bytes, 0),
    },
  };
}

/** The services, their endpoints and what the policies select now, from `store`. */
async function selectiveTargets(store: Datastore): Promise<SelectiveTargets> {
  const [policies, services, endpoints] = await Promise.all([
    store.collection("encryptionpolicies").list(),
    store.collection("services").list(),
    store.collection("endpoints").list(),
  ]);
  const s = services.items.map((x) => x.value);
  const e = endpoints.items.map((x) => x.value);
  const { selectors } = resolveSelectors({
    policies: policies.items.map((p) => fromStored(p.value)),
    services: s,
    endpoints: e,
    pods: [],
  });
  return { services: s, endpoints: e, selectors };
}

/**
 * `podcrypt verify --via-agents`: writes a verify run into `store`, waits until every node of it
 * reported (or `timeoutMs` after the run's end), deletes it and returns the verdicts.
 */
export async function verifyViaAgents(
  store: Datastore,
  seconds: number,
  count: number,
  timeoutMs: number,
): Promise<VerifyResult> {
  const c = (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))?.value;
  const selective = c?.encryption === "selective";
  const host = c?.hostEncryption === true;
  const nodes = (await store.collection("nodes").list()).items.map((n) => n.value);
  const plan = planRun(nodes, {
    nonce: randomBytes(6).toString("hex"),
    now: Date.now(),
    seconds,
    count,
    host,
    ...(selective ? { selective: await selectiveTargets(store) } : {}),
  });
  if (plan.nodes.length < 2)
    throw new PodcryptError(
      "EVERIFY",
      `verify --via-agents needs two nodes with a probe endpoint (an IPv4 pod CIDR) and an underlay address; the datastore has ${plan.nodes.length}`,
    );
  const runs = store.collection("verifyruns");
  await runs.create(plan);
  try {
    const deadline = plan.startAt + seconds * 1000 + RUN_TAIL_MS + timeoutMs;
    for (;;) {
      const cur = (await runs.get(plan.name))?.value;
      if (cur === undefined)
        throw new PodcryptError("EVERIFY", `verify run ${plan.name} was deleted before it finished`);
      const reported = Object.keys(cur.status?.reports ?? {});
      if (plan.nodes.every((n) => reported.includes(n.name)) || Date.now() > deadline)
        return runResult(cur, selective);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await runs.delete(plan.name).catch(() => undefined);
  }
}
