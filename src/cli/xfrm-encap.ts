import { Command } from "commander";
import { askHolder, EspInUdpHolder } from "../dataplane/xfrm/encap.js";
import { ESP_IN_UDP_PORT } from "../esp/udp.js";
import { createLogger } from "../log/logger.js";
import { parseIntFlag } from "./flags.js";

/**
 * Registers `podcrypt xfrm-encap`: the holder of the kernel's ESP-in-UDP socket (see
 * src/dataplane/xfrm/encap.ts), started by the kernel XFRM data plane. Hidden: not for people.
 */
export function registerXfrmEncap(program: Command): void {
  program
    .command("xfrm-encap", { hidden: true })
    .description(
      "holds the UDP_ENCAP_ESPINUDP socket the kernel needs to decapsulate ESP in UDP (RFC 3948); " +
        "runs in the foreground (the agent starts it detached) until SIGTERM or the agent stops it",
    )
    .option("--port <port>", "UDP port of ESP in UDP", parseIntFlag("--port", 1, 65535), ESP_IN_UDP_PORT)
    .option("--status", "print the status of the holder in this network namespace and exit", false)
    .action(async (o: { port: number; status: boolean }) => {
      if (o.status) {
        const s = await askHolder(o.port);
        if (s === undefined) {
          process.stderr.write(
            `podcrypt: no ESP-in-UDP holder of port ${o.port} in this network namespace\n`,
          );
          process.exitCode = 1;
          return;
        }
        process.stdout.write(JSON.stringify(s) + "\n");
        return;
      }
      const logger = createLogger("xfrm-encap").child({ port: o.port });
      const holder = new EspInUdpHolder(o.port, logger);
      await holder.start();
      // The starter stops reading stderr once the holder answers: nothing is logged after this.
      await new Promise<void>((resolve) => {
        for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
        void holder.untilStopRequested().then(resolve);
      });
      holder.close();
    });
}
