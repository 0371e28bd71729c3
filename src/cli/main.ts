import { Command, CommanderError } from "commander";
import { isPodcryptError } from "../errors/index.js";
type Register = (program: Command) => void;

/**
 * Each command's file, loaded on demand: a process that runs one command (an agent, a data-plane
 * daemon, a pod's echo server, a probe) then loads only that command's code, not every library of
 * every other (start-up is paid by dozens of processes in a local cluster). Keys are the command
 * names each file registers; the order is the one `--help` lists.
 */
const COMMANDS: ReadonlyArray<[names: readonly string[], load: () => Promise<Register>]> = [
  [["cluster"], async () => (await import("./cluster.js")).registerCluster],
  [["status"], async () => (await import("./status.js")).registerStatus],
  [["verify"], async () => (await import("./verify.js")).registerVerify],
  [["rotate", "enable", "disable"], async () => (await import("./phase-commands.js")).registerPhaseCommands],
  [["mtu"], async () => (await import("./mtu.js")).registerMtu],
  [["policy"], async () => (await import("./policy.js")).registerPolicy],
  [["manifests"], async () => (await import("./manifests.js")).registerManifests],
  [["wireguard", "wireguard-stats"], async () => (await import("./wireguard.js")).registerWireguard],
  [["esp", "esp-stats"], async () => (await import("./esp.js")).registerEsp],
  [["xfrm-encap"], async () => (await import("./xfrm-encap.js")).registerXfrmEncap],
  [["agent"], async () => (await import("./agent.js")).registerAgent],
  [["controller"], async () => (await import("./controller.js")).registerController],
  [["debug"], async () => (await import("./debug.js")).registerDebug],
  [["datastore"], async () => (await import("./datastore-admin.js")).registerDatastore],
];

/**
 * Builds the `podcrypt` command tree. Each command lives in its own file under src/cli/. With
 * `only`, just the file of that command is loaded (when it names one); otherwise all of them.
 */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command("podcrypt")
    .description("Transparent encryption of traffic between the nodes of a Kubernetes cluster.")
    .version(process.env["npm_package_version"] ?? "0.1.0")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  const one = COMMANDS.filter(([names]) => only !== undefined && names.includes(only));
  for (const [, load] of one.length > 0 ? one : COMMANDS) (await load())(program);
  return program;
}

/** Runs the CLI; errors become one line on stderr and a non-zero exit (2 for usage errors). */
export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv[0]);
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
