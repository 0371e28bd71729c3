import { randomBytes } from "node:crypto";
import { native } from "../../native.js";
import type { KernelCommands } from "../../platform/netlink/kernel-commands.js";
import type { KernelSupport } from "../wireguard-kernel/detect.js";
import { AEAD_NAME } from "./plan.js";

/**
 * Probes everything the kernel XFRM data plane needs, throw-away and in one `ip -batch`: an XFRM
 * interface (xfrm_interface), an ESP tunnel-mode SA with rfc4106(gcm(aes)) in UDP (xfrm_user, esp4,
 * the AEAD), each deleted again; and that the native addon can make the ESP-in-UDP socket. The SA
 * uses TEST-NET-1 addresses (RFC 5737), a random SPI, an all-zero key and a reqid outside the range
 * the backend owns, so it can collide with nothing real.
 */
export async function probeKernelXfrm(
  kernel: KernelCommands,
  underlayIf: string,
  netns?: string,
): Promise<KernelSupport> {
  if (typeof native().espInUdpOpen !== "function")
    return { ok: false, reason: "the native addon lacks espInUdpOpen (rebuild it: npm run install)" };
  const id = randomBytes(3);
  const name = `pcprobe${id.toString("hex")}`;
  const spi = `0x${(0x100 + id.readUIntBE(0, 3)).toString(16)}`;
  const sa = `src 192.0.2.1 dst 192.0.2.2 proto esp spi ${spi}`;
  try {
    await kernel.ipBatch(netns, [
      `link add name ${name} type xfrm dev ${underlayIf} if_id 0x${(id.readUIntBE(0, 3) + 1).toString(16)}`,
      `link del dev ${name}`,
      `xfrm state add ${sa} reqid 1 mode tunnel aead ${AEAD_NAME} 0x${"00".repeat(20)} 128 encap espinudp 4500 4500 0.0.0.0`,
      `xfrm state delete ${sa}`,
    ]);
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: `cannot install an XFRM interface and ESP SA (${(e as Error).message})` };
  }
}
