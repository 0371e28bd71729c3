import { Command } from "commander";
import { describeRefusal } from "../agent/claims.js";
import { failureChain } from "../agent/failures.js";
import { rootCauseText } from "../errors/describe.js";
import { collectStatus, type ClusterStatus } from "../localcluster/status.js";
import { requireClusterState } from "../localcluster/state.js";
import { answered, DEFAULT_DATASTORE_TIMEOUT_S, openDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";
import type { Datastore } from "../datastore/types.js";
import { readStatusView } from "../statuspage/read.js";
import { renderStatusView } from "../statuspage/text.js";

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
    `encryption: ${s.enabled ? "on" : "off"} · mode ${s.mode} · ${s.encryption === "selective" ? "selective (what policies select)" : "all pod traffic"} · host encryption ${s.hostEncryption ? "on" : "off"} · epoch ${s.epoch} · phase ${s.phase}` +
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
  for (const r of s.refusedClaims) lines.push(`REFUSED: ${describeRefusal(r)} (by ${r.by.join(", ")})`);
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
    const h = n.hostEncryption;
    // Host encryption per node: shown when the cluster asks for it or the node still applies it.
    if (s.hostEncryption || h?.applied === true)
      lines.push(
        h === undefined
          ? "  host encryption: not reported yet"
          : h.applied
            ? `  host encryption: applied · ${h.routes} host ${h.routes === 1 ? "route" : "routes"}` +
              (h.peers.length > 0 ? ` (to ${h.peers.join(", ")})` : "")
            : "  host encryption: NOT APPLIED by this node (no host address it can tunnel, or no pass since the switch)",
      );
    for (const e of n.errors) lines.push(`  error: ${e}`);
    const drops = n.plaintextDrops ?? [];
    if (drops.length > 0)
      lines.push(
        `  PLAINTEXT DROPPED (strict mode): ${drops
          .map((d) => `${d.direction === "out" ? "to" : "from"} ${d.peer || "unknown"} ${d.packets}`)
          .join(", ")}`,
      );
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

/** How often `status --watch` reads and redraws. */
const WATCH_MS = 2000;

/**
 * `status --watch`: reads the status view from the datastore and redraws it until SIGINT/SIGTERM.
 * A read that takes longer than `timeoutMs` is shown as such and tried again (the watch goes on).
 */
async function watchStatus(url: string, timeoutMs: number, json: boolean): Promise<void> {
  let stop = false;
  let wake: () => void = () => undefined;
  const end = (): void => {
    stop = true;
    wake();
  };
  process.once("SIGINT", end);
  process.once("SIGTERM", end);
  const bounded = <T>(p: Promise<T>, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`the datastore ${url} did not answer within ${timeoutMs / 1000} s (${what})`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  };
  let store: Datastore | undefined;
  try {
    while (!stop) {
      let text: string;
      try {
        store ??= await bounded(openDatastore(url), "opening it");
        const v = await bounded(readStatusView(store, Date.now()), "reading the cluster state");
        text = json ? `${JSON.stringify(v)}\n` : renderStatusView(v);
      } catch (e) {
        text = `podcrypt status --watch at ${new Date().toISOString()}: ${(e as Error).message}; trying again\n`;
      }
      // Clear the screen and draw from the top (a terminal); --json prints one line per read.
      process.stdout.write(json ? text : `\x1b[H\x1b[2J${text}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, WATCH_MS);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  } finally {
    await store?.close().catch(() => undefined);
  }
}

export function registerStatus(program: Command): void {
  program
    .command("status")
    .description(
      "per node and peer: backend, epoch, peer key or ESP SAs (SPI in/out, key ID), bytes and packets each way, latest handshake or SA age, phase, errors",
    )
    .option("--json", "machine-readable (docs/design.md#cli)", false)
    .option(
      "--timeout <seconds>",
      "give up when the datastore has not answered after this long",
      parseIntFlag("--timeout", 1, 3600),
      DEFAULT_DATASTORE_TIMEOUT_S,
    )
    .option(
      "--watch",
      "redraw the controller's status page as text (pair matrix, epoch and phase, rotations, counters) every 2 s until Ctrl-C; --timeout bounds each read",
      false,
    )
    .action(async (o: { json: boolean; timeout: number; watch: boolean }) => {
      const state = requireClusterState();
      if (o.watch) {
        await watchStatus(state.datastore, o.timeout * 1000, o.json);
        return;
      }
      const s = await collectStatus(state, openDatastore, (reads) =>
        answered(state.datastore, "reading the cluster state", o.timeout * 1000, reads),
      );
      process.stdout.write(o.json ? JSON.stringify(s, null, 2) + "\n" : renderStatus(s));
    });
}
