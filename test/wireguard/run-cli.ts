// Runs podcrypt's `wireguard` and `wireguard-stats` commands from the TypeScript sources
// (`node --import tsx test/wireguard/run-cli.ts wireguard -f IFNAME`), so namespace tests started
// with `npx tsx --test` exercise the working tree, not a stale dist/. Only these commands are
// loaded: transpiling the whole CLI (Kubernetes client, etcd, ...) on every start takes seconds.
// Errors are reported as src/cli/main.ts reports them: one line on stderr, exit 1 (2 for usage).
import { Command, CommanderError } from "commander";
import { registerWireguard } from "../../src/cli/wireguard.js";

const program = new Command("podcrypt").exitOverride();
registerWireguard(program);
try {
  await program.parseAsync(process.argv.slice(2), { from: "user" });
} catch (e) {
  if (e instanceof CommanderError) process.exitCode = e.exitCode === 0 ? 0 : 2;
  else {
    process.stderr.write(`podcrypt: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
