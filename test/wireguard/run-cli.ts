// Runs podcrypt's `wireguard` and `wireguard-stats` commands from the TypeScript sources
// (`node --import tsx test/wireguard/run-cli.ts wireguard -f IFNAME`), so namespace tests started
// with `npx tsx --test` exercise the working tree, not a stale dist/. Only these commands are
// loaded: transpiling the whole CLI (Kubernetes client, etcd, ...) on every start takes seconds.
// Errors are reported as src/cli/main.ts reports them: one line on stderr, exit 1 (2 for usage).
import { registerWireguard } from "../../src/cli/wireguard.js";
import { runCommands } from "../support/run-commands.js";

await runCommands(registerWireguard);
