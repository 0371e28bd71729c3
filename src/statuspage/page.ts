/**
 * The status page the controller serves at `/status`: one self-contained HTML document (inline
 * style and script, no external assets, so it works without internet access) that fetches
 * `status.json` (a {@link StatusView}) every {@link REFRESH_MS} and draws it: the cluster's epoch
 * and phase, a node-pair matrix per underlay family with why each pair that is not encrypted is
 * not, the rotation timeline and the nodes' counters. Every cell of the matrix carries `data-from`, `data-to`, `data-family` and
 * `data-state` (what tests and scripts read).
 *
 * With a metrics token configured, `status.json` requires it like `/metrics`: the page asks for it
 * once and keeps it in the tab's sessionStorage. Everything from the server is inserted as text,
 * never as markup.
 */
import type { StatusView } from "./view.js";

/** How often the page fetches `status.json` again. */
export const REFRESH_MS = 2000;

/** The `StatusView` fields the script reads, named here so a rename breaks the build. */
type Used = Pick<
  StatusView,
  "generatedAt" | "cluster" | "families" | "nodes" | "pairs" | "rotations" | "summary"
>;
const USED: readonly (keyof Used)[] = [
  "generatedAt",
  "cluster",
  "families",
  "nodes",
  "pairs",
  "rotations",
  "summary",
];

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fafbfc}
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #d0d7de;padding:.25em .55em;text-align:center}
th{background:#f0f3f6;font-weight:600}td.name{text-align:left}
.encrypted{background:#c9f0d1}.pending{background:#fff1b8}.plaintext-allowed{background:#dfe6ee}.failing{background:#ffc9c9;font-weight:700}
.self{background:#eee;color:#999}#err{color:#b00020;white-space:pre-wrap}#summary span{margin-right:1em}
.legend span{display:inline-block;padding:0 .5em;margin-right:.4em;border:1px solid #d0d7de}
`;

/** The page's script: fetch, then draw with DOM calls (text only). */
const SCRIPT = `
"use strict";
const REFRESH_MS = ${REFRESH_MS};
const FIELDS = ${JSON.stringify(USED)};
const SYMBOL = {"encrypted":"\\u2714 encrypted","pending":"\\u2026 pending","plaintext-allowed":"plaintext allowed","failing":"\\u2716 failing"};
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; }
function row(cells, head) { const tr = el("tr"); for (const c of cells) tr.append(typeof c === "object" ? c : el(head ? "th" : "td", c)); return tr; }
function headers() { const t = sessionStorage.getItem("podcrypt-token"); return t ? { Authorization: "Bearer " + t } : {}; }
function drawMatrix(v) {
  const box = $("matrix"); box.replaceChildren();
  const names = v.nodes.map((n) => n.name);
  const byKey = new Map(v.pairs.map((p) => [p.from + "\\u0000" + p.to + "\\u0000" + p.family, p]));
  for (const fam of v.families) {
    box.append(el("h3", fam + " (row: from, column: to)"));
    const t = el("table"); t.dataset.family = fam;
    t.append(row(["from \\\\ to", ...names], true));
    for (const from of names) {
      const tr = el("tr"); tr.append(el("th", from));
      for (const to of names) {
        if (from === to) { tr.append(el("td", "\\u2014", "self")); continue; }
        const p = byKey.get(from + "\\u0000" + to + "\\u0000" + fam);
        const td = el("td", p ? SYMBOL[p.state] : "\\u2014", p ? p.state : "self");
        if (p) { td.dataset.from = from; td.dataset.to = to; td.dataset.family = fam; td.dataset.state = p.state; if (p.reason) td.title = p.reason; }
        tr.append(td);
      }
      t.append(tr);
    }
    box.append(t);
  }
}
function drawProblems(v) {
  const ul = $("problems"); ul.replaceChildren();
  for (const p of v.pairs) if (p.reason && p.state !== "plaintext-allowed") {
    const li = el("li", p.from + " \u2192 " + p.to + " (" + p.family + ") " + p.state + ": " + p.reason, p.state);
    li.dataset.from = p.from; li.dataset.to = p.to; ul.append(li);
  }
}
function drawRotations(v) {
  const t = $("rotations"); t.replaceChildren();
  t.append(row(["epoch", "prepare", "switch", "retire"], true));
  const cell = (p) => p.acks === 0 && !p.started ? "\\u2014" :
    (p.started ? "started " + p.started + " \\u00b7 " : "") + p.acks + " acks" + (p.firstAck ? " " + p.firstAck + " \\u2192 " + p.lastAck : "");
  for (const r of v.rotations) t.append(row([r.epoch + (r.running ? " (running)" : ""), cell(r.prepare), cell(r.switch), cell(r.retire)]));
}
function drawNodes(v) {
  const t = $("nodes"); t.replaceChildren();
  const keys = [...new Set(v.nodes.flatMap((n) => Object.keys(n.counters)))].sort();
  t.append(row(["node", "agent", "backend", "key epochs", "tunnels judged", "host encryption", ...keys, "errors"], true));
  const host = (h) => !h ? (v.cluster.hostEncryption ? "not reported" : "\\u2014") : !h.applied ? (v.cluster.hostEncryption ? "NOT APPLIED" : "off") :
    h.routes + (h.routes === 1 ? " route" : " routes") + (h.peers.length ? " (to " + h.peers.join(", ") + ")" : "");
  for (const n of v.nodes) {
    const tr = row([n.name, n.live ? "live" : "NOT REPORTING", n.backend, n.epochs.join(", ") || "\\u2014", n.tunnelsAt || "\\u2014", host(n.hostEncryption), ...keys.map((k) => n.counters[k] ?? 0), n.errors.join("; ") || "\\u2014"]);
    tr.dataset.node = n.name;
    if (!n.live) tr.className = "failing";
    t.append(tr);
  }
}
function draw(v) {
  for (const f of FIELDS) if (!(f in v)) throw new Error("status.json lacks " + f);
  const c = v.cluster;
  $("cluster").textContent = "encryption " + (c.enabled ? "on" : "off") + " \\u00b7 mode " + c.mode + " \\u00b7 " +
    (c.encryption === "selective" ? "selective" : "all pod traffic") + (c.strict ? " \\u00b7 strict" : "") + (c.hostEncryption ? " \\u00b7 host encryption" : "") +
    " \\u00b7 epoch " + c.epoch + " \\u00b7 phase " + c.phase + (c.target ? " \\u2192 epoch " + c.target.epoch : "") +
    (c.lastCompletedAt ? " \\u00b7 last run finished " + c.lastCompletedAt : "") +
    (c.timeouts.length ? " \\u00b7 timeouts: " + c.timeouts.join(", ") : "") + (c.lagging.length ? " \\u00b7 lagging: " + c.lagging.join(", ") : "");
  const s = $("summary"); s.replaceChildren();
  for (const k of Object.keys(SYMBOL)) { const sp = el("span", k + ": " + (v.summary[k] || 0), k); sp.dataset.state = k; sp.dataset.count = String(v.summary[k] || 0); s.append(sp); }
  drawMatrix(v); drawProblems(v); drawRotations(v); drawNodes(v);
  $("updated").textContent = v.generatedAt;
  document.body.dataset.generatedAt = v.generatedAt;
}
async function refresh() {
  try {
    const r = await fetch("status.json", { headers: headers(), cache: "no-store" });
    if (r.status === 401) {
      $("err").textContent = "status.json needs the metrics token";
      $("auth").hidden = false;
    } else if (!r.ok) {
      $("err").textContent = "status.json: HTTP " + r.status;
    } else {
      draw(await r.json());
      $("err").textContent = "";
    }
  } catch (e) {
    $("err").textContent = "cannot reach the controller: " + e.message + " (showing the last data)";
  }
  setTimeout(refresh, REFRESH_MS);
}
$("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("podcrypt-token", $("token").value.trim());
  $("auth").hidden = true;
});
refresh();
`;

/** The status page: static, the data comes from `status.json`. */
export function statusPageHtml(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>podcrypt status</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>${STYLE}</style></head>
<body>
<h1>podcrypt</h1>
<div id="cluster">loading\u2026</div>
<div id="err" role="alert"></div>
<form id="auth" hidden><label>metrics token <input id="token" type="password" autocomplete="off"></label> <button>use</button></form>
<h2>Node pairs</h2>
<div class="legend"><span class="encrypted">encrypted</span><span class="pending">pending</span><span class="plaintext-allowed">plaintext allowed</span><span class="failing">failing</span></div>
<p id="summary"></p>
<div id="matrix"></div>
<ul id="problems"></ul>
<h2>Rotations (newest first)</h2>
<table id="rotations"></table>
<h2>Nodes and counters</h2>
<table id="nodes"></table>
<p>updated <span id="updated">never</span>; refreshes every ${REFRESH_MS / 1000} s</p>
<script>${SCRIPT}</script>
</body></html>
`;
}
