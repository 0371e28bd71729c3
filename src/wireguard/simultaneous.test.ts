// test-runs-long (an exhaustive search of delivery orders: the unit tier starts it first)
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ManualClock, type RandomBytes } from "../clock.js";
import { ipPacket, TestNetwork, TestNode } from "../../test/support/wireguard-loopback.js";

const A_IP = "10.0.0.1";
const B_IP = "10.0.0.2";

/** Repeatable randomness, so that a schedule replays the same keys and indices. */
function seeded(seed: string): RandomBytes {
  let n = 0;
  return (len: number) => {
    const out = Buffer.alloc(len);
    for (let off = 0; off < len; off += 32)
      createHash("sha256").update(`${seed}/${n++}`).digest().copy(out, off);
    return out;
  };
}

/**
 * fresh: the peers have no session. expired: a session exists but neither end may send on it.
 * crossed-rekey: an earlier simultaneous handshake left each end sending on the session it
 * initiated and receiving on the one it answered; REKEY_AFTER_TIME later both rekey at once, and
 * the data sent meanwhile still travels on the old sessions.
 */
type Scenario = "fresh" | "expired" | "crossed-rekey";

/**
 * Both ends send a packet at the same instant (both start a handshake), then the datagrams in
 * flight and the remaining `perSide - 1` sends of each end happen in the order `choices` picks
 * (index into the datagrams in flight, then "A sends", "B sends"; missing entries pick 0). The
 * clock stands still, so no retransmission rescues a lost packet.
 */
function run(scenario: Scenario, perSide: number, choices: number[]) {
  const clock = new ManualClock(1_000);
  const net = new TestNetwork();
  const a = new TestNode("a", { address: "192.168.1.1", port: 51820 }, clock, net, { random: seeded("a") });
  const b = new TestNode("b", { address: "192.168.1.2", port: 51821 }, clock, net, { random: seeded("b") });
  a.addPeer(b, [`${B_IP}/32`]);
  b.addPeer(a, [`${A_IP}/32`]);
  if (scenario === "expired") {
    a.send(ipPacket(A_IP, B_IP, Buffer.from("warmup")));
    net.run();
    b.send(ipPacket(B_IP, A_IP, Buffer.from("warmup")));
    net.run();
    clock.advance(10_000);
    a.delivered.length = 0;
    b.delivered.length = 0;
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      const kps = x.device.peer(y.publicKey)!.keypairs;
      kps.current?.expireSending();
      kps.next?.expireSending();
    }
  }
  if (scenario === "crossed-rekey") {
    a.send(ipPacket(A_IP, B_IP, Buffer.from("warmup")));
    b.send(ipPacket(B_IP, A_IP, Buffer.from("warmup")));
    net.run();
    clock.advance(120_000);
    a.delivered.length = 0;
    b.delivered.length = 0;
  }
  a.send(ipPacket(A_IP, B_IP, Buffer.from(`a0`)));
  b.send(ipPacket(B_IP, A_IP, Buffer.from(`b0`)));
  const later = { a: perSide - 1, b: perSide - 1 };
  const branching: number[] = [];
  for (let step = 0; ; step++) {
    const n = net.queue.length + (later.a > 0 ? 1 : 0) + (later.b > 0 ? 1 : 0);
    if (n === 0) break;
    branching.push(n);
    let i = choices[step] ?? 0;
    if (i < net.queue.length) {
      const [d] = net.queue.splice(i, 1);
      (d!.to.port === a.endpoint.port ? a : b).receive(d!.bytes, d!.from);
      continue;
    }
    i -= net.queue.length;
    if (i === 0 && later.a > 0) a.send(ipPacket(A_IP, B_IP, Buffer.from(`a${perSide - later.a--}`)));
    else b.send(ipPacket(B_IP, A_IP, Buffer.from(`b${perSide - later.b--}`)));
  }
  const got = (n: TestNode) => n.delivered.map((p) => p.subarray(20).toString()).sort();
  return { branching, atA: got(a), atB: got(b) };
}

/** Every order of delivery (and of the later sends) from the start of `scenario`: lost or duplicated packets, by schedule. */
function explore(scenario: Scenario, perSide: number): { schedules: number; bad: Map<string, number[]> } {
  const want = (p: string) => Array.from({ length: perSide }, (_, i) => `${p}${i}`).join();
  let choices: number[] = [];
  let schedules = 0;
  const bad = new Map<string, number[]>();
  for (;;) {
    const r = run(scenario, perSide, choices);
    schedules++;
    const outcome = `A got [${r.atA.join()}], B got [${r.atB.join()}]`;
    if ((r.atA.join() !== want("b") || r.atB.join() !== want("a")) && !bad.has(outcome))
      bad.set(
        outcome,
        r.branching.map((_, i) => choices[i] ?? 0),
      );
    // next schedule: the last step with an untried alternative takes it (depth-first)
    const full = r.branching.map((_, i) => choices[i] ?? 0);
    let k = full.length - 1;
    while (k >= 0 && full[k]! + 1 >= r.branching[k]!) k--;
    if (k < 0) return { schedules, bad };
    choices = [...full.slice(0, k), full[k]! + 1];
  }
}

for (const [scenario, perSide, title] of [
  ["fresh", 1, "no session yet, a packet staged on each side"],
  ["expired", 1, "both sessions stopped sending (new private keys), a packet staged on each side"],
  [
    "crossed-rekey",
    1,
    "the sessions of an earlier simultaneous handshake rekey at the same moment, data in flight",
  ],
] as const) {
  test(`simultaneous initiation, ${title}: every packet delivered exactly once in every delivery order`, () => {
    const { schedules, bad } = explore(scenario, perSide);
    assert.ok(schedules > 10, `explored ${schedules} schedules`);
    assert.deepEqual([...bad.entries()], [], "outcome and a schedule (queue index per step) that shows it");
  });
}
