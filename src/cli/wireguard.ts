import { connect } from "node:net";
import { Command } from "commander";
import {
  statusSocketPath,
  WireguardDaemon,
  type DaemonStatus,
} from "../dataplane/wireguard-userspace/daemon.js";
import { DAEMON_ENV as SPAWN_ENV } from "../dataplane/node/spawn-daemon.js";
import { PodcryptError } from "../errors/index.js";
import { createLogger } from "../log/logger.js";
import {
  daemonizeUnlessForeground,
  persistentOption,
  serveInForeground,
  type DaemonModeEnv,
} from "./daemonize.js";
import { checkIfname } from "./flags.js";
import { tuneForLonePackets } from "../dataplane/userspace/latency.js";

/**
 * The variables of the re-spawned child (or of the agent's, src/dataplane/node/spawn-daemon.ts);
 * the foreground one is wireguard-go's WG_PROCESS_FOREGROUND.
 */
const DAEMON_ENV: DaemonModeEnv = { ...SPAWN_ENV.wireguard, minReadyFd: 0 };

/** Runs the daemon in this process until SIGTERM/SIGINT or the interface is deleted. */
async function runForeground(ifname: string, persistent: boolean, takeOver: boolean): Promise<void> {
  const logger = createLogger("wireguard").child({ ifname });
  tuneForLonePackets(logger);
  const daemon = new WireguardDaemon({ ifname, logger, persistent, takeOver });
  await serveInForeground(DAEMON_ENV, daemon, logger, () =>
    logger.info(
      { uapi: daemon.uapi.path, status: daemon.statusPath, port: daemon.datapath.listenPort },
      "UAPI listener started",
    ),
  );
}

async function readStatus(ifname: string): Promise<DaemonStatus> {
  const path = statusSocketPath(ifname);
  return new Promise((resolve, reject) => {
    const c = connect(path);
    let text = "";
    c.setEncoding("utf8");
    c.on("data", (d: string) => (text += d));
    c.on("end", () => {
      try {
        resolve(JSON.parse(text) as DaemonStatus);
      } catch (e) {
        reject(new PodcryptError("ESTATUS", `bad answer on ${path}`, { cause: e }));
      }
    });
    c.on("error", (e) =>
      reject(
        new PodcryptError(
          "ESTATUS",
          `no podcrypt wireguard daemon for ${ifname}: cannot connect to ${path} (${e.message})`,
          {
            cause: e,
          },
        ),
      ),
    );
  });
}

function formatStatus(s: DaemonStatus): string {
  const lines = [`interface: ${s.ifname} (pid ${s.pid}, port ${s.listenPort})`];
  const drops = Object.entries(s.drops).filter(([, n]) => n > 0);
  lines.push(`  drops: ${drops.length === 0 ? "none" : drops.map(([r, n]) => `${r}=${n}`).join(" ")}`);
  const d = s.datapath;
  lines.push(
    `  packets: tx ${d.txPackets} rx ${d.rxPackets}, keepalives tx ${d.keepalivesSent} rx ${d.keepalivesReceived}, control tx ${d.controlSent} rx ${d.controlReceived}`,
  );
  for (const p of s.peers) {
    const pd = Object.entries(p.drops).filter(([, n]) => (n ?? 0) > 0);
    lines.push(
      `peer: ${p.publicKey}`,
      `  endpoint: ${p.endpoint ?? "(none)"}  rx ${p.rxBytes} B  tx ${p.txBytes} B`,
    );
    if (pd.length > 0) lines.push(`  drops: ${pd.map(([r, n]) => `${r}=${n}`).join(" ")}`);
  }
  return lines.join("\n") + "\n";
}

/** Registers `podcrypt wireguard` (the daemon) and `podcrypt wireguard-stats` (its drop counters). */
export function registerWireguard(program: Command): void {
  program
    .command("wireguard")
    .description(
      "userspace WireGuard daemon, a drop-in for `wireguard-go IFNAME`: creates the TUN interface and serves the " +
        "UAPI at /var/run/wireguard/IFNAME.sock for `wg`; daemonizes unless -f or WG_PROCESS_FOREGROUND=1",
    )
    .argument("<ifname>", "TUN interface to create; UAPI socket at /var/run/wireguard/IFNAME.sock")
    .option("-f, --foreground", "stay in the foreground instead of daemonizing", false)
    .addOption(persistentOption())
    .option(
      "--take-over",
      "a planned restart without loss: take the interface, UDP socket and sessions (keys, counters, replay windows, " +
        "timers: no handshake) of the podcrypt daemon running on IFNAME over its UAPI socket; that daemon stops first " +
        "and exits once this one serves",
      false,
    )
    .action(async (ifname: string, o: { foreground: boolean; persistent: boolean; takeOver: boolean }) => {
      checkIfname(ifname);
      await daemonizeUnlessForeground(DAEMON_ENV, o.foreground, () =>
        runForeground(ifname, o.persistent, o.takeOver),
      );
    });

  program
    .command("wireguard-stats")
    .description(
      "counters of a running `podcrypt wireguard` daemon that `wg show` has no place for: drops by reason, packets, " +
        "keepalives (from /var/run/podcrypt/wireguard/IFNAME.sock)",
    )
    .argument("<ifname>", "interface of the daemon")
    .option("--json", "print the daemon's status document as JSON", false)
    .action(async (ifname: string, o: { json: boolean }) => {
      checkIfname(ifname);
      const s = await readStatus(ifname);
      process.stdout.write(o.json ? JSON.stringify(s, null, 2) + "\n" : formatStatus(s));
    });
}
