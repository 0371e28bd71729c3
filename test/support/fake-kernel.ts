/**
 * A stateful in-memory kernel behind {@link KernelCommands}, for unit tests of the kernel backends
 * and for measuring their host-side cost: it keeps links, WireGuard devices, XFRM states and
 * policies, applies the `ip -batch` lines and `wg syncconf` configurations the backends send (the
 * subset of iproute2 and wg(8) syntax they use), and prints them back in the formats Debian's
 * iproute2 6.1 and wireguard-tools print (as captured in the test VM; see netlink.test.ts). It
 * fails like them: a batch stops at the first bad line ("Command failed -:N"), adding what exists
 * is EEXIST, deleting what does not is ESRCH/ENOENT. `failNext` injects a failure.
 *
 * Only one namespace: the `netns` argument is ignored.
 */
import { PodcryptError } from "../../src/errors/index.js";
import { publicFromPrivate } from "../../src/keys/x25519.js";
import type { KernelCommands } from "../../src/platform/netlink/kernel-commands.js";

export interface FakeLink {
  ifname: string;
  kind: string;
  mtu: number;
  up: boolean;
  ifId?: number;
  dev?: string;
  /** IPv4 addresses of host scope, `a.b.c.d/32` (absent: none). */
  hostAddresses?: string[];
}

export interface FakeWgPeer {
  publicKey: string;
  presharedKey?: string;
  endpoint?: string;
  allowedIps: string[];
  persistentKeepalive: number;
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
}

export interface FakeWgDevice {
  privateKey?: string;
  listenPort: number;
  fwmark: number;
  peers: FakeWgPeer[];
}

export interface FakeXfrmState {
  src: string;
  dst: string;
  spi: number;
  reqid: number;
  replayWindow: number;
  aead: { name: string; keyHex: string; icvBits: number };
  encap?: { sport: number; dport: number };
  mark?: { value: number; mask: number };
  ifId?: number;
  bytes: number;
  packets: number;
}

export interface FakeXfrmPolicy {
  src: string;
  dst: string;
  proto?: string;
  sport?: number;
  dport?: number;
  dir: "in" | "out" | "fwd";
  mark?: { value: number; mask: number };
  ifId?: number;
  priority: number;
  tmpl: { src: string; dst: string; reqid: number };
}

type Op = "ip" | "ipBatch" | "wg" | "wgSyncconf";

/** Calls of each kind, for tests that check a pass's process count. */
export type FakeKernelCalls = Record<Op, number>;

const hex = (n: number): string => `0x${n.toString(16)}`;
const hex8 = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`;

function fail(line: number | undefined, message: string, code = 2): never {
  const stderr = line === undefined ? message : `${message}\nCommand failed -:${line}`;
  throw new PodcryptError("ECOMMAND", `fake kernel: ${stderr}`, { context: { stderr, code } });
}

function policyId(p: Omit<FakeXfrmPolicy, "priority" | "tmpl">): string {
  return [
    p.dir,
    p.src,
    p.dst,
    p.proto ?? "-",
    p.sport ?? "-",
    p.dport ?? "-",
    p.mark ? `${p.mark.value}/${p.mark.mask}` : "-",
    p.ifId ?? 0,
  ].join("|");
}

export class FakeKernel implements KernelCommands {
  readonly links = new Map<string, FakeLink>();
  readonly wgDevices = new Map<string, FakeWgDevice>();
  /** By `dst|spi` (the kernel's SA identity with proto esp). */
  readonly states = new Map<string, FakeXfrmState>();
  readonly policies = new Map<string, FakeXfrmPolicy>();
  readonly calls: FakeKernelCalls = { ip: 0, ipBatch: 0, wg: 0, wgSyncconf: 0 };
  private faults: Array<{ op: Op; afterLines: number; message: string }> = [];

  constructor() {
    this.links.set("lo", { ifname: "lo", kind: "", mtu: 65536, up: true });
    this.links.set("eth0", { ifname: "eth0", kind: "veth", mtu: 1500, up: true });
  }

  /**
   * Makes the next call of `op` fail with `message`; for `ipBatch`, after applying `afterLines`
   * lines (a batch that fails half-way leaves its first lines applied, as `ip -batch` does).
   */
  failNext(op: Op, message = "injected failure", afterLines = 0): void {
    this.faults.push({ op, afterLines, message });
  }

  private fault(op: Op): { afterLines: number; message: string } | undefined {
    const i = this.faults.findIndex((f) => f.op === op);
    return i < 0 ? undefined : this.faults.splice(i, 1)[0];
  }

  async ip(
    _netns: string | undefined,
    args: readonly string[],
    options: { input?: string } = {},
  ): Promise<string> {
    this.calls.ip++;
    const f = this.fault("ip");
    if (f !== undefined) fail(undefined, f.message);
    const flags = new Set(args.filter((a) => a.startsWith("-")));
    const words = args.filter((a) => !a.startsWith("-"));
    if (flags.has("-batch")) {
      // Read-only batches: what the backends read with one process.
      const out: string[] = [];
      for (const line of (options.input ?? "").split("\n").filter((l) => l.trim() !== "")) {
        out.push(this.show(line.trim().split(/\s+/), flags));
        if (line.startsWith("xfrm")) break; // iproute2 closes its netlink socket after an xfrm list
      }
      return out.join("");
    }
    return this.show(words, flags);
  }

  private show(words: string[], flags: Set<string>): string {
    const cmd = words.join(" ");
    if (/^link show( type \w+)?$/.test(cmd) && flags.has("-j")) return this.linksJson(words[3]);
    if (cmd === "addr show" && flags.has("-j")) return this.linksJson(undefined, true);
    if (/^xfrm state( list)?$/.test(cmd)) return this.statesText(flags.has("-s"));
    if (/^xfrm policy( list)?$/.test(cmd)) return this.policiesText();
    return fail(undefined, `fake kernel cannot show "${cmd}"`);
  }

  async ipBatch(_netns: string | undefined, lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return; // as ProcessKernelCommands: no process for nothing
    this.calls.ipBatch++;
    const f = this.fault("ipBatch");
    lines.forEach((line, i) => {
      if (f !== undefined && i === f.afterLines) fail(i + 1, `Error: ${f.message}`);
      this.apply(line.trim().split(/\s+/), i + 1);
    });
    if (f !== undefined) fail(lines.length, `Error: ${f.message}`);
  }

  async wg(_netns: string | undefined, args: readonly string[]): Promise<string> {
    this.calls.wg++;
    const f = this.fault("wg");
    if (f !== undefined) fail(undefined, f.message);
    if (args.join(" ") !== "show all dump")
      return fail(undefined, `fake kernel cannot run wg ${args.join(" ")}`);
    const out: string[] = [];
    for (const [ifname, d] of this.wgDevices) {
      const priv = d.privateKey ?? "(none)";
      const pub = d.privateKey
        ? publicFromPrivate(Buffer.from(d.privateKey, "base64")).toString("base64")
        : "(none)";
      out.push([ifname, priv, pub, d.listenPort, d.fwmark === 0 ? "off" : hex(d.fwmark)].join("\t"));
      for (const p of d.peers)
        out.push(
          [
            ifname,
            p.publicKey,
            p.presharedKey ?? "(none)",
            p.endpoint ?? "(none)",
            p.allowedIps.length === 0 ? "(none)" : p.allowedIps.join(","),
            p.latestHandshake,
            p.rxBytes,
            p.txBytes,
            p.persistentKeepalive === 0 ? "off" : p.persistentKeepalive,
          ].join("\t"),
        );
    }
    return out.map((l) => l + "\n").join("");
  }

  async wgSyncconf(_netns: string | undefined, ifname: string, config: string): Promise<void> {
    this.calls.wgSyncconf++;
    const f = this.fault("wgSyncconf");
    if (f !== undefined) fail(undefined, f.message);
    const dev = this.wgDevices.get(ifname);
    if (dev === undefined) fail(undefined, `Unable to modify interface: No such device`);
    const old = new Map(dev.peers.map((p) => [p.publicKey, p]));
    const peers: FakeWgPeer[] = [];
    let section = "";
    for (const raw of config.split("\n")) {
      const line = raw.trim();
      if (line === "") continue;
      if (line.startsWith("[")) {
        section = line;
        continue;
      }
      const [k, v = ""] = line.split("=").map((x) => x.trim());
      const value = line.slice(line.indexOf("=") + 1).trim();
      if (section === "[Interface]") {
        if (k === "PrivateKey") dev.privateKey = value;
        else if (k === "ListenPort") dev.listenPort = Number(v);
        else if (k === "FwMark") dev.fwmark = v === "off" ? 0 : Number(v);
      } else if (section === "[Peer]") {
        if (k === "PublicKey") {
          const prev = old.get(value);
          peers.push({
            publicKey: value,
            allowedIps: [],
            persistentKeepalive: 0,
            latestHandshake: prev?.latestHandshake ?? 0,
            rxBytes: prev?.rxBytes ?? 0,
            txBytes: prev?.txBytes ?? 0,
            ...(prev?.endpoint === undefined ? {} : { endpoint: prev.endpoint }),
          });
          continue;
        }
        const p = peers.at(-1);
        if (p === undefined) fail(undefined, "Line unrecognized: peer key missing");
        if (k === "Endpoint") p.endpoint = value;
        else if (k === "AllowedIPs") p.allowedIps = value.split(",").map((c) => c.trim());
        else if (k === "PersistentKeepalive") p.persistentKeepalive = value === "off" ? 0 : Number(value);
        else if (k === "PresharedKey") p.presharedKey = value;
      }
    }
    dev.peers = peers;
  }

  /** Counts traffic on a WireGuard peer and records a handshake at `at` (Unix seconds). */
  wgTraffic(ifname: string, publicKey: string, tx: number, rx: number, at: number): void {
    const p = this.wgDevices.get(ifname)?.peers.find((x) => x.publicKey === publicKey);
    if (p === undefined) throw new Error(`no peer ${publicKey} on ${ifname}`);
    p.txBytes += tx;
    p.rxBytes += rx;
    p.latestHandshake = at;
  }

  /** Counts `packets` of `bytes` on the SA with this SPI. */
  xfrmTraffic(spi: number, bytes: number, packets: number): void {
    const s = [...this.states.values()].find((x) => x.spi === spi);
    if (s === undefined) throw new Error(`no SA ${hex8(spi)}`);
    s.bytes += bytes;
    s.packets += packets;
  }

  private apply(w: string[], line: number): void {
    const at = (key: string): string | undefined => {
      const i = w.indexOf(key);
      return i < 0 ? undefined : w[i + 1];
    };
    const num = (key: string): number | undefined => {
      const v = at(key);
      return v === undefined ? undefined : Number(v);
    };
    const head = `${w[0]} ${w[1]}`;
    if (head === "link add") {
      const name = at("name") ?? at("dev")!;
      if (this.links.has(name)) fail(line, "RTNETLINK answers: File exists");
      const type = at("type");
      if (type === "wireguard") {
        this.links.set(name, { ifname: name, kind: "wireguard", mtu: 1420, up: false });
        this.wgDevices.set(name, { listenPort: 0, fwmark: 0, peers: [] });
      } else if (type === "xfrm") {
        // `dev` after `type xfrm` is the lower device.
        const lower = w.slice(w.indexOf("type")).includes("dev") ? w[w.lastIndexOf("dev") + 1] : undefined;
        if (lower !== undefined && !this.links.has(lower)) fail(line, `Cannot find device "${lower}"`);
        const ifId = num("if_id");
        if (ifId === undefined || ifId === 0) fail(line, "Error: if_id must be non zero.");
        this.links.set(name, {
          ifname: name,
          kind: "xfrm",
          mtu: 1500,
          up: false,
          ifId,
          ...(lower === undefined ? {} : { dev: lower }),
        });
      } else fail(line, "Error: Unknown device type.");
      return;
    }
    if (head === "link del" || head === "link set") {
      const name = at("dev")!;
      const l = this.links.get(name);
      if (l === undefined) fail(line, `Cannot find device "${name}"`);
      if (head === "link del") {
        this.links.delete(name);
        this.wgDevices.delete(name);
        return;
      }
      if (at("mtu") !== undefined) l.mtu = num("mtu")!;
      if (w.includes("up")) l.up = true;
      if (w.includes("down")) l.up = false;
      return;
    }
    if (head === "addr replace") {
      const name = at("dev")!;
      const l = this.links.get(name);
      if (l === undefined) fail(line, `Cannot find device "${name}"`);
      if (at("scope") !== "host" || !/^[\d.]+\/32$/.test(w[2]!))
        fail(line, "fake kernel: only host /32 addresses");
      l.hostAddresses = [...new Set([...(l.hostAddresses ?? []), w[2]!])];
      return;
    }
    if (`${head} ${w[2]}` === "xfrm state add") {
      const key = `${at("dst")}|${num("spi")}`;
      if (this.states.has(key)) fail(line, "RTNETLINK answers: File exists");
      const ai = w.indexOf("aead");
      if (w[ai + 1] !== "rfc4106(gcm(aes))") fail(line, "Error: Requested AEAD algorithm not found.");
      const keyHex = w[ai + 2]!.replace(/^0x/, "");
      if (keyHex.length !== 40) fail(line, "RTNETLINK answers: Invalid argument");
      const ei = w.indexOf("encap");
      const mi = w.indexOf("mark");
      const ifId = num("if_id");
      this.states.set(key, {
        src: at("src")!,
        dst: at("dst")!,
        spi: num("spi")!,
        reqid: num("reqid") ?? 0,
        replayWindow: num("replay-window") ?? 0,
        aead: { name: w[ai + 1]!, keyHex, icvBits: Number(w[ai + 3]) },
        ...(ei < 0 ? {} : { encap: { sport: Number(w[ei + 2]), dport: Number(w[ei + 3]) } }),
        ...(mi < 0 ? {} : { mark: { value: Number(w[mi + 1]), mask: Number(w[mi + 3]) } }),
        ...(ifId === undefined ? {} : { ifId }),
        bytes: 0,
        packets: 0,
      });
      return;
    }
    if (`${head} ${w[2]}` === "xfrm state delete") {
      if (!this.states.delete(`${at("dst")}|${num("spi")}`)) fail(line, "RTNETLINK answers: No such process");
      return;
    }
    if (head === "xfrm policy") {
      const verb = w[2];
      const tmpl = w.indexOf("tmpl");
      const sel = tmpl < 0 ? w : w.slice(0, tmpl);
      const sAt = (key: string): string | undefined => {
        const i = sel.indexOf(key);
        return i < 0 ? undefined : sel[i + 1];
      };
      const mi = sel.indexOf("mark");
      const p: Omit<FakeXfrmPolicy, "priority" | "tmpl"> = {
        src: sAt("src")!,
        dst: sAt("dst")!,
        dir: sAt("dir") as FakeXfrmPolicy["dir"],
        ...(sAt("proto") === undefined ? {} : { proto: sAt("proto")! }),
        ...(sAt("sport") === undefined ? {} : { sport: Number(sAt("sport")) }),
        ...(sAt("dport") === undefined ? {} : { dport: Number(sAt("dport")) }),
        ...(mi < 0 ? {} : { mark: { value: Number(sel[mi + 1]), mask: Number(sel[mi + 3]) } }),
        ...(sAt("if_id") === undefined ? {} : { ifId: Number(sAt("if_id")) }),
      };
      const id = policyId(p);
      if (verb === "delete") {
        if (!this.policies.delete(id)) fail(line, "RTNETLINK answers: No such file or directory");
        return;
      }
      if (verb === "add" && this.policies.has(id)) fail(line, "RTNETLINK answers: File exists");
      const t = w.slice(tmpl);
      const tAt = (key: string): string => t[t.indexOf(key) + 1]!;
      this.policies.set(id, {
        ...p,
        priority: Number(sAt("priority") ?? 0),
        tmpl: { src: tAt("src"), dst: tAt("dst"), reqid: Number(tAt("reqid")) },
      });
      return;
    }
    fail(line, `fake kernel cannot apply "${w.join(" ")}"`);
  }

  /** `ip -j link show [type T]`; with `addresses`, `ip -j addr show` (each link with its addr_info). */
  private linksJson(type?: string, addresses = false): string {
    let i = 0;
    const rows = [...this.links.values()]
      .filter((l) => type === undefined || l.kind === type)
      .map((l) => ({
        ifindex: ++i,
        ...(l.dev === undefined ? {} : { link: l.dev }),
        ifname: l.ifname,
        flags: l.up ? ["NOARP", "UP", "LOWER_UP"] : ["NOARP"],
        mtu: l.mtu,
        operstate: l.up ? "UNKNOWN" : "DOWN",
        ...(l.kind === ""
          ? {}
          : {
              linkinfo: {
                info_kind: l.kind,
                ...(l.ifId === undefined ? {} : { info_data: { if_id: hex(l.ifId) } }),
              },
            }),
        ...(addresses
          ? {
              addr_info: (l.hostAddresses ?? []).map((a) => ({
                family: "inet",
                local: a.split("/")[0],
                prefixlen: Number(a.split("/")[1]),
                scope: "host",
                label: l.ifname,
              })),
            }
          : {}),
      }));
    return JSON.stringify(rows) + "\n";
  }

  private statesText(stats: boolean): string {
    const out: string[] = [];
    for (const s of this.states.values()) {
      out.push(
        `src ${s.src} dst ${s.dst}`,
        stats
          ? `\tproto esp spi ${hex8(s.spi)}(${s.spi}) reqid ${s.reqid}(${hex8(s.reqid)}) mode tunnel`
          : `\tproto esp spi ${hex8(s.spi)} reqid ${s.reqid} mode tunnel`,
        stats ? "\treplay-window 0 seq 0x00000000 flag  (0x00000000)" : "\treplay-window 0 ",
        `\taead ${s.aead.name} 0x${s.aead.keyHex}${stats ? " (160 bits)" : ""} ${s.aead.icvBits}`,
      );
      if (s.encap)
        out.push(`\tencap type espinudp sport ${s.encap.sport} dport ${s.encap.dport} addr 0.0.0.0`);
      if (s.mark) out.push(`\tmark ${hex(s.mark.value)}/${hex(s.mark.mask)}`);
      if (s.replayWindow > 32)
        out.push(
          "\tanti-replay esn context:",
          "\t seq-hi 0x0, seq 0x0, oseq-hi 0x0, oseq 0x0",
          `\t replay_window ${s.replayWindow}, bitmap-length ${s.replayWindow / 32}`,
          ...Array.from({ length: s.replayWindow / 256 }, () => `\t ${"00000000 ".repeat(8)}`),
        );
      if (s.ifId !== undefined) out.push(`\tif_id ${hex(s.ifId)}`);
      out.push(`\tsel src 0.0.0.0/0 dst 0.0.0.0/0 ${stats ? "uid 0" : ""}`);
      if (stats)
        out.push(
          "\tlifetime config:",
          "\t  limit: soft (INF)(bytes), hard (INF)(bytes)",
          "\t  limit: soft (INF)(packets), hard (INF)(packets)",
          "\t  expire add: soft 0(sec), hard 0(sec)",
          "\t  expire use: soft 0(sec), hard 0(sec)",
          "\tlifetime current:",
          `\t  ${s.bytes}(bytes), ${s.packets}(packets)`,
          "\t  add 2026-12-01 20:00:46 use -",
          "\tstats:",
          "\t  replay-window 0 replay 0 failed 0",
        );
    }
    return out.map((l) => l + "\n").join("");
  }

  private policiesText(): string {
    const out: string[] = [];
    // The kernel lists the newest policy first.
    for (const p of [...this.policies.values()].reverse()) {
      let head = `src ${p.src} dst ${p.dst} `;
      if (p.proto !== undefined) head += `proto ${p.proto} `;
      if (p.sport !== undefined) head += `sport ${p.sport} `;
      if (p.dport !== undefined) head += `dport ${p.dport} `;
      out.push(head, `\tdir ${p.dir} priority ${p.priority} ptype main `);
      if (p.mark) out.push(`\tmark ${hex(p.mark.value)}/${hex(p.mark.mask)} `);
      out.push(
        `\ttmpl src ${p.tmpl.src} dst ${p.tmpl.dst}`,
        `\t\tproto esp reqid ${p.tmpl.reqid} mode tunnel`,
      );
      if (p.ifId !== undefined) out.push(`\tif_id ${hex(p.ifId)}`);
    }
    return out.map((l) => l + "\n").join("");
  }
}
