// test-tier: netns (root: network namespaces)
/**
 * A lying node on a real local cluster (WireGuard, userspace, local datastore): node-2's record
 * claims 10.244.1.0/25, a more specific prefix of node-1's pod CIDR 10.244.1.0/24, with fresh
 * heartbeats, as a compromised node-2 could write it. If node-3 believed it, the longer prefix
 * would win and node-3 would encrypt the traffic for half of node-1's pods to node-2, which
 * decrypts it. The test shows that it does not happen:
 *
 * - a capture in node-2's namespace (every interface, its tunnel devices included, where what it
 *   decrypts appears) sees no packet of node-3's pods to node-1's pods while `verify` sends
 *   100 datagrams/s per pod pair, and every pair loses nothing and nothing crosses the underlay
 *   in plaintext;
 * - `podcrypt status` (text and --json) reports the claim as refused by node-1 and node-3 (their
 *   agents' own reports), and their `podcrypt_agent_refused_claims` metric counts it.
 *
 * node-2's agent is held (SIGSTOP; the supervisor restarts only what died) so that it does not
 * write its true record back; its data plane keeps running. The test writes the lying record
 * instead, every second, and restores the true one at the end.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { after, it } from "node:test";
import { openDatastore } from "../../src/cli/datastore.js";
import { readClusterState } from "../../src/localcluster/state.js";
import { agentMetrics } from "./agent-metrics.js";
import { assertTraffic, faultSuite, sleep, waitUntil, type FaultCluster } from "../faults/harness.js";

const LIAR = "node-2";
const VICTIM = "node-1";
const SENDER = "node-3";
/** More specific than the victim's 10.244.1.0/24: it would win the route if believed. */
const LIE = "10.244.1.0/25";
/** What node-3's pods send to node-1's pods, as it would appear once decrypted at the liar. */
const DIVERTED = "src net 10.244.3.0/24 and dst net 10.244.1.0/24";

const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill("SIGKILL");
});

interface Refusal {
  node: string;
  field: string;
  value: string;
  reason: string;
  with?: string;
  by: string[];
}

/** Counts the packets matching {@link DIVERTED} in `netns`, on every interface, until stopped. */
async function countDiverted(netns: string): Promise<{ stop: () => Promise<number> }> {
  const t = spawn(
    "ip",
    [
      "netns",
      "exec",
      netns,
      "tshark",
      "-n",
      "-l",
      "-i",
      "any",
      "-f",
      DIVERTED,
      "-T",
      "fields",
      "-e",
      "ip.dst",
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  children.add(t);
  let out = "";
  let err = "";
  t.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  t.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => t.once("exit", () => resolve()));
  await waitUntil(
    () => {
      assert.equal(t.exitCode, null, `tshark exited: ${err}`);
      return err.includes("Capturing on");
    },
    30_000,
    "tshark capturing in the liar's namespace",
  );
  return {
    async stop() {
      await sleep(1000); // what is in flight
      t.kill("SIGINT");
      await exited;
      children.delete(t);
      return out.split("\n").filter((l) => l.trim() !== "").length;
    },
  };
}

async function lyingNode(c: FaultCluster): Promise<void> {
  const state = readClusterState(c.home);
  assert.ok(state !== undefined, "cluster.json");
  const netns = (name: string): string => {
    const n = state.plan.nodes.find((x) => x.name === name);
    assert.ok(n !== undefined, `${name} planned`);
    return n.netns;
  };
  assert.equal(
    state.plan.nodes.find((n) => n.name === VICTIM)?.podCIDR,
    "10.244.1.0/24",
    "the victim's pod CIDR",
  );
  const store = await openDatastore(state.datastore);
  const nodes = store.collection("nodes");
  const truth = (await nodes.get(LIAR))!.value;
  const resume = c.freeze(`agent-${LIAR}`);
  let lying = true;
  // The lie, with a fresh heartbeat every second: node-2 looks alive and sure of itself.
  const writer = (async () => {
    while (lying) {
      const cur = await nodes.get(LIAR);
      if (cur !== undefined)
        await nodes
          .update(
            { ...cur.value, podCIDRs: [...truth.podCIDRs, LIE], heartbeat: new Date().toISOString() },
            { revision: cur.revision },
          )
          .catch(() => undefined);
      await sleep(1000);
    }
  })();
  try {
    // The lie is in the store; the agents see it within a pass (they watch the records).
    await waitUntil(
      async () => (await nodes.get(LIAR))?.value.podCIDRs.includes(LIE) ?? false,
      10_000,
      "the lying record written",
    );
    await sleep(3000);
    // Traffic to the victim's pods from the other nodes: none of it reaches the liar.
    const capture = await countDiverted(netns(LIAR));
    const v = await c.traffic(10);
    const diverted = await capture.stop();
    assert.equal(diverted, 0, `${diverted} packets of node-3's pods to node-1's pods reached ${LIAR}`);
    const lost = assertTraffic(v, {}, `${LIAR} claiming ${LIE}`);
    const sent = v.pairs.find((p) => p.from === SENDER && p.to === VICTIM);
    process.stdout.write(
      `# ${LIAR} claiming ${LIE}: ${diverted} packets of ${SENDER}->${VICTIM} (${sent?.sent ?? "?"} sent) reached ${LIAR}; worst pair lost ${lost}\n`,
    );

    // Both honest agents report the claim refused (the liar's own report says nothing).
    let seen: Refusal[] = [];
    await waitUntil(
      async () => {
        const s = await c.status().catch(() => undefined);
        seen = (s?.refusedClaims as Refusal[] | undefined) ?? [];
        return seen.some((r) => r.value === LIE && r.by.includes(VICTIM) && r.by.includes(SENDER));
      },
      30_000,
      `node-1 and node-3 to report ${LIE} of ${LIAR} refused`,
    );
    assert.deepEqual(
      seen,
      [
        {
          node: LIAR,
          field: "podCIDRs",
          value: LIE,
          reason: "overlaps-other-node",
          with: VICTIM,
          by: [VICTIM, SENDER],
        },
      ],
      "status --json: exactly the lie, refused by both honest agents; node-1's own range is not",
    );
    const text = await c.podcrypt(["status"], 60_000);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /REFUSED: pod CIDR 10\.244\.1\.0\/25 of node-2 refused: overlaps pod CIDRs of node-1 \(by node-1, node-3\)/,
    );
    for (const n of [VICTIM, SENDER])
      assert.match(
        await agentMetrics(netns(n)),
        /^podcrypt_agent_refused_claims\{peer="node-2",field="podCIDRs",reason="overlaps-other-node"\} 1$/m,
        `${n}'s metric counts the refused claim`,
      );
  } finally {
    lying = false;
    await writer;
    const cur = await nodes.get(LIAR);
    if (cur !== undefined)
      await nodes.update(
        { ...cur.value, podCIDRs: truth.podCIDRs, heartbeat: new Date().toISOString() },
        { revision: cur.revision },
      );
    resume();
    await store.close();
  }
  // The truth back: nothing refused any more, every pair encrypted.
  await waitUntil(
    async () =>
      ((await c.status().catch(() => undefined))?.refusedClaims as Refusal[] | undefined)?.length === 0,
    30_000,
    "the refusals to clear once the record tells the truth",
  );
  await c.settled();
}

faultSuite("wireguard", (c) => {
  it("a node claiming a more specific prefix of another node's pod CIDR is refused: no traffic reaches it, status and the metric report it", () =>
    lyingNode(c()));
});
