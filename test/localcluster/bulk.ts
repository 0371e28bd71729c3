/** Bulk TCP between two pods of the local cluster (iperf3 from Debian), as an application would push data. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { runIn } from "../../src/platform/netns/netns.js";

/**
 * Runs an iperf3 server in `serverNetns` for one test and a client of `seconds` in `clientNetns`
 * towards `serverIp`; returns the received Mbit/s. Both processes end with the test.
 */
export async function iperf3Between(
  clientNetns: string,
  serverNetns: string,
  serverIp: string,
  seconds = 2,
): Promise<number> {
  const server = spawn("ip", ["netns", "exec", serverNetns, "iperf3", "-s", "-1", "-p", "5299"], {
    stdio: "ignore",
  });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const out = await runIn(
      clientNetns,
      "iperf3",
      ["-c", serverIp, "-p", "5299", "-t", String(seconds), "-J", "--connect-timeout", "5000"],
      { timeoutMs: (seconds + 20) * 1000 },
    );
    const r = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
    return r.end.sum_received.bits_per_second / 1e6;
  } finally {
    server.kill("SIGKILL");
  }
}

/**
 * iperf3 from a pod of node-1 to a pod of node-2 of the running local cluster (found with
 * `podcrypt cluster info --json`): asserts that data moved and prints the rate.
 */
export async function bulkBetweenNodes(
  podcrypt: (args: string[]) => Promise<{ stdout: string }>,
): Promise<void> {
  const info = JSON.parse((await podcrypt(["cluster", "info", "--json"])).stdout) as {
    pods: Array<{ node: string; netns: string; ip: string }>;
  };
  const a = info.pods.find((p) => p.node === "node-1")!;
  const b = info.pods.find((p) => p.node === "node-2")!;
  const mbps = await iperf3Between(a.netns, b.netns, b.ip);
  assert.ok(mbps > 1, `iperf3 node-1 -> node-2: ${mbps.toFixed(1)} Mbit/s`);
  process.stdout.write(`# iperf3 between pods of node-1 and node-2: ${mbps.toFixed(0)} Mbit/s\n`);
}
