// Runs podcrypt's `esp`, `esp-stats` and `debug esp-sa` commands from the TypeScript sources
// (`node --import tsx test/esp-dataplane/run-cli.ts esp -f IFNAME`), so namespace tests started with
// `npx tsx --test` exercise the working tree, and start fast (only these commands are loaded).
import { registerDebugEsp } from "../../src/cli/debug-esp.js";
import { registerEsp } from "../../src/cli/esp.js";
import { runCommands } from "../support/run-commands.js";

await runCommands((program) => {
  registerEsp(program);
  registerDebugEsp(program.command("debug"));
});
