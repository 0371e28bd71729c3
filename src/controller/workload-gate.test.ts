import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../log/logger.js";
import type { Node, WorkloadGateWish } from "../model/index.js";
import { gateWrites, WorkloadGateController } from "./workload-gate.js";

const record = (name: string, wish?: WorkloadGateWish): Pick<Node, "name" | "status"> => ({
  name,
  ...(wish === undefined ? {} : { status: { errors: [], workloadGate: wish } }),
});
const logger = createLogger("test", { level: "silent" });

test("gateWrites: a Node is written only when its record's wish differs from what it was seen to hold", () => {
  const cases: {
    name: string;
    wish: WorkloadGateWish | undefined;
    known: WorkloadGateWish | undefined;
    write: WorkloadGateWish | undefined;
  }[] = [
    { name: "new node, closed, Node not known", wish: "closed", known: undefined, write: "closed" },
    { name: "new node, open, Node not known", wish: "open", known: undefined, write: "open" },
    { name: "closed, Node tainted", wish: "closed", known: "closed", write: undefined },
    { name: "open, Node untainted", wish: "open", known: "open", write: undefined },
    { name: "wish changed to open", wish: "open", known: "closed", write: "open" },
    { name: "wish changed to closed (agent restarted)", wish: "closed", known: "open", write: "closed" },
    {
      name: "no wish (agent does not gate), Node not known",
      wish: undefined,
      known: undefined,
      write: undefined,
    },
    { name: "no wish, Node tainted before", wish: undefined, known: "closed", write: undefined },
  ];
  for (const c of cases) {
    const known = new Map<string, WorkloadGateWish>(c.known === undefined ? [] : [["n", c.known]]);
    const writes = gateWrites([record("n", c.wish)], known);
    assert.deepEqual(writes, c.write === undefined ? [] : [{ node: "n", wish: c.write }], c.name);
  }
});

/** Which Nodes carry the not-ready taint, with read and write counters and faults to inject. */
class FakeNodes {
  readonly tainted = new Set<string>();
  writes = 0;
  reads = 0;
  readonly failing = new Map<string, Error>();
  async write(node: string, present: boolean): Promise<boolean> {
    this.reads++;
    const fault = this.failing.get(node);
    if (fault !== undefined) throw fault;
    if (this.tainted.has(node) === present) return false;
    this.writes++;
    if (present) this.tainted.add(node);
    else this.tainted.delete(node);
    return true;
  }
}

test("controller gate: taints and untaints as the records ask, writes nothing again, retries failures", async () => {
  const api = new FakeNodes();
  const records = new Map<string, Pick<Node, "name" | "status">>();
  const gates = new WorkloadGateController({
    write: (n, p) => api.write(n, p),
    nodes: () => [...records.values()] as Node[],
    logger,
  });
  try {
    records.set("a", record("a", "open"));
    records.set("b", record("b", "closed"));
    records.set("c", record("c"));
    assert.equal(await gates.pass(), true);
    assert.deepEqual([...api.tainted], ["b"]);
    assert.equal(api.writes, 1, "a was untainted already: read, not written");
    // Record events that do not change a wish write nothing (not even a read).
    const reads = api.reads;
    for (let i = 0; i < 5; i++) assert.equal(await gates.pass(), true);
    assert.equal(api.reads, reads);

    // b's tunnels come up: its taint goes (other taints are the writer's to keep: the
    // kubernetes datastore's setNodeTaint, test/kubernetes/workload-gate.test.ts).
    records.set("b", record("b", "open"));
    api.failing.set("b", new Error("HTTP 503"));
    assert.equal(await gates.pass(), false, "a failed write is reported for a retry, not thrown");
    assert.deepEqual([...api.tainted], ["b"]);
    api.failing.delete("b");
    assert.equal(await gates.pass(), true);
    assert.deepEqual([...api.tainted], []);

    // a's agent restarts and its first report is not all up: tainted again.
    records.set("a", record("a", "closed"));
    await gates.pass();
    assert.deepEqual([...api.tainted], ["a"]);
    // c never gates: its Node is never written.
    assert.equal(api.tainted.has("c"), false);
  } finally {
    gates.stop();
  }
});

test("controller gate: a new leader (nothing known) reads every gated Node once and puts right what differs", async () => {
  const api = new FakeNodes();
  // An operator removed the taint of a node whose agent still asks for it.
  const records = [record("a", "closed"), record("b", "open")];
  api.tainted.add("b");
  const gates = new WorkloadGateController({
    write: (n, p) => api.write(n, p),
    nodes: () => records as Node[],
    logger,
  });
  try {
    assert.equal(await gates.pass(), true);
    assert.deepEqual([...api.tainted], ["a"]);
    assert.equal(api.reads, 2);
  } finally {
    gates.stop();
  }
});
