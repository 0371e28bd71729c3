import { randomBytes } from "node:crypto";
import { Command, Option } from "commander";
import { Agent, type EpochKeys } from "../agent/agent.js";
import { systemClock } from "../clock.js";
import { ValidationError } from "../errors/index.js";
import { KeyStore } from "../keys/index.js";
import { createLogger } from "../log/logger.js";
import { tunnelMtu } from "../mtu/mtu.js";
import { ProcessKernelCommands } from "../platform/netlink/kernel-commands.js";
import { run } from "../platform/netns/netns.js";
import { chooseDataplanes, detectKernel, nodeBackend, type DataplaneRequest } from "./agent-dataplane.js";
import { datastoreOption, openDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";

/** EpochKeys over the 0600 key files of src/keys. */
function epochKeys(store: KeyStore): EpochKeys {
  return {
    ensure: async (epoch) => (await store.ensure(epoch)).publicKey.toString("base64"),
    privateKey: (epoch) => {
      const pair = store.get(epoch);
      if (pair === undefined) throw new ValidationError("epoch", `no key pair for epoch ${epoch}`);
      return pair.privateKey;
    },
    retain: async (keep) => {
      for (const e of store.epochs()) if (!keep.includes(e)) await store.retire(e);
    },
  };
}

async function linkMtu(ifname: string): Promise<number> {
  const links = JSON.parse(await run("ip", ["-j", "link", "show", ifname])) as Array<{ mtu: number }>;
  const mtu = links[0]?.mtu;
  if (mtu === undefined) throw new ValidationError("--underlay-if", `no interface ${ifname}`);
  return mtu;
}

export function registerAgent(program: Command): void {
  program
    .command("agent")
    .description("the node agent: makes this node's keys, publishes public keys, programs the data plane")
    .requiredOption("--node <name>", "this node's name")
    .addOption(datastoreOption())
    .option("--state-dir <dir>", "where private keys live (0600 files)", "/var/lib/podcrypt/agent")
    .requiredOption("--underlay-ip <ip>", "this node's underlay address peers send to")
    .option("--pod-cidr <cidr...>", "pod CIDRs routed to this node", [])
    .option(
      "--cluster-cidr <cidr...>",
      "the cluster's pod CIDRs: routes inside them (outside --pod-cidr) are the agent's to prune",
      [],
    )
    .option("--underlay-if <ifname>", "the underlay interface (MTU detected from it)", "eth0")
    .option("--if-prefix <prefix>", "tunnel interface prefix (generation slots 0 and 1)", "podcrypt")
    .option(
      "--wireguard-port <port>",
      "WireGuard listen port of slot 0 (slot 1 uses the next)",
      parseIntFlag("--wireguard-port", 1, 65534),
      51820,
    )
    .addOption(
      new Option(
        "--dataplane <kind>",
        "data plane: kernel WireGuard/XFRM when the kernel has them (auto), always (kernel, else fail) or never",
      )
        .choices(["auto", "kernel", "userspace"])
        .default("auto"),
    )
    .addOption(
      new Option("--wireguard-daemon <cmd>", "userspace daemon to run")
        .choices(["podcrypt", "wireguard-go"])
        .default(process.env["PODCRYPT_WIREGUARD_DAEMON"] ?? "podcrypt"),
    )
    .action(
      async (o: {
        node: string;
        datastore: string;
        stateDir: string;
        underlayIp: string;
        podCidr: string[];
        clusterCidr: string[];
        underlayIf: string;
        ifPrefix: string;
        wireguardPort: number;
        dataplane: DataplaneRequest;
        wireguardDaemon: "podcrypt" | "wireguard-go";
      }) => {
        const logger = createLogger("agent").child({ node: o.node });
        // Before anything is opened: with --dataplane kernel on a kernel without the modules the
        // agent stops here, saying what is missing.
        const caps = await detectKernel(new ProcessKernelCommands(), o.underlayIf);
        const choice = chooseDataplanes(o.dataplane, caps);
        logger.info(
          {
            dataplane: o.dataplane,
            choice,
            ...(caps.wireguard.ok ? {} : { noKernelWireguard: caps.wireguard.reason }),
            ...(caps.ipsec.ok ? {} : { noKernelXfrm: caps.ipsec.reason }),
          },
          "data planes chosen",
        );
        const store = await openDatastore(o.datastore);
        const keys = new KeyStore(o.stateDir, (n) => randomBytes(n));
        await keys.load();
        const extMtu = await linkMtu(o.underlayIf);
        const ipv6 = o.underlayIp.includes(":");
        // Generations of both modes share the tunnel MTU during a mode switch: the smaller one fits both.
        const mtu = Math.min(
          tunnelMtu({ extMtu, mode: "wireguard", ipv6 }),
          tunnelMtu({ extMtu, mode: "ipsec", ipv6, udpEncap: true }),
        );
        const agent = new Agent({
          settings: {
            node: o.node,
            ifPrefix: o.ifPrefix,
            wireguardPort: o.wireguardPort,
            underlayIf: o.underlayIf,
            mtu,
          },
          self: {
            underlay: o.underlayIp.includes(":") ? { ipv6: o.underlayIp } : { ipv4: o.underlayIp },
            podCIDRs: o.podCidr,
            capabilities: { wireguardKernel: caps.wireguard.ok, xfrmKernel: caps.ipsec.ok },
          },
          store,
          backend: nodeBackend({
            node: o.node,
            logger,
            choice,
            underlayIp: o.underlayIp,
            underlayIf: o.underlayIf,
            ifPrefix: o.ifPrefix,
            podCidrs: o.podCidr,
            clusterCidrs: o.clusterCidr,
            wireguardDaemon: o.wireguardDaemon,
          }),
          keys: epochKeys(keys),
          clock: systemClock,
          logger,
        });
        logger.info({ mtu, extMtu, dataplane: o.dataplane }, "agent starting");
        await agent.start();
        await new Promise<void>((resolve) => {
          for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve());
        });
        await agent.stop();
        await store.close();
        logger.info("agent stopped; the data plane keeps running");
      },
    );
}
