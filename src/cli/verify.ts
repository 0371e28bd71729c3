import { Command } from "commander";
import { requireClusterState } from "../localcluster/state.js";
import { verifyCluster } from "../localcluster/verify.js";
import { parseIntFlag } from "./flags.js";

export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description(
      "send marked traffic between pods of every ordered node pair, capture the underlay, fail on plaintext or any datagram lost",
    )
    .option("--seconds <s>", "how long to send per pair", parseIntFlag("--seconds", 1, 600), 2)
    .option(
      "--count <n>",
      "datagrams per pair (spread over --seconds)",
      parseIntFlag("--count", 1, 1_000_000),
      5,
    )
    .option(
      "--json",
      "machine-readable: {ok, pairs: [{from, to, delivered, plaintextSeen, sent, echoed, losses}]}",
      false,
    )
    .action(async (o: { seconds: number; count: number; json: boolean }) => {
      const state = requireClusterState();
      const r = await verifyCluster(state, o.seconds, o.count);
      if (o.json) {
        process.stdout.write(JSON.stringify(r, null, 2) + "\n");
      } else {
        const rows = r.pairs.map((p) => {
          const where = p.losses
            .slice(0, 3)
            .map((l) => `${l.packets} at ${(l.atMs / 1000).toFixed(1)}-${(l.untilMs / 1000).toFixed(1)} s`)
            .join(", ");
          return (
            `  ${`${p.from} → ${p.to}`.padEnd(22)} ${p.delivered ? "delivered" : "LOSS     "} (${p.echoed}/${p.sent} echoed${where === "" ? "" : `; lost ${where}${p.losses.length > 3 ? ", ..." : ""}`})  ` +
            `${p.plaintextSeen ? "PLAINTEXT ON THE UNDERLAY" : "encrypted (marker not seen on the underlay)"}`
          );
        });
        process.stdout.write(
          [
            `verify: ${r.pairs.length} node pairs, ${r.capture.packets} packets captured on the fabric`,
            ...rows,
            r.ok ? "verify: OK" : "",
          ]
            .filter((l) => l !== "")
            .join("\n") + "\n",
        );
      }
      if (!r.ok) {
        const bad = r.pairs.filter((p) => p.plaintextSeen || !p.delivered);
        const plain = bad.filter((p) => p.plaintextSeen).map((p) => `${p.from}→${p.to}`);
        const lost = bad.filter((p) => !p.delivered).map((p) => `${p.from}→${p.to}`);
        process.stderr.write(
          `podcrypt: verify failed: ${[plain.length > 0 ? `plaintext on the underlay for ${plain.join(", ")}` : "", lost.length > 0 ? `datagrams lost for ${lost.join(", ")}` : ""].filter((x) => x !== "").join("; ")}\n`,
        );
        process.exitCode = 1;
      }
    });
}
