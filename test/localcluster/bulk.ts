/** Bulk TCP between two pods of the local cluster (iperf3 from Debian), as an application would push data. */
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
