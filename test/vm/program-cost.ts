/**
 * The host side of programming N peers, natively, without the kernel:
 * `node dist/test/vm/program-cost.js [N]`. Each backend runs against the stateful fake kernel
 * (test/support/fake-kernel.ts), which prints what iproute2 and wg print; the figures
 * are the backend's own work per pass: key derivation, desired state, parsing the read-back,
 * the diff, and the `ip -batch` / `wg syncconf` text. The fake's own cost (applying lines and
 * printing) is measured separately and subtracted. The kernel's share (one `ip -batch`, one
 * `wg syncconf`, the reads) is measured in the VM by reconcile.test.ts.
 */
import { performance } from "node:perf_hooks";
import type { GenerationContext } from "../../src/dataplane/composite/types.js";
import type { DesiredGeneration } from "../../src/dataplane/types.js";
import { KernelWireguardBackend } from "../../src/dataplane/wireguard-kernel/backend.js";
import { KernelXfrmBackend } from "../../src/dataplane/xfrm/backend.js";
import { generateKeyPair } from "../../src/keys/x25519.js";
import { createLogger } from "../../src/log/logger.js";
import { FakeKernel } from "../support/fake-kernel.js";
import type { KernelCommands } from "../../src/platform/netlink/kernel-commands.js";

const count = Number(process.argv[2] ?? 500);
const logger = createLogger("cost", { level: "silent" });
let seed = 0;
const rnd = (n: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
};

/** A fake kernel whose own time (applying and printing) is accounted apart. */
class TimedKernel implements KernelCommands {
  spent = 0;
  constructor(readonly inner: FakeKernel) {}
  private async time<T>(f: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await f();
    } finally {
      this.spent += performance.now() - t;
    }
  }
  ip: KernelCommands["ip"] = (n, a, o) => this.time(() => this.inner.ip(n, a, o));
  ipBatch: KernelCommands["ipBatch"] = (n, l) => this.time(() => this.inner.ipBatch(n, l));
  wg: KernelCommands["wg"] = (n, a) => this.time(() => this.inner.wg(n, a));
  wgSyncconf: KernelCommands["wgSyncconf"] = (n, i, c) => this.time(() => this.inner.wgSyncconf(n, i, c));
}

const self = generateKeyPair(rnd);
const peers = Array.from({ length: count }, (_, i) => ({
  node: `node-${i}`,
  publicKey: generateKeyPair(rnd).publicKey.toString("base64"),
  endpoint: { address: `10.255.${1 + (i >> 8)}.${i & 255}`, port: 51821 },
  allowedIps: [`10.${100 + (i >> 8)}.${i & 255}.0/24`],
}));
const gen = (mode: "wireguard" | "ipsec"): DesiredGeneration => ({
  epoch: 1,
  mode,
  slot: 1,
  ifname: "pct1",
  listenPort: 51821,
  peers,
});
const ctx: GenerationContext = { routes: [], mtu: 1400, privateKey: () => self.privateKey };

async function measure(name: string, k: TimedKernel, pass: () => Promise<unknown>): Promise<void> {
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    k.spent = 0;
    const t = performance.now();
    await pass();
    runs.push(performance.now() - t - k.spent);
  }
  runs.sort((a, b) => a - b);
  const median = runs[2]!;
  process.stdout.write(
    `${name}: ${median.toFixed(1)} ms (median of 5; min ${runs[0]!.toFixed(1)}, max ${runs[4]!.toFixed(1)})\n`,
  );
}

const noSysctl = async (): Promise<void> => undefined;
{
  const fake = new FakeKernel();
  const k = new TimedKernel(fake);
  const b = new KernelWireguardBackend({ logger, ifPrefix: "pct", kernel: k, sysctl: noSysctl });
  await measure(`WireGuard ${count} peers, first pass`, k, async () => {
    fake.links.delete("pct1");
    fake.wgDevices.delete("pct1");
    await b.applyGenerations([gen("wireguard")], ctx);
  });
  await measure(`WireGuard ${count} peers, no-change pass`, k, () =>
    b.applyGenerations([gen("wireguard")], ctx),
  );
  await measure(`WireGuard ${count} peers, observe`, k, () => b.observe());
}
{
  const fake = new FakeKernel();
  const k = new TimedKernel(fake);
  const holder = { ensure: async () => undefined, stop: async () => undefined };
  const backend = (): KernelXfrmBackend =>
    new KernelXfrmBackend({
      logger,
      node: "node-self",
      localAddress: "10.255.0.1",
      underlayIf: "eth0",
      ifPrefix: "pct",
      kernel: k,
      encap: holder,
      sysctl: noSysctl,
    });
  const b = backend();
  // A first pass of a fresh backend (an agent that just started): every SA derived.
  await measure(`XFRM ${count * 2} SAs + ${count * 3} policies, first pass`, k, async () => {
    fake.states.clear();
    fake.policies.clear();
    fake.links.delete("pct1");
    await backend().applyGenerations([gen("ipsec")], ctx);
  });
  await b.applyGenerations([gen("ipsec")], ctx);
  await measure(`XFRM ${count * 2} SAs + ${count * 3} policies, no-change pass`, k, () =>
    b.applyGenerations([gen("ipsec")], ctx),
  );
  await measure(`XFRM ${count * 2} SAs, observe`, k, () => b.observe());
}
