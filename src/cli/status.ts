import { Command } from "commander";
import { describeRefusal } from "../agent/claims.js";
import { failureChain } from "../agent/failures.js";
import { rootCauseText } from "../errors/describe.js";
import { collectStatus, type ClusterStatus } from "../localcluster/status.js";
import { requireClusterState } from "../localcluster/state.js";
import { answered, DEFAULT_DATASTORE_TIMEOUT_S, openDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(2)} ${units[u]}`;
}

function ago(ms: number | undefined): string {
  if (ms === undefined) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return `${s} s ago`;
}

/** The human form of `podcrypt status`: `swanctl --list-sa` and `wg show` combined. */
export function renderStatus(s: ClusterStatus): string {
  const lines = [
    `encryption: ${s.enabled ? "on" : "off"} · mode ${s.mode} · ${s.encryption === "selective" ? "selective (what policies select)" : "all pod traffic"} · epoch ${s.epoch} · phase ${s.phase}` +
      (s.target ? ` → epoch ${s.target.epoch} (${s.target.enabled ? s.target.mode : "off"})` : ""),
  ];
  for (const c of s.controllers)
    lines.push(
      `controller ${c.name} (${c.identity}): ${c.running ? (c.leader ? "leader" : "standby") : "NOT RUNNING"} · pid ${c.pid} · restarts ${c.restarts}` +
        (c.lastRestart ? ` (last ${c.lastRestart})` : ""),
    );
  if (s.supervisor !== undefined && !s.supervisor.running)
    lines.push(
      `supervisor: NOT RUNNING (pid ${s.supervisor.pid}): nothing restarts what dies; start it with \`podcrypt cluster supervise\``,
    );
  if (s.timeouts.length > 0)
    lines.push(`timeouts: ${s.timeouts.map((t) => `${t.node} in ${t.phase}@${t.epoch}`).join(", ")}`);
  for (const l of s.lagging)
    lines.push(
      `lagging: ${l.node} still uses epoch ${l.epoch} (missed the run started ${l.since}); the others keep it for it until ${l.until}` +
        (l.switchAt ? `; catching up since ${l.switchAt}` : "; waiting for its agent") +
        "; new runs wait",
    );
  for (const r of s.refusedClaims) lines.push(`REFUSED: ${describeRefusal(r)}`);
  for (const n of s.nodes) {
    lines.push(
      `node ${n.name}: ${n.live ? "live" : "NOT REPORTING"} · backend ${n.backend} · key epochs ${n.epochs.join(",") || "-"}` +
        (n.acknowledged ? ` · last ack ${n.acknowledged}` : "") +
        (s.encryption === "selective" ? ` · selection ${n.selection ?? "none yet"}` : "") +
        ` · restarts: agent ${n.restarts.agent}` +
        (n.restarts.lastAgent ? ` (last ${n.restarts.lastAgent})` : "") +
        `, data plane ${n.restarts.dataplane}` +
        (n.restarts.lastDataplane ? ` (last ${n.restarts.lastDataplane})` : ""),
    );
    for (const e of n.errors) lines.push(`  error: ${e}`);
    const f = n.reconcileError;
    if (f !== undefined)
      lines.push(
        `  reconcile ${f.clearedAt === undefined ? "failing" : `failed (cleared ${f.clearedAt})`}: ` +
          `${f.count} ${f.count === 1 ? "pass" : "passes"} since ${f.since}, last ${f.last}; cause: ${rootCauseText(failureChain(f))}`,
      );
    for (const p of n.peers) {
      if (p.state === "plaintext") {
        lines.push(`  peer ${p.node}: plaintext (encryption off)`);
        continue;
      }
      if (p.keyId !== null) {
        // IPsec, as `swanctl --list-sa` shows a CHILD_SA: SPIs, counters and age of the pair.
        const n = (x: number | null): string => String(x ?? 0);
        lines.push(
          `  peer ${p.node} [epoch ${p.epoch}, key ID ${p.keyId}, ${p.ifname}] ${p.state}` +
            `${p.active === true ? ", sending" : ""}, ESP:AES_GCM_16-128, TUNNEL-in-UDP` +
            `\n    endpoint: ${p.endpoint ?? "-"}, installed ${p.ageS ?? 0} s ago` +
            `\n    in  ${p.spiIn ?? "-"}, ${p.rxBytes} bytes, ${n(p.rxPackets)} packets` +
            `\n    out ${p.spiOut ?? "-"}, ${p.txBytes} bytes, ${n(p.txPackets)} packets`,
        );
        continue;
      }
      lines.push(
        `  peer ${p.node} [epoch ${p.epoch}, ${p.ifname}] ${p.state}` +
          `\n    public key: ${p.publicKey}\n    endpoint: ${p.endpoint ?? "-"}` +
          `\n    latest handshake: ${ago(p.latestHandshake)}` +
          `\n    transfer: ${bytes(p.rxBytes)} received, ${bytes(p.txBytes)} sent`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

export function registerStatus(program: Command): void {
  program
    .command("status")
    .description(
      "per node and peer: backend, epoch, peer key or ESP SAs (SPI in/out, key ID), bytes and packets each way, latest handshake or SA age, phase, errors",
    )
    .option("--json", "machine-readable (DESIGN.md section 9)", false)
    .option(
      "--timeout <seconds>",
      "give up when the datastore has not answered after this long",
      parseIntFlag("--timeout", 1, 3600),
      DEFAULT_DATASTORE_TIMEOUT_S,
    )
    .action(async (o: { json: boolean; timeout: number }) => {
      const state = requireClusterState();
      const s = await collectStatus(state, openDatastore, (reads) =>
        answered(state.datastore, "reading the cluster state", o.timeout * 1000, reads),
      );
      process.stdout.write(o.json ? JSON.stringify(s, null, 2) + "\n" : renderStatus(s));
    });
}
