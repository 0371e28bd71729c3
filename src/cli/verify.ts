import { Command } from "commander";
import { readClusterState, requireClusterState } from "../localcluster/state.js";
import { verifyCluster, type PairResult, type VerifyResult } from "../localcluster/verify.js";
import { answered, clusterDatastoreOption, openClusterDatastore, openDatastore } from "./datastore.js";
import { verifyViaAgents } from "./verify-agents.js";
import { parseIntFlag } from "./flags.js";

/** What verify prints on stderr once its traffic flows (a soak test's cue to start its faults). */
export const TRAFFIC_FLOWING = "verify: traffic flowing";

function describe(p: PairResult): string {
  const what = `${p.from} → ${p.to}${p.host ? " node-to-node" : ""} ${p.family} ${p.protocol}/${p.port}${p.service === undefined ? "" : ` (${p.service})`}`;
  const where = p.losses
    .slice(0, 3)
    .map((l) => `${l.packets} at ${(l.atMs / 1000).toFixed(1)}-${(l.untilMs / 1000).toFixed(1)} s`)
    .join(", ");
  const delivery = `${p.delivered ? "delivered" : "LOSS     "} (${p.echoed}/${p.sent} echoed${where === "" ? "" : `; lost ${where}${p.losses.length > 3 ? ", ..." : ""}`})`;
  const wire = p.captureBlind
    ? `CAPTURE BLIND (${p.from}'s capture missed its negative control${p.plaintextSeen ? "; plaintext seen" : ""})`
    : p.selected
      ? p.plaintextSeen
        ? "PLAINTEXT ON THE UNDERLAY"
        : "encrypted (marker not seen on the underlay)"
      : `not selected: ${p.plaintextSeen ? "plaintext, as expected" : "not seen in plaintext"}`;
  return `  ${what.padEnd(48)} ${delivery}  ${wire}${p.error === undefined ? "" : ` [${p.error}]`}`;
}

export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description(
      "send marked traffic between pods of every ordered node pair (and to every service port when encryption is selective), capture the underlay, fail on selected plaintext or any message lost; on a local cluster Ctrl-C (SIGINT) ends the traffic early and reports what was sent",
    )
    .option("--seconds <s>", "how long to send per check", parseIntFlag("--seconds", 1, 600), 2)
    .option(
      "--count <n>",
      "messages per check (spread over --seconds)",
      parseIntFlag("--count", 1, 1_000_000),
      5,
    )
    .option(
      "--json",
      "machine-readable: {ok, encrypted, selective, stoppedEarly (true when SIGINT ended the traffic), pairs: [{from, to, delivered, plaintextSeen, family, protocol, port, selected, host (node-to-node checks, with host encryption, one per family both nodes have a host address of), sent, echoed, losses}]}",
      false,
    )
    .option(
      "--via-agents",
      "ask the agents through the datastore: each sends marked probes from its probe endpoints (in its pod CIDRs, IPv4 and IPv6) to every other node's, with host encryption also from its host address to every other node's, captures its own underlay, and sends a negative control outside the tunnels (default when there is no local cluster, or --datastore names another)",
      false,
    )
    .addOption(clusterDatastoreOption())
    .option(
      "--timeout <s>",
      "how long the datastore may take to answer (reading the cluster's configuration), and with --via-agents how long to wait for the agents' reports after the run's end",
      parseIntFlag("--timeout", 1, 3600),
      30,
    )
    .action(
      async (o: {
        seconds: number;
        count: number;
        json: boolean;
        viaAgents: boolean;
        datastore?: string;
        timeout: number;
      }) => {
        const local = readClusterState();
        const viaAgents =
          o.viaAgents ||
          local === undefined ||
          (o.datastore !== undefined && o.datastore !== local.datastore);
        let r: VerifyResult;
        if (viaAgents) {
          const store = await openClusterDatastore(o.datastore);
          try {
            r = await verifyViaAgents(store, o.seconds, o.count, o.timeout * 1000);
          } finally {
            await store.close();
          }
        } else {
          const state = requireClusterState();
          // The first SIGINT (Ctrl-C) ends the traffic early and still reports what was sent.
          const stop = new AbortController();
          const early = (): void => {
            process.stderr.write("verify: ending the traffic early; waiting for the echoes in flight\n");
            stop.abort();
          };
          process.once("SIGINT", early);
          try {
            r = await verifyCluster(state, openDatastore, o.seconds, o.count, {
              guard: (reads) =>
                answered(state.datastore, "reading the cluster configuration", o.timeout * 1000, reads),
              stop: stop.signal,
              // For whoever drives a soak test: the traffic flows now (and how to end it).
              sending: (n) =>
                process.stderr.write(`${TRAFFIC_FLOWING} from ${n} senders; Ctrl-C ends it early\n`),
            });
          } finally {
            process.removeListener("SIGINT", early);
          }
        }
        if (o.json) {
          process.stdout.write(JSON.stringify(r, null, 2) + "\n");
        } else {
          const selected = r.pairs.filter((p) => p.selected).length;
          process.stdout.write(
            [
              `verify: ${r.pairs.length} checks (${selected} selected for encryption${r.selective ? " by policy" : ""}), ${r.capture.packets} packets captured on the ${viaAgents ? "nodes' underlays" : "fabric"}${r.stoppedEarly === true ? "; traffic ended early (SIGINT)" : ""}`,
              ...r.pairs.map(describe),
              r.ok ? "verify: OK" : "",
            ]
              .filter((l) => l !== "")
              .join("\n") + "\n",
          );
        }
        if (!r.ok) {
          // The family is named whenever a run had both or the pair is IPv6 (an IPv6 underlay's
          // node-to-node pairs), so a failure says which family failed.
          const dual = new Set(r.pairs.map((p) => p.family)).size > 1;
          const name = (p: PairResult) =>
            `${p.from}→${p.to}${p.host ? " node-to-node" : ""}${dual || p.family === "ipv6" ? ` ${p.family}` : ""}${p.selected && !r.selective && !p.host ? "" : ` ${p.protocol}/${p.port}`}`;
          const plain = r.pairs.filter((p) => p.selected && p.plaintextSeen).map(name);
          const lost = r.pairs.filter((p) => !p.delivered).map(name);
          const blind = r.pairs.filter((p) => p.captureBlind === true).map(name);
          process.stderr.write(
            `podcrypt: verify failed: ${[plain.length > 0 ? `plaintext on the underlay for ${plain.join(", ")}` : "", lost.length > 0 ? `messages lost for ${lost.join(", ")}` : "", blind.length > 0 ? `capture blind for ${blind.join(", ")}` : ""].filter((x) => x !== "").join("; ")}\n`,
          );
          process.exitCode = 1;
        }
      },
    );
}
