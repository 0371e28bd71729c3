import { Command } from "commander";
import {
  espGet,
  espSocketPath,
  DEFAULT_ESP_SOCKET_DIR,
  type EspStatus,
} from "../dataplane/esp-userspace/control.js";
import { EspDaemon } from "../dataplane/esp-userspace/daemon.js";
import { DEFAULT_ESP_MTU } from "../dataplane/esp-userspace/datapath.js";
import { DAEMON_ENV as SPAWN_ENV } from "../dataplane/node/spawn-daemon.js";
import { ESP_IN_UDP_PORT } from "../esp/udp.js";
import { createLogger } from "../log/logger.js";
import {
  daemonizeUnlessForeground,
  persistentOption,
  serveInForeground,
  type DaemonModeEnv,
} from "./daemonize.js";
import { checkIfname, parseIntFlag } from "./flags.js";
import { tuneForLonePackets } from "../dataplane/userspace/latency.js";

/** The variables of the re-spawned child (or of the agent's, src/dataplane/node/spawn-daemon.ts). */
const DAEMON_ENV: DaemonModeEnv = { ...SPAWN_ENV.esp, minReadyFd: 1 };

interface EspFlags {
  foreground: boolean;
  persistent: boolean;
  port: number;
  mtu: number;
  socketDir: string;
  takeOver: boolean;
  offload: boolean;
}

async function runForeground(ifname: string, o: EspFlags): Promise<void> {
  const logger = createLogger("esp").child({ ifname });
  tuneForLonePackets(logger);
  const daemon = new EspDaemon({
    ifname,
    logger,
    port: o.port,
    mtu: o.mtu,
    socketDir: o.socketDir,
    persistent: o.persistent,
    takeOver: o.takeOver,
    offload: o.offload,
  });
  await serveInForeground(DAEMON_ENV, daemon, logger, () =>
    logger.info({ control: daemon.socketPath, port: daemon.datapath.port }, "ESP daemon ready"),
  );
}

function formatStatus(s: EspStatus): string {
  const lines = [
    `interface: ${s.ifname} (pid ${s.pid}, udp ${s.port}, mtu ${s.mtu}) local ${s.local.name ?? "?"} ${s.local.address ?? ""}`,
  ];
  const drops = Object.entries(s.drops).filter(([, n]) => n > 0);
  lines.push(`  drops: ${drops.length === 0 ? "none" : drops.map(([r, n]) => `${r}=${n}`).join(" ")}`);
  for (const p of s.peers) {
    lines.push(
      `peer: ${p.name} ${p.endpoint.address}:${p.endpoint.port} allowed ${p.allowedIps.join(",")} key ID ${p.activeKeyId ?? "-"}`,
      `  tx ${p.txBytes} B ${p.txPackets} pkts  rx ${p.rxBytes} B ${p.rxPackets} pkts`,
    );
    for (const sa of s.sas.filter((x) => x.peer === p.name)) {
      lines.push(
        `  ${sa.direction === "in" ? "in " : "out"} ${sa.spi} key ID ${sa.keyId}${sa.active === true ? " (active)" : ""}: ${sa.bytes} B ${sa.packets} pkts, ${sa.ageS} s${sa.rekeySoon ? ", rekey soon" : ""}`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

/** Registers `podcrypt esp` (the daemon) and `podcrypt esp-stats` (its status). */
export function registerEsp(program: Command): void {
  program
    .command("esp")
    .description(
      "userspace ESP daemon (RFC 4303/4106, ESP in UDP per RFC 3948): creates the TUN interface, binds UDP 4500 and " +
        "serves the JSON control socket /var/run/podcrypt/esp/IFNAME.sock; daemonizes unless -f",
    )
    .argument("<ifname>", "TUN interface to create")
    .option("-f, --foreground", "stay in the foreground instead of daemonizing", false)
    .option("--port <port>", "UDP port of ESP in UDP", parseIntFlag("--port", 1, 65535), ESP_IN_UDP_PORT)
    .option("--mtu <mtu>", "tunnel MTU", parseIntFlag("--mtu", 576, 9000), DEFAULT_ESP_MTU)
    .option("--socket-dir <dir>", "control socket directory", DEFAULT_ESP_SOCKET_DIR)
    .addOption(persistentOption())
    .option(
      "--no-offload",
      "read and write the TUN interface one packet at a time, without IFF_VNET_HDR (TCP segmentation offload on " +
        "reads, coalesced TCP writes); the default asks for the offloads and falls back by itself when the kernel refuses",
    )
    .option(
      "--take-over",
      "a planned restart without loss: take the interface, UDP socket and SAs (keys, sequence numbers, replay windows, " +
        "SA instance) of the daemon running on IFNAME over its control socket; that daemon stops first and exits once " +
        "this one serves",
      false,
    )
    .action(async (ifname: string, o: EspFlags) => {
      checkIfname(ifname);
      await daemonizeUnlessForeground(DAEMON_ENV, o.foreground, () => runForeground(ifname, o));
    });

  program
    .command("esp-stats")
    .description("SAs (SPI, key ID, bytes, packets, age), peers and drops of a running `podcrypt esp` daemon")
    .argument("<ifname>", "interface of the daemon")
    .option("--socket-dir <dir>", "control socket directory", DEFAULT_ESP_SOCKET_DIR)
    .option("--json", "print the status document as JSON", false)
    .action(async (ifname: string, o: { json: boolean; socketDir: string }) => {
      checkIfname(ifname);
      const s = await espGet(espSocketPath(ifname, o.socketDir));
      process.stdout.write(o.json ? JSON.stringify(s, null, 2) + "\n" : formatStatus(s));
    });
}
