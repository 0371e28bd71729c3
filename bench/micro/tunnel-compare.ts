// End-to-end comparison in one run: iperf3 TCP throughput and ping latency through
//   podcrypt  - two WireguardDatapath processes (fixed-key test core, no handshake),
//   wireguard-go - Debian's wireguard-go on both ends, configured with `wg`,
//   veth      - the plain underlay,
// each between two fresh network namespaces. Prints a table with ratios (`--json`: JSON).
//
//   npx tsx bench/micro/tunnel-compare.ts [--seconds S] [--json] [--no-gso] [--no-gro] [--no-offload]
// Set PODCRYPT_PROFILE=DIR to run the podcrypt peers under `node --cpu-prof --cpu-prof-dir=DIR`.
import { execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { deleteNetns, run, runIn, spawnIn } from "../../src/platform/netns/netns.js";
import { projectRoot } from "../../src/paths.js";

const args = process.argv.slice(2);
const seconds = Number(args[args.indexOf("--seconds") + 1] ?? "") || 5;
const json = args.includes("--json");
const gso = !args.includes("--no-gso");
const gro = !args.includes("--no-gro");
const offload = !args.includes("--no-offload");
const id = randomBytes(3).toString("hex");
const namespaces: string[] = [];
const children: ChildProcess[] = [];

async function netns(name: string): Promise<string> {
  const ns = `pct-${id}-${name}`;
  await run("ip", ["netns", "add", ns]);
  namespaces.push(ns);
  await runIn(ns, "ip", ["link", "set", "lo", "up"]);
  return ns;
}

async function pair(tag: string): Promise<[string, string]> {
  const a = await netns(`${tag}a`);
  const b = await netns(`${tag}b`);
  const va = `v${id}${tag}`;
  const vb = `w${id}${tag}`;
  await run("ip", ["link", "add", va, "type", "veth", "peer", "name", vb]);
  await run("ip", ["link", "set", va, "netns", a, "name", "eth0"]);
  await run("ip", ["link", "set", vb, "netns", b, "name", "eth0"]);
  await runIn(a, "ip", ["addr", "add", "10.77.0.1/24", "dev", "eth0"]);
  await runIn(b, "ip", ["addr", "add", "10.77.0.2/24", "dev", "eth0"]);
  await runIn(a, "ip", ["link", "set", "eth0", "up"]);
  await runIn(b, "ip", ["link", "set", "eth0", "up"]);
  return [a, b];
}

async function inner(a: string, b: string, devA: string, devB = devA): Promise<void> {
  for (const [ns, addr, dev] of [
    [a, "10.66.0.1/24", devA],
    [b, "10.66.0.2/24", devB],
  ] as const) {
    await runIn(ns, "ip", ["addr", "add", addr, "dev", dev]);
    await runIn(ns, "ip", ["link", "set", dev, "up"]);
  }
}

async function startPodcrypt(ns: string, argv: string[]): Promise<void> {
  const prof = process.env["PODCRYPT_PROFILE"];
  const nodeArgs = [...(prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : []), "--import", "tsx"];
  const script = join(projectRoot(), "test", "wireguard", "fixtures", "datapath-peer.ts");
  const child = spawnIn(ns, process.execPath, [...nodeArgs, script, ...argv], {
    stdio: ["pipe", "pipe", "inherit"],
    cwd: projectRoot(),
    env: {
      ...process.env,
      PODCRYPT_GSO: gso ? "1" : "0",
      PODCRYPT_GRO: gro ? "1" : "0",
      PODCRYPT_OFFLOAD: offload ? "1" : "0",
    },
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("podcrypt peer did not start")), 20_000);
    createInterface({ input: child.stdout! }).once("line", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

async function startWireguardGo(a: string, b: string): Promise<void> {
  const keys = [0, 1].map(() => {
    const priv = execFileSync("wg", ["genkey"]).toString().trim();
    const pub = execFileSync("wg", ["pubkey"], { input: priv }).toString().trim();
    return { priv, pub };
  });
  // The UAPI socket /var/run/wireguard/IFNAME.sock is not per namespace: distinct names.
  const devs = [`wgo${id}a`, `wgo${id}b`];
  for (const [i, ns] of [a, b].entries()) {
    const child = spawnIn(ns, "wireguard-go", ["-f", devs[i]!], { stdio: "ignore" });
    children.push(child);
  }
  for (let i = 0; i < 50; i++) {
    const ok = await Promise.all(
      [a, b].map((ns, i) =>
        runIn(ns, "wg", ["show", devs[i]!]).then(
          () => true,
          () => false,
        ),
      ),
    );
    if (ok.every(Boolean)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const nss = [a, b];
  for (let i = 0; i < 2; i++) {
    const me = keys[i]!;
    const other = keys[1 - i]!;
    const ns = nss[i]!;
    await runIn(ns, "sh", [
      "-c",
      `printf '%s' '${me.priv}' > /dev/shm/pc-${id}-${i}.key && wg set ${devs[i]!} private-key /dev/shm/pc-${id}-${i}.key listen-port ${51820 + i} ` +
        `peer ${other.pub} allowed-ips 10.66.0.${2 - i}/32 endpoint 10.77.0.${2 - i}:${51821 - i}; rm -f /dev/shm/pc-${id}-${i}.key`,
    ]);
  }
  await inner(a, b, devs[0]!, devs[1]!);
}

async function iperf(a: string, b: string, target: string): Promise<number> {
  const server = spawnIn(b, "iperf3", ["-s", "-1", "-B", target], { stdio: "ignore" });
  children.push(server);
  await new Promise((r) => setTimeout(r, 300));
  const out = await runIn(a, "iperf3", ["-c", target, "-t", String(seconds), "-J"], {
    timeoutMs: (seconds + 20) * 1000,
  });
  server.kill("SIGKILL");
  return (
    (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second / 1e6
  );
}

async function ping(a: string, target: string): Promise<number> {
  const out = await runIn(a, "ping", ["-c", "20", "-i", "0.05", "-W", "2", target]);
  const m = /= [\d.]+\/([\d.]+)\//.exec(out);
  return m ? Number(m[1]) : NaN;
}

async function cleanup(): Promise<void> {
  for (const c of children) c.kill("SIGINT");
  await new Promise((r) => setTimeout(r, 500));
  for (const c of children) c.kill("SIGKILL");
  for (const ns of namespaces) await deleteNetns(ns);
}

interface Result {
  name: string;
  mbps: number;
  rttMs: number;
}

async function main(): Promise<void> {
  const results: Result[] = [];
  {
    const [a, b] = await pair("p");
    await startPodcrypt(b, ["b", "pcw0", "51820", "bench", "10.66.0.1/32", "10.77.0.1:51821", "ready"]);
    await startPodcrypt(a, ["a", "pcw0", "51821", "bench", "10.66.0.2/32", "10.77.0.2:51820", "ready"]);
    await inner(a, b, "pcw0");
    const rttMs = await ping(a, "10.66.0.2");
    results.push({
      name: `podcrypt${gso ? "" : " -gso"}${gro ? "" : " -gro"}${offload ? "" : " -offload"}`,
      mbps: await iperf(a, b, "10.66.0.2"),
      rttMs,
    });
  }
  {
    const [a, b] = await pair("g");
    await startWireguardGo(a, b);
    const rttMs = await ping(a, "10.66.0.2");
    results.push({ name: "wireguard-go", mbps: await iperf(a, b, "10.66.0.2"), rttMs });
  }
  {
    const [a, b] = await pair("v");
    const rttMs = await ping(a, "10.77.0.2");
    results.push({ name: "veth", mbps: await iperf(a, b, "10.77.0.2"), rttMs });
  }
  const wgo = results.find((r) => r.name === "wireguard-go")!;
  if (json) {
    process.stdout.write(JSON.stringify({ seconds, results }, null, 2) + "\n");
  } else {
    console.log(`iperf3 TCP ${seconds}s, ping 20x; ratios against wireguard-go`);
    console.log("path               Mbit/s   ratio   avg rtt ms");
    for (const r of results) {
      console.log(
        `${r.name.padEnd(16)} ${r.mbps.toFixed(0).padStart(8)}   ${(r.mbps / wgo.mbps).toFixed(2).padStart(5)}x   ${r.rttMs.toFixed(3)}`,
      );
    }
  }
}

process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
main()
  .catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
