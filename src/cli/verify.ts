import { Command } from "commander";
import { requireClusterState } from "../localcluster/state.js";
import { verifyCluster, type PairResult } from "../localcluster/verify.js";
import { answered, DEFAULT_DATASTORE_TIMEOUT_S, openDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";

function describe(p: PairResult): string {
  const what = `${p.from} → ${p.to} ${p.protocol}/${p.port}${p.service === undefined ? "" : ` (${p.service})`}`;
  const where = p.losses
    .slice(0, 3)
    .map((l) => `${l.packets} at ${(l.atMs / 1000).toFixed(1)}-${(l.untilMs / 1000).toFixed(1)} s`)
    .join(", ");
  const delivery = `${p.delivered ? "delivered" : "LOSS     "} (${p.echoed}/${p.sent} echoed${where === "" ? "" : `; lost ${where}${p.losses.length > 3 ? ", ..." : ""}`})`;
  const wire = p.selected
    ? p.plaintextSeen
      ? "PLAINTEXT ON THE UNDERLAY"
      : "encrypted (marker not seen on the underlay)"
    : `not selected: ${p.plaintextSeen ? "plaintext, as expected" : "not seen in plaintext"}`;
  return `  ${what.padEnd(48)} ${delivery}  ${wire}`;
}

export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description(
      "send marked traffic between pods of every ordered node pair (and to every service port when encryption is selective), capture the underlay, fail on selected plaintext or any message lost",
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
      "machine-readable: {ok, encrypted, selective, pairs: [{from, to, delivered, plaintextSeen, protocol, port, selected, sent, echoed, losses}]}",
      false,
    )
    .action(async (o: { seconds: number; count: number; json: boolean }) => {
      const state = requireClusterState();
      const r = await verifyCluster(state, openDatastore, o.seconds, o.count, (reads) =>
        answered(
          state.datastore,
          "reading the cluster configuration",
          DEFAULT_DATASTORE_TIMEOUT_S * 1000,
          reads,
        ),
      );
      if (o.json) {
        process.stdout.write(JSON.stringify(r, null, 2) + "\n");
      } else {
        const selected = r.pairs.filter((p) => p.selected).length;
        process.stdout.write(
          [
            `verify: ${r.pairs.length} checks (${selected} selected for encryption${r.selective ? " by policy" : ""}), ${r.capture.packets} packets captured on the fabric`,
            ...r.pairs.map(describe),
            r.ok ? "verify: OK" : "",
          ]
            .filter((l) => l !== "")
            .join("\n") + "\n",
        );
      }
      if (!r.ok) {
        const name = (p: PairResult) =>
          `${p.from}→${p.to}${p.selected && !r.selective ? "" : ` ${p.protocol}/${p.port}`}`;
        const plain = r.pairs.filter((p) => p.selected && p.plaintextSeen).map(name);
        const lost = r.pairs.filter((p) => !p.delivered).map(name);
        process.stderr.write(
          `podcrypt: verify failed: ${[plain.length > 0 ? `plaintext on the underlay for ${plain.join(", ")}` : "", lost.length > 0 ? `messages lost for ${lost.join(", ")}` : ""].filter((x) => x !== "").join("; ")}\n`,
        );
        process.exitCode = 1;
      }
    });
}
