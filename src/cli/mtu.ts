import { Command, Option } from "commander";
import { MAX_EXT_MTU, MIN_EXT_MTU, tunnelMtu, type Mode } from "../mtu/mtu.js";
import { parseIntFlag } from "./flags.js";

export function registerMtu(program: Command): void {
  program
    .command("mtu")
    .description("print the tunnel (pod-facing) MTU for an external MTU (docs/design.md#mtu)")
    .requiredOption(
      "--ext-mtu <n>",
      "MTU of the underlay interface",
      parseIntFlag("--ext-mtu", MIN_EXT_MTU, MAX_EXT_MTU),
    )
    .addOption(
      new Option("--mode <mode>", "encryption mode").choices(["wireguard", "ipsec"]).default("wireguard"),
    )
    .option("--ipv6", "the underlay is IPv6", false)
    .option("--ipip", "IPsec: ESP carried over IPIP (MKE SecureOverlay layout)", false)
    .option("--udp-encap", "IPsec: ESP in UDP (RFC 3948) adds 8 bytes", false)
    .option("--json", "print {mtu, extMtu, mode, ...} as JSON", false)
    .action(
      (o: { extMtu: number; mode: Mode; ipv6: boolean; ipip: boolean; udpEncap: boolean; json: boolean }) => {
        const mtu = tunnelMtu({
          extMtu: o.extMtu,
          mode: o.mode,
          ipv6: o.ipv6,
          ipip: o.ipip,
          udpEncap: o.udpEncap,
        });
        process.stdout.write(
          o.json
            ? JSON.stringify({
                mtu,
                extMtu: o.extMtu,
                mode: o.mode,
                ipv6: o.ipv6,
                ipip: o.ipip,
                udpEncap: o.udpEncap,
              }) + "\n"
            : `${mtu}\n`,
        );
      },
    );
}
