/**
 * `podcrypt debug bundle`: what a bug report needs, in one tar.gz, and nothing secret.
 *
 * The archive holds one directory `podcrypt-bundle-<time>/` with:
 * - `version.txt`: podcrypt's and Node's versions, the kernel;
 * - `config/`: the local cluster's record (cluster.json) or the daemon config file given, secrets
 *   removed (values of fields named like keys, tokens and passwords; URL passwords);
 * - `datastore/`: the ClusterEncryption, the Node records and the EncryptionPolicies as stored;
 * - `status.json`: `podcrypt status --json` (local cluster);
 * - `logs/`: the last lines of every daemon's log (agents, controllers, supervisor, datastore);
 * - `nodes/<node>/dataplane.txt`: the node's data plane: each WireGuard device as `wg show` prints
 *   it (private and preshared keys hidden), each userspace ESP daemon's SAs (no keys), `ip xfrm
 *   state` and `policy` with keys masked, links with their MTUs, addresses, routes of every
 *   table, rules, podcrypt's nftables table and the rp_filter values;
 * - `timeline.txt`: the recent phases: when the current one began, every node's acknowledgements
 *   and the controllers' phase log lines, in time order;
 * - `MANIFEST.txt`: what is in it, and what could not be collected and why.
 *
 * Keys never get in: no key file is read, `wg show` hides the private and preshared keys, and
 * every text passes {@link scrub} (XFRM key hex, 64-hex-digit UAPI keys, base64 32-byte keys),
 * except public keys and the SA instance in the datastore records and status, which are public.
 * The tests scan archives for every key a cluster holds.
 */
import { execFile } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { release, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Datastore } from "../datastore/types.js";
import { espGet } from "../dataplane/esp-userspace/control.js";
import { DEFAULT_ESP_SOCKET_DIR, espSocketPath } from "../dataplane/esp-userspace/socket-path.js";
import { uapiSocketPath } from "../dataplane/wireguard-userspace/uapi-client.js";
import { NFT_TABLE } from "../dataplane/node/nft.js";
import { chainText } from "../errors/describe.js";
import { PodcryptError } from "../errors/index.js";
import { CLUSTER_ENCRYPTION_NAME, type ClusterEncryption, type Node } from "../model/index.js";
import { redactSecrets } from "../platform/netlink/kernel-commands.js";
import { run } from "../platform/netns/netns.js";
import { projectRoot } from "../paths.js";
import type { ClusterState } from "../localcluster/state.js";

const execFileP = promisify(execFile);

/** How many lines of each log go in, by default. */
export const DEFAULT_LOG_LINES = 2000;

/** Where the bundle comes from. */
export interface BundleSource {
  /** The local cluster's record and home (logs), when bundling the local cluster. */
  local?: { state: ClusterState; home: string };
  /** The cluster's datastore (the local cluster's, or a real cluster's `--datastore`). */
  store: Datastore;
  /** Only this node (its records, logs and data plane). */
  node?: string;
  /**
   * A real cluster's node this command runs on (`--node`): its data plane is read in this
   * network namespace. Without it (and outside the local cluster) no data plane is read.
   */
  hostNode?: string;
  /** A daemon config file to include (secrets removed). */
  configFile?: string;
  /** Log files to include (a real cluster's node: the agent's, the daemons'). */
  logFiles?: string[];
  /** Lines per log (default {@link DEFAULT_LOG_LINES}). */
  logLines?: number;
  /** `podcrypt status --json` of the local cluster, collected by the caller. */
  status?: () => Promise<unknown>;
}

/** Field names whose values are secrets wherever they appear in a config or record. */
const SECRET_FIELD = /(private|preshared|secret|token|password|passwd|psk|credential|^key$|Key$)/i;
/** Fields that are public although they look like keys. */
const PUBLIC_FIELD = /^(publicKeys?|saInstance|keyId|peerKey)$/;

/**
 * Hides what may be key material in free text: XFRM keys (`aead ... 0x...`), hex strings of 32
 * digits and more (UAPI keys, XFRM keys), base64 32-byte keys, and `private_key=`/`preshared_key=`
 * lines of a UAPI dump.
 */
export function scrub(text: string): string {
  return redactSecrets(text.replace(/^(\s*(?:private_key|preshared_key)=).*$/gm, "$1<redacted>"));
}

/** Removes userinfo passwords and secret query parameters from URLs in `s`. */
function scrubUrls(s: string): string {
  return s
    .replace(/(\/\/[^/\s:@]+):[^@/\s]+@/g, "$1:<redacted>@")
    .replace(/([?&](?:password|token|secret)[^=&\s]*=)[^&\s]+/gi, "$1<redacted>");
}

/**
 * A JSON value with secrets removed: values of secret-named fields replaced, every string
 * scrubbed ({@link scrub}, URLs) except those of public fields (public keys, the SA instance).
 */
export function scrubJson(v: unknown, field = ""): unknown {
  if (PUBLIC_FIELD.test(field)) return v;
  if (typeof v === "string") return SECRET_FIELD.test(field) ? "<redacted>" : scrub(scrubUrls(v));
  if (Array.isArray(v)) return v.map((x) => scrubJson(x, field));
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (SECRET_FIELD.test(k) && !PUBLIC_FIELD.test(k) && (typeof x === "string" || Array.isArray(x)))
        out[k] = "<redacted>";
      else out[k] = scrubJson(x, k);
    }
    return out;
  }
  return v;
}

/** The last `n` lines of `text`. */
function tail(text: string, n: number): string {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.slice(-n).join("\n") + "\n";
}

/**
 * `wg show` output scrubbed, keeping its public keys (`public key: K`, `peer: K` lines): they are
 * what matches a device's peers with the Node records.
 */
function scrubWgShow(text: string): string {
  return text
    .split("\n")
    .map((l) => (/^(\s*public key|peer): [A-Za-z0-9+/]{43}=$/.test(l) ? l : scrub(l)))
    .join("\n");
}

/** Runs `cmd` in `netns` (or here) and returns a section `$ cmd\n<output>` (or the error). */
async function section(netns: string | undefined, cmd: string, args: string[]): Promise<string> {
  const shown = `${cmd} ${args.join(" ")}`;
  try {
    const out =
      netns === undefined ? await run(cmd, args) : await run("ip", ["netns", "exec", netns, cmd, ...args]);
    return `$ ${shown}\n${(cmd === "wg" ? scrubWgShow(out) : scrub(out)).trimEnd()}\n\n`;
  } catch (e) {
    return `$ ${shown}\n(failed: ${scrub(chainText(e))})\n\n`;
  }
}

/** The data plane of one node, as text (see the module comment). */
export async function dataplaneText(netns: string | undefined): Promise<string> {
  let text = `# data plane${netns === undefined ? "" : ` of network namespace ${netns}`}\n\n`;
  let links: Array<{ ifname: string }> = [];
  try {
    const out =
      netns === undefined
        ? await run("ip", ["-j", "link", "show"])
        : await run("ip", ["-n", netns, "-j", "link", "show"]);
    links = JSON.parse(out || "[]") as Array<{ ifname: string }>;
  } catch (e) {
    text += `(listing the links failed: ${scrub(chainText(e))})\n\n`;
  }
  // WireGuard devices (kernel, or a userspace daemon's UAPI socket): wg hides private and
  // preshared keys unless asked with `wg showconf` or `dump`, which are not used.
  const kernelWg = await (
    netns === undefined
      ? run("wg", ["show", "interfaces"])
      : run("ip", ["netns", "exec", netns, "wg", "show", "interfaces"])
  ).catch(() => "");
  // wg lists every userspace daemon's socket on the machine: only this namespace's links count.
  const here = new Set(links.map((l) => l.ifname));
  const wgDevices = new Set(kernelWg.split(/\s+/).filter((s) => here.has(s)));
  for (const l of links) if (existsSync(uapiSocketPath(l.ifname))) wgDevices.add(l.ifname);
  for (const ifname of [...wgDevices].sort()) text += await section(netns, "wg", ["show", ifname]);
  // Userspace ESP daemons: their SAs without keys (the status op carries none).
  for (const l of links) {
    const sock = espSocketPath(l.ifname, DEFAULT_ESP_SOCKET_DIR);
    if (!existsSync(sock)) continue;
    const st = await espGet(sock).then(
      (s) => JSON.stringify(scrubJson(s), null, 2),
      (e: unknown) => `(failed: ${scrub(chainText(e))})`,
    );
    text += `$ (ESP daemon of ${l.ifname}: status)\n${st}\n\n`;
  }
  for (const [cmd, args] of [
    ["ip", ["-s", "xfrm", "state"]],
    ["ip", ["xfrm", "policy"]],
    ["ip", ["-d", "link", "show"]],
    ["ip", ["addr", "show"]],
    ["ip", ["-4", "route", "show", "table", "all"]],
    ["ip", ["-6", "route", "show", "table", "all"]],
    ["ip", ["-4", "rule", "show"]],
    ["nft", ["list", "table", "inet", NFT_TABLE]],
    ["sh", ["-c", "grep -H . /proc/sys/net/ipv4/conf/*/rp_filter"]],
  ] as const)
    text += await section(netns, cmd, [...args]);
  return text;
}

/** The recent phases, in time order, from the records and the controllers' logs. */
function timeline(
  c: ClusterEncryption | undefined,
  nodes: readonly Node[],
  controllerLogs: string[],
): string {
  const rows: Array<[string, string]> = [];
  if (c !== undefined) {
    const run = c.target?.epoch ?? c.epoch;
    for (const ph of ["prepare", "switch", "retire"] as const) {
      const at = c.phaseStartedAt[ph];
      if (at !== undefined) rows.push([at, `cluster: ${ph} of epoch ${run} began`]);
    }
    if (c.lastCompletedAt !== undefined)
      rows.push([c.lastCompletedAt, `cluster: run completed (epoch ${c.epoch})`]);
    rows.push([
      "~",
      `now: phase ${c.phase}, epoch ${c.epoch}${c.target === undefined ? "" : `, target ${c.target.epoch}`}`,
    ]);
  }
  for (const n of nodes)
    for (const a of n.acknowledgements)
      rows.push([a.at, `${n.name}: acknowledged ${a.phase} of epoch ${a.epoch}`]);
  for (const text of controllerLogs)
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const r = JSON.parse(line) as { time?: number; msg?: string; component?: string };
        if (
          typeof r.msg === "string" &&
          /phase|rotation|epoch|leader/i.test(r.msg) &&
          typeof r.time === "number"
        )
          rows.push([new Date(r.time).toISOString(), `controller: ${scrub(line)}`]);
      } catch {
        // not a log record
      }
    }
  rows.sort((a, b) => a[0].localeCompare(b[0]));
  return rows.map(([at, what]) => `${at || "(time unknown)"}  ${what}`).join("\n") + "\n";
}

/**
 * Collects the bundle into `out` (a .tar.gz, mode 0600). Returns the archive's entries; what could
 * not be collected is listed in its MANIFEST.txt rather than failing the bundle.
 */
export async function writeBundle(
  src: BundleSource,
  out: string,
): Promise<{ files: string[]; problems: string[] }> {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const name = `podcrypt-bundle-${stamp}`;
  const work = mkdtempSync(join(tmpdir(), "podcrypt-bundle-"));
  const root = join(work, name);
  const files: string[] = [];
  const problems: string[] = [];
  const put = (rel: string, text: string): void => {
    const p = join(root, rel);
    mkdirSync(dirname(p), { recursive: true, mode: 0o700 });
    writeFileSync(p, text, { mode: 0o600 });
    files.push(rel);
  };
  const json = (v: unknown): string => `${JSON.stringify(scrubJson(v), null, 2)}\n`;
  const lines = src.logLines ?? DEFAULT_LOG_LINES;
  const wanted = (node: string): boolean => src.node === undefined || src.node === node;
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 });
    const pkg = JSON.parse(readFileSync(join(projectRoot(), "package.json"), "utf8")) as { version: string };
    put(
      "version.txt",
      `podcrypt ${pkg.version}\nnode ${process.version}\nkernel ${release()}\n` +
        `collected ${new Date().toISOString()}${src.node === undefined ? "" : ` for node ${src.node}`}\n`,
    );

    if (src.local !== undefined) put("config/cluster.json", json(src.local.state));
    if (src.configFile !== undefined) {
      try {
        const text = readFileSync(src.configFile, "utf8");
        // A YAML config: secret-named fields' values removed line by line, then the text scrubbed.
        put(
          `config/${basename(src.configFile)}`,
          scrub(
            scrubUrls(
              text.replace(
                /^(\s*[\w-]*(?:password|token|secret|private|psk)[\w-]*\s*:).*$/gim,
                "$1 <redacted>",
              ),
            ),
          ),
        );
      } catch (e) {
        problems.push(`config ${src.configFile}: ${chainText(e)}`);
      }
    }

    let cluster: ClusterEncryption | undefined;
    let nodes: Node[] = [];
    try {
      cluster = (await src.store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))?.value;
      nodes = (await src.store.collection("nodes").list()).items.map((i) => i.value);
      const policies = (await src.store.collection("encryptionpolicies").list()).items.map((i) => i.value);
      put("datastore/clusterencryption.json", json(cluster ?? null));
      put("datastore/nodes.json", json(nodes.filter((n) => wanted(n.name))));
      put("datastore/encryptionpolicies.json", json(policies));
    } catch (e) {
      problems.push(`datastore: ${chainText(e)}`);
    }

    if (src.status !== undefined) {
      try {
        put("status.json", json(await src.status()));
      } catch (e) {
        problems.push(`status: ${chainText(e)}`);
      }
    }

    const controllerLogs: string[] = [];
    const logs: Array<{ name: string; path: string }> = [];
    if (src.local !== undefined) {
      const dir = join(src.local.home, "logs");
      for (const f of existsSync(dir) ? readdirSync(dir).sort() : []) {
        const node = /^agent-(.+)\.log$/.exec(f)?.[1];
        if (node !== undefined && !wanted(node)) continue;
        logs.push({ name: f, path: join(dir, f) });
      }
    }
    for (const f of src.logFiles ?? []) logs.push({ name: basename(f), path: f });
    for (const l of logs) {
      try {
        const text = tail(readFileSync(l.path, "utf8"), lines);
        if (l.name.startsWith("controller")) controllerLogs.push(text);
        put(`logs/${l.name}`, scrub(text));
      } catch (e) {
        problems.push(`log ${l.path}: ${chainText(e)}`);
      }
    }

    const planes: Array<{ node: string; netns: string | undefined }> =
      src.local !== undefined
        ? src.local.state.plan.nodes
            .filter((n) => wanted(n.name))
            .map((n) => ({ node: n.name, netns: n.netns }))
        : src.hostNode !== undefined
          ? [{ node: src.hostNode, netns: undefined }]
          : [];
    for (const p of planes) put(`nodes/${p.node}/dataplane.txt`, await dataplaneText(p.netns));
    if (planes.length === 0)
      problems.push(
        "data plane: not read (run the bundle on a node with --node NAME to include its data plane)",
      );

    put(
      "timeline.txt",
      timeline(
        cluster,
        nodes.filter((n) => wanted(n.name)),
        controllerLogs,
      ),
    );
    put(
      "MANIFEST.txt",
      `${name}\n\nfiles:\n${files.map((f) => `  ${f}`).join("\n")}\n\n` +
        (problems.length === 0
          ? "everything was collected\n"
          : `not collected:\n${problems.map((p) => `  ${scrub(p)}`).join("\n")}\n`),
    );
    mkdirSync(dirname(out), { recursive: true });
    try {
      await execFileP("tar", ["-czf", out, "-C", work, name]);
    } catch (cause) {
      throw new PodcryptError("EBUNDLE", `cannot write ${out}: ${chainText(cause)}`, { cause });
    }
    chmodSync(out, 0o600);
    return { files, problems };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
