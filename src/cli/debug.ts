import { isIP } from "node:net";
import { Command } from "commander";
import { parsePortRef, serveEcho } from "../localcluster/echo.js";
import { probe, PROBE_SENDING } from "../localcluster/probe.js";
import { relayTarget, startRelay } from "../localcluster/relay.js";
import { ValidationError } from "../errors/index.js";
import { parseIntFlag } from "./flags.js";
import { registerDebugEsp } from "./debug-esp.js";
import { registerDebugBundle } from "./debug-bundle.js";

export function registerDebug(program: Command): void {
  const debug = program
    .command("debug")
    .description("tools for looking inside (not needed in normal operation)");
  registerDebugEsp(debug);
  registerDebugBundle(debug);
  debug
    .command("echo")
    .description("answer on the given ports by echoing (what local-cluster pods run)")
    .requiredOption("--ports <list>", "comma-separated tcp/PORT,udp/PORT")
    .action(async (o: { ports: string }) => {
      const close = await serveEcho(o.ports.split(",").map(parsePortRef));
      await new Promise<void>((resolve) => {
        for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
      });
      close();
    });
  debug
    .command("relay")
    .description(
      "forward HOST:PORT (a datastore on loopback) from inside the given network namespaces to the host (what the local cluster runs for a non-local datastore)",
    )
    .requiredOption("--to <host:port>", "the datastore's loopback address")
    .requiredOption("--netns <list>", "comma-separated network namespace names")
    .option(
      "--listen <host:port>",
      "loopback address to listen on inside the namespaces (default: --to's); the connections go to --to in this process's own namespace",
    )
    .action(async (o: { to: string; netns: string; listen?: string }) => {
      const target = relayTarget(`etcd://${o.to}?allow-insecure=true`);
      if (target === undefined) throw new ValidationError("--to", `"${o.to}" is not HOST:PORT`);
      const listen = o.listen === undefined ? target : relayTarget(`etcd://${o.listen}?allow-insecure=true`);
      if (listen === undefined) throw new ValidationError("--listen", `"${o.listen}" is not HOST:PORT`);
      const close = await startRelay(target, o.netns.split(","), listen);
      process.stdout.write(
        `relaying ${o.to} into ${o.netns}${o.listen === undefined ? "" : ` at ${o.listen}`}\n`,
      );
      await new Promise<void>((resolve) => {
        for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
      });
      await close();
    });
  debug
    .command("probe")
    .description(
      'send marked UDP datagrams or TCP lines to echo services and print how many came back (what verify runs in pods); prints "sending" on stderr once its first messages are out; SIGINT ends the sending early and still prints the report',
    )
    .requiredOption(
      "--targets <list>",
      "comma-separated udp:IP:PORT:MARKER or tcp:IP:PORT:MARKER (an IPv6 IP in brackets: udp:[fd00::a]:7:M)",
    )
    .option("--count <n>", "datagrams per target", parseIntFlag("--count", 1, 1_000_000), 5)
    .option("--seconds <s>", "spread over this many seconds", parseIntFlag("--seconds", 0, 3600), 2)
    .option("--size <bytes>", "pad each message to this many bytes", parseIntFlag("--size", 0, 65000), 0)
    .action(async (o: { targets: string; count: number; seconds: number; size: number }) => {
      const targets = o.targets.split(",").map((t) => {
        const m = /^([a-z]+):(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(.*)$/.exec(t);
        const [protocol, ip] = [m?.[1], m?.[2] ?? m?.[3]];
        const [port, marker, extra] = (m?.[4] ?? "").split(":");
        const n = Number(port);
        if (
          (protocol !== "udp" && protocol !== "tcp") ||
          ip === undefined ||
          isIP(ip) === 0 ||
          !Number.isInteger(n) ||
          n < 1 ||
          n > 65535 ||
          marker === undefined ||
          marker === "" ||
          extra !== undefined
        )
          throw new ValidationError("--targets", `"${t}" is not udp:IP:PORT:MARKER or tcp:IP:PORT:MARKER`);
        return { protocol: protocol as "udp" | "tcp", ip, port: n, marker };
      });
      // SIGINT (Ctrl-C, or verify ending its traffic early) stops the sending; the report still
      // comes. "sending" on stderr tells verify that this sender's traffic flows.
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      const result = await probe(targets, o.count, o.seconds, {
        size: o.size,
        stop: stop.signal,
        sending: () => process.stderr.write(`${PROBE_SENDING}\n`),
      });
      process.stdout.write(JSON.stringify(result) + "\n");
    });
}
