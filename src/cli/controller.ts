import { hostname } from "node:os";
import { Command } from "commander";
import { systemClock } from "../clock.js";
import { Controller } from "../controller/controller.js";
import { createLogger } from "../log/logger.js";
import { datastoreOption, openDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";

export function registerController(program: Command): void {
  program
    .command("controller")
    .description(
      "the leader-elected controller: drives enable, disable and key rotation through prepare → switch → retire",
    )
    .addOption(datastoreOption())
    .option(
      "--identity <id>",
      "this controller's identity in the leader election",
      `${hostname()}-${process.pid}`,
    )
    .option("--lease-ttl <seconds>", "leadership lease TTL", parseIntFlag("--lease-ttl", 1, 3600), 5)
    .action(async (o: { datastore: string; identity: string; leaseTtl: number }) => {
      const logger = createLogger("controller").child({ identity: o.identity });
      const store = await openDatastore(o.datastore);
      const controller = new Controller({
        store,
        identity: o.identity,
        clock: systemClock,
        logger,
        leaseTtlSeconds: o.leaseTtl,
      });
      await controller.start();
      logger.info("controller started");
      await new Promise<void>((resolve) => {
        for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
      });
      await controller.stop();
      await store.close();
    });
}
