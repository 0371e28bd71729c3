import type { NodeView, PairState, PhaseView, StatusView } from "./view.js";

/** The matrix cell of each pair state in a terminal (fixed width). */
const CELL: Record<PairState, string> = {
  encrypted: "enc",
  pending: "pend",
  "plaintext-allowed": "plain",
  failing: "FAIL",
};

function phase(p: PhaseView): string {
  if (p.acks === 0 && p.started === undefined) return "-";
  return `${p.started === undefined ? "" : `started ${p.started}, `}${p.acks} acks${p.lastAck === undefined ? "" : ` (last ${p.lastAck})`}`;
}

/** A node's host encryption, when the cluster asks for it or the node still applies it. */
function hostText(h: NodeView["hostEncryption"], wanted: boolean): string {
  if (!wanted && h?.applied !== true) return "";
  if (h === undefined) return " · host encryption not reported yet";
  if (!h.applied) return " · host encryption NOT APPLIED";
  return ` · host encryption: ${h.routes} ${h.routes === 1 ? "route" : "routes"}${h.peers.length > 0 ? ` (to ${h.peers.join(", ")})` : ""}`;
}

/**
 * The status page as text, for `podcrypt status --watch`: the same view (src/statuspage/view.ts)
 * as the controller's page, one matrix per underlay family (row: from, column: to).
 */
export function renderStatusView(v: StatusView): string {
  const c = v.cluster;
  const lines = [
    `podcrypt at ${v.generatedAt}: encryption ${c.enabled ? "on" : "off"} · mode ${c.mode} · ` +
      `${c.encryption === "selective" ? "selective" : "all pod traffic"}${c.strict ? " · strict" : ""}` +
      `${c.hostEncryption ? " · host encryption" : ""} · epoch ${c.epoch} · phase ${c.phase}` +
      (c.target === undefined ? "" : ` → epoch ${c.target.epoch}`),
    `pairs: ${Object.entries(v.summary)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}`,
  ];
  if (c.timeouts.length > 0) lines.push(`timeouts: ${c.timeouts.join(", ")}`);
  if (c.lagging.length > 0) lines.push(`lagging: ${c.lagging.join(", ")}`);
  const names = v.nodes.map((n) => n.name);
  const w = Math.max(6, ...names.map((n) => n.length)) + 1;
  for (const fam of v.families) {
    lines.push("", `${fam} (row: from, column: to)`, " ".repeat(w) + names.map((n) => n.padEnd(w)).join(""));
    for (const from of names) {
      const cells = names.map((to) => {
        const p = v.pairs.find((x) => x.from === from && x.to === to && x.family === fam);
        return (p === undefined ? "-" : CELL[p.state]).padEnd(w);
      });
      lines.push(from.padEnd(w) + cells.join(""));
    }
  }
  const broken = v.pairs.filter((p) => p.reason !== undefined && p.state !== "plaintext-allowed");
  for (const p of broken) lines.push(`  ${p.from} → ${p.to} (${p.family}) ${p.state}: ${p.reason}`);
  lines.push("", "rotations (newest first):");
  for (const r of v.rotations)
    lines.push(
      `  epoch ${r.epoch}${r.running ? " (running)" : ""}: prepare ${phase(r.prepare)}; switch ${phase(r.switch)}; retire ${phase(r.retire)}`,
    );
  lines.push("", "nodes:");
  for (const n of v.nodes)
    lines.push(
      `  ${n.name}: ${n.live ? "live" : "NOT REPORTING"} · ${n.backend} · epochs ${n.epochs.join(",") || "-"} · ` +
        Object.entries(n.counters)
          .map(([k, x]) => `${k} ${x}`)
          .join(" · ") +
        hostText(n.hostEncryption, c.hostEncryption) +
        (n.errors.length > 0 ? ` · errors: ${n.errors.join("; ")}` : ""),
    );
  return lines.join("\n") + "\n";
}
