/** The agent's own metrics, as a local cluster's node serves them. */
import { SHARED_READ_TTL_MS } from "../../src/health/metrics.js";
import { runIn } from "../../src/platform/netns/netns.js";

/**
 * The agent's /metrics text, read inside its node's namespace (it listens on 127.0.0.1:9809
 * there). With `fresh`, first waits out the agent's shared data-plane read, so that what the node
 * did just before is in the figures.
 */
export async function agentMetrics(netns: string, o: { fresh?: boolean } = {}): Promise<string> {
  if (o.fresh === true) await new Promise((r) => setTimeout(r, SHARED_READ_TTL_MS + 100));
  const script = `fetch("http://127.0.0.1:9809/metrics").then(async (r) => process.stdout.write(await r.text()))`;
  return runIn(netns, process.execPath, ["-e", script]);
}
