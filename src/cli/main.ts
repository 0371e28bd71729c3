import { Command, CommanderError } from "commander";
import { isPodcryptError } from "../errors/index.js";
import { registerAgent } from "./agent.js";
import { registerCluster } from "./cluster.js";
import { registerController } from "./controller.js";
import { registerDebug } from "./debug.js";
import { registerEsp } from "./esp.js";
import { registerManifests } from "./manifests.js";
import { registerMtu } from "./mtu.js";
import { registerPolicy } from "./policy.js";
import { registerPhaseCommands } from "./phase-commands.js";
import { registerStatus } from "./status.js";
import { registerVerify } from "./verify.js";
import { registerWireguard } from "./wireguard.js";
import { registerXfrmEncap } from "./xfrm-encap.js";

/** Builds the `podcrypt` command tree. Each command lives in its own file under src/cli/. */
export function buildProgram(): Command {
  const program = new Command("podcrypt")
    .description("Transparent encryption of traffic between the nodes of a Kubernetes cluster.")
    .version(process.env["npm_package_version"] ?? "0.1.0")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  for (const register of [
    registerCluster,
    registerStatus,
    registerVerify,
    registerPhaseCommands,
    registerMtu,
    registerPolicy,
    registerManifests,
    registerWireguard,
    registerEsp,
    registerXfrmEncap,
    registerAgent,
    registerController,
    registerDebug,
  ])
    register(program);
  return program;
}

/** Runs the CLI; errors become one line on stderr and a non-zero exit (2 for usage errors). */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed the message; help and version exit 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (isPodcryptError(e)) {
      process.stderr.write(`podcrypt: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`podcrypt: ${e instanceof Error ? e.message : String(e)}\n`);
    if (process.env["PODCRYPT_DEBUG"] !== undefined && e instanceof Error)
      process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}
