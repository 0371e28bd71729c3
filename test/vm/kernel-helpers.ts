/** Helpers for kernel-tier tests: things Debian's `ip` and `wg` cannot do alone. */
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runIn } from "../../src/platform/netns/netns.js";
import type { NetnsLab } from "../support/netns.js";

/** Linux UDP socket option numbers (include/uapi/linux/udp.h). */
const SOL_UDP = 17;
const UDP_ENCAP = 100;
const UDP_ENCAP_ESPINUDP = 2;

/**
 * Holds a UDP socket on `port` in `ns` marked UDP_ENCAP_ESPINUDP (RFC 3948), which is what makes the
 * kernel hand arriving ESP-in-UDP to XFRM; without it they hit a closed port. The holder (Debian's
 * python3, as Node cannot set this option) runs until the lab cleans up. Resolves once bound.
 */
export async function holdEspInUdpSocket(lab: NetnsLab, ns: string, port: number): Promise<void> {
  const script = [
    "import socket, sys, signal",
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
    `s.setsockopt(${SOL_UDP}, ${UDP_ENCAP}, ${UDP_ENCAP_ESPINUDP})`,
    `s.bind(("0.0.0.0", ${port}))`,
    "print('ready', flush=True)",
    "signal.pause()",
  ].join("\n");
  const child = lab.spawn(ns, "/usr/bin/python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
  let seen = "";
  child.stdout?.setEncoding("utf8");
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: string) => {
      seen += chunk;
      if (seen.includes("ready")) resolve();
    });
    void once(child, "exit").then(([code]) =>
      reject(new Error(`ESP-in-UDP socket holder exited (${String(code)})`)),
    );
  });
}

/** Byte and packet counters of every XFRM state in `ns`, keyed by SPI as `ip` prints it (0x%08x). */
export async function xfrmStateCounters(
  ns: string,
): Promise<Map<string, { bytes: number; packets: number }>> {
  const text = await runIn(ns, "ip", ["-s", "xfrm", "state"]);
  const result = new Map<string, { bytes: number; packets: number }>();
  let spi: string | undefined;
  let inCurrent = false;
  for (const line of text.split("\n")) {
    const s = /\bspi (0x[0-9a-f]+)/.exec(line);
    if (s) spi = s[1];
    if (/lifetime current:/.test(line)) {
      inCurrent = true;
      continue;
    }
    const c = inCurrent ? /^\s*(\d+)\(bytes\), (\d+)\(packets\)/.exec(line) : null;
    if (c && spi !== undefined) result.set(spi, { bytes: Number(c[1]), packets: Number(c[2]) });
    inCurrent = false;
  }
  return result;
}

/**
 * Runs `fn` with a mode-0600 file holding `key` (what `wg set private-key` reads: it cannot read
 * /dev/stdin when stdin is a socket, as under execFile), removed afterwards.
 */
export async function withKeyFile<T>(key: string, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "pct-key-"));
  try {
    const path = join(dir, "key");
    await writeFile(path, key + "\n", { mode: 0o600 });
    return await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
