/**
 * Strict mode's leak counters against the real kernel: the ruleset of src/dataplane/node/nft.ts
 * installed in a namespace, plaintext pod traffic sent out of it and into it, and the drops read
 * back per peer and direction as the agent reads them (`nft -j list table inet podcrypt`). Strict
 * host mode the same way with host traffic of both families, and what host encryption leaves
 * outside the tunnels (the datastore's port, the operator's SSH) passing both ways.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, it } from "node:test";
import { bothWays } from "../../src/agent/desired.js";
import { nftTool, StrictReconciler, type StrictDrop } from "../../src/dataplane/node/nft.js";
import type { DesiredStrict } from "../../src/dataplane/types.js";
import { runIn } from "../../src/platform/netns/netns.js";
import { NetnsLab } from "../support/netns.js";

const packets = (drops: StrictDrop[], peer: string, direction: "out" | "in"): number =>
  drops.find((d) => d.peer === peer && d.direction === direction)?.packets ?? 0;

/**
 * A node namespace and a "peer" namespace on one underlay: the node's pod 10.244.1.1, the peer
 * standing in for two nodes' pods (node-b's 10.244.2.5, node-c's 10.244.3.5); and the strict
 * desired state of the node, with both peers.
 */
async function podLab(
  lab: NetnsLab,
  name: string,
): Promise<{ node: string; peer: string; strict: DesiredStrict }> {
  const node = await lab.netns(`${name}-node`);
  const peer = await lab.netns(`${name}-peer`);
  await lab.veth(node, "eth0", peer, "eth0", ["192.168.77.1/24"], ["192.168.77.2/24"]);
  await runIn(node, "ip", ["addr", "add", "10.244.1.1/32", "dev", "lo"]);
  await runIn(peer, "ip", ["addr", "add", "10.244.2.5/32", "dev", "lo"]);
  await runIn(peer, "ip", ["addr", "add", "10.244.3.5/32", "dev", "lo"]);
  for (const dst of ["10.244.2.0/24", "10.244.3.0/24"])
    await runIn(node, "ip", ["route", "add", dst, "via", "192.168.77.2"]);
  await runIn(peer, "ip", ["route", "add", "10.244.1.0/24", "via", "192.168.77.1"]);
  const strict: DesiredStrict = {
    dropOutbound: true,
    dropInbound: true,
    underlayIf: "eth0",
    localPodCidrs: ["10.244.1.0/24"],
    remotePodCidrs: ["10.244.2.0/24", "10.244.3.0/24"],
    peers: [
      { node: "node-b", podCidrs: ["10.244.2.0/24"] },
      { node: "node-c", podCidrs: ["10.244.3.0/24"] },
    ],
  };
  return { node, peer, strict };
}

/**
 * `count` pings from `from` in `ns` to `to`, `interval` s apart; ping's summary. No answer is the
 * point (the packets are dropped), so its exit status is not.
 */
const ping = (ns: string, from: string, to: string, count: number, interval = "0.01") =>
  runIn(ns, "sh", [
    "-c",
    '"$@" || true',
    "ping",
    ...["ping", "-n", "-q", "-c", String(count), "-i", interval, "-W", "1", "-I", from, to],
  ]);

describe("strict mode's drop counters (nftables, in a namespace)", () => {
  it("counts plaintext dropped going out and coming in, per peer", async () => {
    const lab = new NetnsLab();
    const { node, peer, strict } = await podLab(lab, "strict");
    const r = new StrictReconciler(nftTool(node));
    await r.reconcile(strict);
    assert.deepEqual(
      (await r.drops()).filter((d) => d.packets > 0),
      [],
    );
    await ping(node, "10.244.1.1", "10.244.2.5", 5); // out, to node-b's pod
    await ping(peer, "10.244.3.5", "10.244.1.1", 3); // in, from node-c's pod
    // Underlay traffic between the nodes themselves is not pod traffic: never dropped.
    const underlay = await runIn(node, "ping", [
      "-n",
      "-q",
      "-c",
      "2",
      "-i",
      "0.01",
      "-W",
      "1",
      "192.168.77.2",
    ]);
    assert.match(underlay, / 0% packet loss/);
    const drops = await r.drops();
    assert.equal(packets(drops, "node-b", "out"), 5, JSON.stringify(drops));
    assert.equal(packets(drops, "node-c", "in"), 3, JSON.stringify(drops));
    assert.equal(packets(drops, "node-c", "out"), 0);
    assert.equal(packets(drops, "node-b", "in"), 0);
    assert.equal(packets(drops, "", "out") + packets(drops, "", "in"), 0, "every drop has its peer");
  });

  it("replacing the table loses no count: not of a drop between reading it and replacing it, not under a flood, not when the agent starts again", async () => {
    const lab = new NetnsLab();
    const { node, strict } = await podLab(lab, "strict-rep");
    const tool = nftTool(node);
    // Plaintext dropped right after the reconciler read the table, before it replaced it: a
    // replacement that re-creates the counters (read, then replace) loses exactly these.
    let between: (() => Promise<unknown>) | undefined;
    const r = new StrictReconciler({
      read: async () => {
        const t = await tool.read();
        await between?.();
        return t;
      },
      apply: tool.apply,
    });
    await r.reconcile(strict);
    const extra = { node: "node-d", podCidrs: ["10.244.4.0/24"] };
    let sent = 0;
    for (let i = 0; i < 4; i++) {
      between = () => ping(node, "10.244.1.1", "10.244.2.5", 3);
      // A changed ruleset (a peer comes or goes) is a replacement.
      assert.equal(
        await r.reconcile({ ...strict, peers: [...strict.peers!, ...(i % 2 === 0 ? [extra] : [])] }),
        true,
      );
      sent += 3;
      await ping(node, "10.244.1.1", "10.244.2.5", 2);
      sent += 2;
    }
    between = undefined;
    assert.equal(packets(await r.drops(), "node-b", "out"), sent, "drops around each replacement");
    // A flood while a failing pass re-applies the table again and again (invalidate: the pass
    // after a failure elsewhere re-applies it even unchanged).
    let flooding = true;
    const flood = ping(node, "10.244.1.1", "10.244.3.5", 300, "0.005").finally(() => (flooding = false));
    let replaced = 0;
    while (flooding) {
      r.invalidate();
      await r.reconcile(strict);
      replaced++;
    }
    const summary = await flood;
    const transmitted = Number(/(\d+) packets transmitted/.exec(summary)?.[1] ?? Number.NaN);
    assert.ok(replaced >= 5, `the table was replaced ${replaced} times during the flood`);
    assert.equal(
      packets(await r.drops(), "node-c", "out"),
      transmitted,
      `${summary}; ${replaced} replacements`,
    );
    // The agent started again: a new reconciler continues from what the table counted.
    const again = new StrictReconciler(tool);
    assert.equal(await again.reconcile(strict), true);
    assert.equal(packets(await again.drops(), "node-b", "out"), sent);
    assert.equal(packets(await again.drops(), "node-c", "out"), transmitted);
  });
});

describe("strict host mode's drops (nftables, in a namespace)", () => {
  it("drops host traffic of both families to and from a peer, counted against it; the exclusions pass both ways", async () => {
    const lab = new NetnsLab();
    const node = await lab.netns("shost-node");
    const peer = await lab.netns("shost-peer");
    await lab.veth(
      node,
      "eth0",
      peer,
      "eth0",
      ["192.168.78.1/24", "fd78::1/64"],
      ["192.168.78.2/24", "fd78::2/64"],
    );
    // The peer answers on the datastore's port and on SSH's, in both families.
    for (const port of [2379, 22]) {
      const l = lab.spawn(peer, "socat", [`TCP6-LISTEN:${port},ipv6only=0,reuseaddr,fork`, "SYSTEM:echo ok"]);
      l.on("error", () => undefined);
    }
    await new Promise((r) => setTimeout(r, 300));
    const strict: DesiredStrict = {
      dropOutbound: true,
      dropInbound: true,
      underlayIf: "eth0",
      localPodCidrs: ["10.244.1.0/24"],
      remotePodCidrs: ["10.244.2.0/24"],
      peers: [{ node: "node-b", podCidrs: ["10.244.2.0/24"] }],
      host: {
        dropOutbound: true,
        dropInbound: true,
        peers: [{ node: "node-b", addresses: ["192.168.78.2/32", "fd78::2/128"] }],
        // As the agent's desired state has them: the tunnels' ports, the discard port one way,
        // the datastore's port both ways, the operator's ports both ways.
        exclude: [
          ...bothWays("udp", 51820),
          { protocol: "udp", dport: 9 },
          ...bothWays("tcp", 2379),
          ...bothWays("tcp", 22),
        ],
      },
    };
    const r = new StrictReconciler(nftTool(node));
    await r.reconcile(strict);
    await ping(node, "192.168.78.1", "192.168.78.2", 4); // out, IPv4
    await ping(node, "fd78::1", "fd78::2", 3); // out, IPv6 (neighbour discovery passes, the echo requests do not)
    const out = packets(await r.drops(), "node-b", "out");
    assert.equal(out, 7, JSON.stringify(await r.drops()));
    await ping(peer, "192.168.78.2", "192.168.78.1", 2); // in, IPv4
    await ping(peer, "fd78::2", "fd78::1", 5); // in, IPv6
    const drops = await r.drops();
    assert.equal(packets(drops, "node-b", "in"), 7, JSON.stringify(drops));
    assert.equal(packets(drops, "", "out") + packets(drops, "", "in"), 0, "every drop has its peer");
    // The datastore's port and SSH: requests out, answers in, both families; nothing more dropped.
    const ask = async (target: string): Promise<string> => {
      const c = lab.spawn(node, "socat", ["-T", "3", "-", target], { stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      c.stdout!.on("data", (d: Buffer) => (text += d.toString()));
      await once(c, "exit");
      return text.trim();
    };
    for (const target of [
      "TCP:192.168.78.2:2379",
      "TCP:[fd78::2]:2379",
      "TCP:192.168.78.2:22",
      "TCP:[fd78::2]:22",
    ])
      assert.equal(await ask(target), "ok", target);
    const after = await r.drops();
    assert.equal(packets(after, "node-b", "out"), 7, JSON.stringify(after));
    assert.equal(packets(after, "node-b", "in"), 7, JSON.stringify(after));
    // Strict host mode off (the same drops of pod traffic): host traffic passes.
    const { host: _host, ...podsOnly } = strict;
    await r.reconcile(podsOnly);
    assert.match(
      await runIn(node, "ping", ["-n", "-q", "-c", "2", "-i", "0.01", "-W", "1", "fd78::2"]),
      / 0% packet loss/,
    );
  });
});
