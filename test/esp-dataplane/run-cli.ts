// Runs podcrypt's `esp`, `esp-stats` and `debug esp-sa` commands from the TypeScript sources
// (`node --import tsx test/esp-dataplane/run-cli.ts esp -f IFNAME`), so namespace tests started with
// `npx tsx --test` exercise the working tree, and start fast (only these commands are loaded).
import { Command, CommanderError } from "commander";
import { registerDebugEsp } from "../../src/cli/debug-esp.js";
import { registerEsp } from "../../src/cli/esp.js";

const program = new Command("podcrypt").exitOverride();
registerEsp(program);
registerDebugEsp(program.command("debug"));
try {
  await program.parseAsync(process.argv.slice(2), { from: "user" });
} catch (e) {
  if (e instanceof CommanderError) process.exitCode = e.exitCode === 0 ? 0 : 2;
  else {
    process.stderr.write(`podcrypt: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
}
