/** Parser for `wg show all dump` (wg(8) "dump": tab-separated, one line per interface and peer). */

/** A WireGuard interface as installed. `privateKey` is key material: never log it. */
export interface InstalledWgInterface {
  ifname: string;
  privateKey: string;
  publicKey: string;
  listenPort: number;
  /** 0 when off. */
  fwmark: number;
  peers: InstalledWgPeer[];
}

/** A peer as installed. */
export interface InstalledWgPeer {
  publicKey: string;
  /** undefined when "(none)". Key material: never log it. */
  presharedKey?: string;
  /** "address:port" (IPv6 bracketed, as wg prints it), undefined when none. */
  endpoint?: string;
  /** CIDRs, in the kernel's order. */
  allowedIps: string[];
  /** Unix seconds, 0 when never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  /** Seconds, 0 when off. */
  persistentKeepalive: number;
}

/** Parses `wg show all dump`. */
export function parseWgDump(text: string): Map<string, InstalledWgInterface> {
  const out = new Map<string, InstalledWgInterface>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const f = line.split("\t");
    if (f.length === 5) {
      out.set(f[0]!, {
        ifname: f[0]!,
        privateKey: f[1]!,
        publicKey: f[2]!,
        listenPort: Number(f[3]),
        fwmark: f[4] === "off" ? 0 : Number(f[4]),
        peers: [],
      });
    } else if (f.length === 9) {
      const iface = out.get(f[0]!);
      if (!iface) continue;
      iface.peers.push({
        publicKey: f[1]!,
        ...(f[2] === "(none)" ? {} : { presharedKey: f[2]! }),
        ...(f[3] === "(none)" ? {} : { endpoint: f[3]! }),
        allowedIps: f[4] === "(none)" || f[4] === "" ? [] : f[4]!.split(","),
        latestHandshake: Number(f[5]),
        rxBytes: Number(f[6]),
        txBytes: Number(f[7]),
        persistentKeepalive: f[8] === "off" ? 0 : Number(f[8]),
      });
    }
  }
  return out;
}
