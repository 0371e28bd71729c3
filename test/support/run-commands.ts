/**
 * What the namespace tests' command runners (test/wireguard/run-cli.ts, test/esp-dataplane/run-cli.ts)
 * share: they run some of podcrypt's commands from the TypeScript sources through tsx, loading only
 * those (transpiling the whole CLI on every start takes seconds).
 */
import { Command, CommanderError } from "commander";

/**
 * Parses this process's arguments with the commands `register` adds and runs the one named;
 * errors end the process as src/cli/main.ts ends it: one line on stderr and exit status 1, or 2
 * for a usage error.
 */
export async function runCommands(register: (program: Command) => void): Promise<void> {
  const program = new Command("podcrypt").exitOverride();
  register(program);
  try {
    await program.parseAsync(process.argv.slice(2), { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) process.exitCode = e.exitCode === 0 ? 0 : 2;
    else {
      process.stderr.write(`podcrypt: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    }
  }
}
