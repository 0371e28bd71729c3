/**
 * The fuzz targets: one per decoder and parser that takes bytes or text from outside. Each
 * documents what counts as a crash: any exception other than the documented validation error
 * type, or an invariant broken (a decoder returning something it would not have encoded, a
 * round trip that changes a valid value, a refused change that left state behind).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { parse as parseYaml, stringify } from "yaml";
import { ManualClock } from "../../src/clock.js";
import { configFile } from "../../src/cli/manifests/workloads.js";
import { defaultManifestOptions } from "../../src/cli/manifests/options.js";
import { parseDaemonConfig } from "../../src/cli/config.js";
import { espRequestSchema, type EspSaConfig } from "../../src/dataplane/esp-userspace/control.js";
import { EspState } from "../../src/dataplane/esp-userspace/state.js";
import { decodeObject } from "../../src/datastore/codec.js";
import { fromKube, toKube, type KubeObject } from "../../src/datastore/kubernetes/mapping.js";
import { isPodcryptError, isValidationError } from "../../src/errors/index.js";
import { encapsulate } from "../../src/esp/codec.js";
import { receiveDatagram } from "../../src/esp/udp.js";
import { parseClusterConfigText, resolveClusterConfig } from "../../src/localcluster/config.js";
import { parseResource } from "../../src/model/index.js";
import { parsePolicyText, toManifest } from "../../src/policy/parse.js";
import { projectRoot } from "../../src/paths.js";
import {
  decodeCookieReply,
  decodeInitiation,
  decodeResponse,
  decodeTransport,
  encodeCookieReply,
  encodeInitiation,
  encodeResponse,
  encodeTransport,
  messageType,
} from "../../src/wireguard/messages.js";
import { ipPacket, TestNetwork, TestNode } from "../support/wireguard-loopback.js";
import { isUapiError } from "../../src/wireguard/uapi/errors.js";
import { parseSetRequest } from "../../src/wireguard/uapi/protocol.js";
import { invariant, Rng, type FuzzTarget } from "./engine.js";

const text = (s: string): Buffer => Buffer.from(s, "utf8");
const tokens = (...s: string[]): Buffer[] => s.map(text);

/** A deterministic RandomBytes for the WireGuard devices (ephemeral keys, indices, cookies). */
function seededRandom(seed: number): (n: number) => Buffer {
  const rng = new Rng(seed);
  return (n) => rng.bytes(n);
}

/** Mutates a JSON-like value: replaces, deletes or duplicates one node anywhere in it. */
function mutateValue(v: unknown, rng: Rng, depth = 0): unknown {
  const odd = (): unknown =>
    rng.pick<unknown>([
      null,
      0,
      -1,
      1.5,
      2 ** 53,
      Number.MAX_VALUE,
      "",
      "x".repeat(rng.below(300)),
      "10.0.0.0/8",
      "::/0",
      "fd00::1",
      "256.1.1.1",
      true,
      [],
      {},
      [null],
      { __proto__: 1 },
      "*alias",
      "&anchor x",
      "\u0000",
      "ä",
    ]);
  if (depth > 8 || rng.chance(0.15)) return odd();
  if (Array.isArray(v)) {
    const a = [...v];
    if (a.length === 0 || rng.chance(0.2)) a.push(odd());
    else {
      const i = rng.below(a.length);
      const what = rng.below(8);
      if (what === 0) a.splice(i, 1);
      else if (what === 1) a.push(a[i]);
      else a[i] = mutateValue(a[i], rng, depth + 1);
    }
    return a;
  }
  if (v !== null && typeof v === "object") {
    const o = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(o);
    if (keys.length === 0 || rng.chance(0.1))
      o[rng.pick(["extra", "name", "spec", "x-" + rng.below(9)])] = odd();
    else {
      const k = rng.pick(keys);
      if (rng.chance(0.15)) Reflect.deleteProperty(o, k);
      else o[k] = mutateValue(o[k], rng, depth + 1);
    }
    return o;
  }
  if (typeof v === "number") return rng.pick([v + 1, v - 1, -v, v * 65536, 0, 0xffffffff, 0.5, NaN]);
  if (typeof v === "string" && v.length > 0 && rng.chance(0.5))
    return (
      v.slice(0, rng.below(v.length)) + String.fromCharCode(rng.below(0x3000)) + v.slice(rng.below(v.length))
    );
  return odd();
}

/** A JSON target's structure-aware mutator: parse, mutate one node, serialize (or bytes if it does not parse). */
function jsonMutator(input: Buffer, rng: Rng): Buffer {
  let v: unknown;
  try {
    v = JSON.parse(input.toString("utf8"));
  } catch {
    return Buffer.concat([input, rng.bytes(1)]);
  }
  return text(JSON.stringify(mutateValue(v, rng)) ?? "null");
}

/** The same for YAML: parsed with the yaml library, mutated, stringified (sometimes as flow). */
function yamlMutator(input: Buffer, rng: Rng): Buffer {
  let docs: unknown;
  try {
    docs = parseYaml(input.toString("utf8"), { maxAliasCount: 10 });
  } catch {
    return Buffer.concat([input, text(rng.pick(["\n- ", ": ", "*a", "&a ", "\n---\n", "{", "'"]))]);
  }
  const out = stringify(mutateValue(docs, rng), rng.chance(0.2) ? { collectionStyle: "flow" } : undefined);
  return text(out);
}

// ---- WireGuard messages ----------------------------------------------------------------------

/** Two in-memory WireGuard devices that have completed a handshake and exchanged data. */
function wireguardPair(seed: number) {
  const clock = new ManualClock(1_000);
  const net = new TestNetwork();
  const a = new TestNode("a", { address: "192.168.1.1", port: 51820 }, clock, net, {
    random: seededRandom(seed),
  });
  const b = new TestNode("b", { address: "192.168.1.2", port: 51821 }, clock, net, {
    random: seededRandom(seed + 1),
  });
  a.addPeer(b, ["10.0.2.0/24", "fd00::2/128"]);
  b.addPeer(a, ["10.0.1.0/24", "fd00::1/128"]);
  a.send(ipPacket("10.0.1.1", "10.0.2.1", text("first")));
  net.run();
  b.send(ipPacket("10.0.2.1", "10.0.1.1", text("reply")));
  net.run();
  a.send(ipPacket("fd00::1", "fd00::2", text("six")));
  net.run();
  return { clock, net, a, b };
}

/** Real messages of every type (initiation, response, transport, keepalive) plus a cookie reply. */
function wireguardMessages(): Buffer[] {
  const { net } = wireguardPair(7);
  const seen = net.log.map((d) => d.bytes);
  const cookie = encodeCookieReply({
    receiver: 0x01020304,
    nonce: Buffer.alloc(24, 9),
    encryptedCookie: Buffer.alloc(32, 5),
  });
  return [...seen, cookie];
}

/** Decoders of src/wireguard/messages.ts: never throw; what decodes re-encodes to the same bytes. */
export const wireguardMessagesTarget: FuzzTarget = {
  name: "wireguard-messages",
  bounded: 20000,
  seeds: wireguardMessages,
  dictionary: [
    Buffer.from([1, 0, 0, 0]),
    Buffer.from([2, 0, 0, 0]),
    Buffer.from([3, 0, 0, 0]),
    Buffer.from([4, 0, 0, 0]),
  ],
  check(b) {
    const type = messageType(b);
    const i = decodeInitiation(b);
    const r = decodeResponse(b);
    const c = decodeCookieReply(b);
    const t = decodeTransport(b);
    const decoded = [i, r, c, t].filter((x) => x !== undefined).length;
    invariant(decoded <= 1, "two decoders accepted the same bytes");
    if (decoded === 1) invariant(type !== undefined, "decoded a message whose header messageType refuses");
    if (i !== undefined)
      invariant(encodeInitiation(i).equals(b), "initiation does not re-encode to its bytes");
    if (r !== undefined) invariant(encodeResponse(r).equals(b), "response does not re-encode to its bytes");
    if (c !== undefined)
      invariant(encodeCookieReply(c).equals(b), "cookie reply does not re-encode to its bytes");
    if (t !== undefined) invariant(encodeTransport(t).equals(b), "transport does not re-encode to its bytes");
    return `type ${type ?? "none"} decoded ${decoded} len ${Math.min(b.length, 200) >> 3}`;
  },
};

/**
 * The WireGuard device's receive path (handshake, cookie and transport handling of the core, as
 * the data path calls it): a datagram from anywhere never throws; drops are counted.
 */
export function wireguardDeviceTarget(): FuzzTarget {
  let pair = wireguardPair(11);
  let runs = 0;
  return {
    name: "wireguard-device",
    bounded: 20000,
    seeds: wireguardMessages,
    check(b) {
      // A fresh pair now and then, so one mutated handshake does not steer every later input.
      if (++runs % 2000 === 0) pair = wireguardPair(11 + runs);
      const { a, b: node, net, clock } = pair;
      const from = runs % 3 === 0 ? a.endpoint : { address: "203.0.113.9", port: 40000 + (runs % 7) };
      const before = node.delivered.length;
      node.receive(b, from);
      net.run(20);
      if (runs % 50 === 0) {
        clock.advance(1000);
        a.tick();
        node.tick();
        net.run(20);
      }
      const drops = node.device.drops();
      return `delivered ${node.delivered.length > before} ${Object.entries(drops.total)
        .filter(([, n]) => (n as number) > 0)
        .map(([k]) => k)
        .join(",")}`;
    },
  };
}

// ---- ESP ---------------------------------------------------------------------------------------

/** A hex string of n random bytes. */
const hex = (rng: Rng, n: number): string => rng.bytes(n).toString("hex");

/** Two ESP states, `a` sending to `b` with SPI 0x1000 (and back with 0x2000), random keys. */
function espPair(seed: number) {
  const rng = new Rng(seed);
  const key = hex(rng, 16);
  const salt = hex(rng, 4);
  const key2 = hex(rng, 16);
  const salt2 = hex(rng, 4);
  const mk = (self: string, peer: string, out: [number, string, string], inb: [number, string, string]) => {
    const s = new EspState();
    const sas: EspSaConfig[] = [
      { direction: "out", peer, keyId: 1, spi: out[0], key: out[1], salt: out[2] },
      { direction: "in", peer, keyId: 1, spi: inb[0], key: inb[1], salt: inb[2] },
    ];
    s.apply(
      {
        local: { name: self, address: self === "a" ? "192.0.2.1" : "192.0.2.2" },
        peers: [
          {
            name: peer,
            endpoint: { address: self === "a" ? "192.0.2.2" : "192.0.2.1", port: 4500 },
            allowedIps: [
              self === "a" ? "10.0.2.0/24" : "10.0.1.0/24",
              self === "a" ? "fd00:2::/64" : "fd00:1::/64",
            ],
          },
        ],
        sas,
        activate: [{ peer, keyId: 1 }],
      },
      0,
    );
    return s;
  };
  const a = mk("a", "b", [0x1000, key, salt], [0x2000, key2, salt2]);
  const b = mk("b", "a", [0x2000, key2, salt2], [0x1000, key, salt]);
  return { a, b };
}

/** A valid inner IPv4 or IPv6 packet carrying `payload`. */
function innerPacket(payload: Buffer, v6: boolean): Buffer {
  return v6 ? ipPacket("fd00:1::1", "fd00:2::1", payload) : ipPacket("10.0.1.1", "10.0.2.1", payload);
}

/**
 * ESP in UDP (src/esp/udp.ts and src/esp/codec.ts, the SA database's open path): a datagram never
 * throws; what opens is an IP packet; and every packet `a` encapsulates, `b` opens to the same bytes.
 */
export function espTarget(): FuzzTarget {
  let pair = espPair(3);
  let now = 1;
  const seeds = (): Buffer[] => {
    const p = espPair(3);
    const out: Buffer[] = [Buffer.from([0xff]), Buffer.alloc(12)];
    for (const [len, v6] of [
      [0, false],
      [1, false],
      [2, true],
      [3, false],
      [100, true],
      [1400, false],
    ] as const) {
      const r = encapsulate(p.a.db.outbound("b")!, innerPacket(Buffer.alloc(len, len), v6), 1);
      if (r.ok) out.push(r.packet);
    }
    return out;
  };
  return {
    name: "esp",
    bounded: 8000,
    seeds,
    dictionary: [
      Buffer.from([0, 0, 0x10, 0]),
      Buffer.from([0, 0, 0x20, 0]),
      Buffer.from([0, 0, 0, 0]),
      Buffer.from([4]),
      Buffer.from([41]),
      Buffer.from([59]),
    ],
    check(input) {
      now++;
      if (now % 5000 === 0) pair = espPair(3 + now);
      const r = receiveDatagram(pair.b.db, input, now);
      if (r.ok) {
        const version = r.inner[0]! >> 4;
        invariant(
          (r.nextHeader === 4 && version === 4) || (r.nextHeader === 41 && version === 6),
          `opened a packet whose version (${version}) does not match next header ${r.nextHeader}`,
        );
        invariant(r.sa.spi === 0x1000, "opened with an SA other than the one the SPI names");
      }
      // decode(encode(x)) == x for a valid x made from this input.
      const inner = innerPacket(input.subarray(0, 2000), (input[0] ?? 0) % 2 === 1);
      const e = encapsulate(pair.a.db.outbound("b")!, inner, now);
      invariant(e.ok, `encapsulate refused a valid packet: ${e.ok ? "" : e.reason}`);
      const back = receiveDatagram(pair.b.db, e.packet, now);
      invariant(
        back.ok && back.inner.equals(inner),
        `round trip failed: ${back.ok ? "different bytes" : back.reason}`,
      );
      return r.ok ? "opened" : r.reason;
    },
  };
}

// ---- ESP control socket ---------------------------------------------------------------------------

/** Requests of the ESP daemon's control protocol, as the agent sends them. */
function espControlSeeds(): Buffer[] {
  const rng = new Rng(5);
  const sa = (direction: "in" | "out", spi: number) => ({
    direction,
    peer: "b",
    keyId: 2,
    spi,
    key: hex(rng, 16),
    salt: hex(rng, 4),
  });
  return [
    { op: "get" },
    { op: "export-sas" },
    {
      op: "set",
      local: { name: "a", address: "192.0.2.1" },
      peers: [{ name: "b", endpoint: { address: "192.0.2.2", port: 4500 }, allowedIps: ["10.0.2.0/24"] }],
      sas: [sa("in", 0x3000), { ...sa("out", 0x4000), rekeyAfter: 1000, icvLength: 12, esn: true }],
      activate: [{ peer: "b", keyId: 2 }],
    },
    { op: "set", removeKeyIds: [1], removePeers: ["c"] },
    { op: "set", activate: [{ peer: "b", keyId: 1 }] },
  ].map((r) => text(JSON.stringify(r)));
}

/**
 * The ESP daemon's control protocol as its `handle` runs it: JSON line -> schema -> EspState.apply.
 * Crash: an exception from apply other than ValidationError/PodcryptError, or a refused change
 * that changed the state (apply validates everything first).
 */
export function espControlTarget(): FuzzTarget {
  let state = espPair(9).a;
  let runs = 0;
  const meta = { ifname: "pce", pid: 1, port: 4500, mtu: 1420, tun: { offload: true, superSegments: 0 } };
  return {
    name: "esp-control",
    bounded: 8000,
    seeds: espControlSeeds,
    mutate: jsonMutator,
    dictionary: tokens(
      '"op"',
      '"set"',
      '"sas"',
      '"peers"',
      '"activate"',
      '"keyId"',
      '"spi"',
      "null",
      "[]",
      "{}",
    ),
    check(input) {
      if (++runs % 1000 === 0) state = espPair(9 + runs).a;
      let parsed: unknown;
      try {
        parsed = JSON.parse(input.toString("utf8"));
      } catch {
        return "not-json";
      }
      const r = espRequestSchema.safeParse(parsed);
      if (!r.success) return `invalid ${r.error.issues[0]?.code ?? ""}`;
      if (r.data.op !== "set") return r.data.op;
      const { op: _op, ...change } = r.data;
      const before = JSON.stringify(state.status(runs, meta));
      try {
        state.apply(change, runs);
      } catch (e) {
        if (!isValidationError(e) && !isPodcryptError(e)) throw e;
        invariant(JSON.stringify(state.status(runs, meta)) === before, "a refused set changed the state");
        return `refused ${isPodcryptError(e) ? e.code : "validation"}`;
      }
      return "applied";
    },
  };
}

// ---- daemon handover -----------------------------------------------------------------------------

/** What a daemon hands its successor (a planned restart): a WireGuard device's and an ESP state's. */
function handoverSeeds(): Buffer[] {
  const { a, clock } = wireguardPair(13);
  const esp = espPair(13).a;
  for (let i = 0; i < 3; i++) esp.db.outbound("b")!.nextSequence();
  return [text(JSON.stringify(a.device.handOver(clock.now()))), text(JSON.stringify(esp.handOver(5)))];
}

/**
 * The successor's side of a daemon's planned restart (`--take-over`): the answer read from the old
 * daemon's control socket, loaded into a fresh WireGuard device and a fresh ESP state. Crash: an
 * exception other than ValidationError/PodcryptError, or a refused answer that left anything
 * behind (both validate everything before they change anything).
 */
export function handoverTarget(): FuzzTarget {
  let runs = 0;
  return {
    name: "handover",
    bounded: 4000,
    seeds: handoverSeeds,
    mutate: jsonMutator,
    dictionary: tokens(
      '"keypairs"',
      '"replay"',
      '"ring"',
      '"sas"',
      '"sequence"',
      '"slot"',
      "null",
      "[]",
      "{}",
    ),
    check(input) {
      runs++;
      let parsed: unknown;
      try {
        parsed = JSON.parse(input.toString("utf8"));
      } catch {
        return "not-json";
      }
      const outcomes: string[] = [];
      const clock = new ManualClock(1_000 + runs);
      const device = new TestNode("f", { address: "192.168.1.9", port: 1 }, clock, new TestNetwork(), {
        handover: { privateKey: null, fwmark: 0, peers: [] },
      }).device;
      try {
        device.takeOver(parsed, clock.now());
        outcomes.push("wg");
      } catch (e) {
        if (!isValidationError(e) && !isPodcryptError(e)) throw e;
        invariant(
          device.peers().length === 0 && device.privateKey === undefined,
          "a refused device handover left state",
        );
        outcomes.push("wg-refused");
      }
      const esp = new EspState();
      try {
        esp.takeOver(parsed, runs);
        outcomes.push("esp");
      } catch (e) {
        if (!isValidationError(e) && !isPodcryptError(e)) throw e;
        invariant(
          esp.peers.size === 0 && esp.db.all().length === 0 && esp.local.instance === null,
          "a refused ESP handover left state",
        );
        outcomes.push("esp-refused");
      }
      return outcomes.join(" ");
    },
  };
}

// ---- UAPI ------------------------------------------------------------------------------------------

const KEY_HEX = "a".repeat(64);

/** The `set=1` bodies wg(8) sends. */
function uapiSeeds(): Buffer[] {
  return [
    `private_key=${KEY_HEX}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n`,
    `public_key=${"b".repeat(64)}\npreshared_key=${"c".repeat(64)}\nendpoint=192.0.2.2:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.0.2.0/24\nallowed_ip=fd00::2/128\n`,
    `public_key=${"b".repeat(64)}\nendpoint=[fd00::2]:51820\nupdate_only=true\nprotocol_version=1\n`,
    `public_key=${"b".repeat(64)}\nremove=true\n\n`,
  ].map(text);
}

/** UAPI `set` parsing (src/wireguard/uapi/protocol.ts): only UapiError, and what parses has valid fields. */
export const uapiTarget: FuzzTarget = {
  name: "uapi",
  bounded: 20000,
  seeds: uapiSeeds,
  dictionary: tokens(
    "=",
    "\n",
    "public_key=",
    "allowed_ip=",
    "endpoint=",
    "listen_port=",
    "remove=true",
    "[",
    "]:",
    "/128",
    "/0",
    KEY_HEX,
  ),
  check(input) {
    let ops;
    try {
      ops = parseSetRequest(input.toString("utf8"));
    } catch (e) {
      if (!isUapiError(e)) throw e;
      return `refused ${e.errno}`;
    }
    for (const op of ops) {
      const o = op as unknown as Record<string, unknown>;
      for (const v of Object.values(o))
        if (Buffer.isBuffer(v)) invariant(v.length === 32, "a parsed key is not 32 bytes");
      if (typeof o["listenPort"] === "number")
        invariant(
          Number.isInteger(o["listenPort"]) && o["listenPort"] >= 0 && o["listenPort"] <= 65535,
          "bad port",
        );
    }
    return `ok ${ops.map((o) => (o as { op?: string; type?: string }).op ?? (o as { type?: string }).type).join(",")}`;
  },
};

// ---- configuration files -----------------------------------------------------------------------------

const CLUSTER_SEED = `name: fuzz
mode: ipsec
nodes:
  - name: node-1
  - name: node-2
    podCIDR: 10.244.2.0/24
podsPerNode: 2
`;

/**
 * The daemons' config file and the local cluster's: only ValidationError (which names the file
 * and field).
 */
export const configTarget: FuzzTarget = {
  name: "config",
  bounded: 1000,
  seeds: () => [
    text(stringify(configFile(defaultManifestOptions("1.2.3")))),
    text(CLUSTER_SEED),
    text("{}\n"),
  ],
  mutate: yamlMutator,
  dictionary: tokens(
    "agent:\n",
    "controller:\n",
    "cluster:\n",
    "nodes:\n",
    "  - ",
    ": ",
    "*a",
    "&a ",
    "!!binary ",
    "<<: ",
    "---\n",
  ),
  check(input) {
    const s = input.toString("utf8");
    let outcome = "";
    try {
      parseDaemonConfig(s, "config.yaml");
      outcome += "daemon-ok ";
    } catch (e) {
      if (!isValidationError(e)) throw e;
      outcome += `daemon-${e.field.split(":").pop()?.trim().split(".")[0] ?? ""} `;
    }
    try {
      resolveClusterConfig(parseClusterConfigText(s, "cluster.yaml"));
      outcome += "cluster-ok";
    } catch (e) {
      if (!isValidationError(e)) throw e;
      outcome += `cluster-${e.field.split(".")[0] ?? ""}`;
    }
    return outcome;
  },
};

// ---- policies -------------------------------------------------------------------------------------------

/** The policy parser: never throws (errors are returned), and what it accepts re-parses to itself. */
export const policyTarget: FuzzTarget = {
  name: "policy",
  bounded: 2000,
  seeds: () =>
    ["encryptionpolicy.yaml", "starlingx-ipsecpolicy.yaml", "starlingx-ipsecpolicy-updated.yaml"].map((f) =>
      readFileSync(join(projectRoot(), "test", "policy", "fixtures", f)),
    ),
  mutate: yamlMutator,
  dictionary: tokens(
    "kind: List\n",
    "items:\n",
    "ports: ",
    "tcp/",
    "udp/53",
    "0-65535",
    "servicename: ",
    "*x",
    "&x ",
    "---\n",
  ),
  check(input) {
    const r = parsePolicyText(input.toString("utf8"), "fuzz.yaml");
    for (const e of r.errors)
      invariant(isValidationError(e), "an error that is not a ValidationError was returned");
    for (const { policy } of r.policies) {
      const again = parsePolicyText(stringify(toManifest(policy)));
      invariant(
        again.errors.length === 0 &&
          again.policies.length === 1 &&
          isDeepStrictEqual(again.policies[0]!.policy, policy),
        `an accepted policy does not round-trip: ${again.errors[0]?.message ?? "different"}`,
      );
    }
    return r.errors.length > 0 ? `error ${r.errors[0]!.field.split(/[.[]/)[0]}` : `ok ${r.policies.length}`;
  },
};

// ---- Kubernetes node-record mapping (PodcryptNode) ------------------------------------------------------

const NODE_VALUE = {
  name: "node-1",
  underlay: { ipv4: "192.0.2.1" },
  podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  publicKeys: { "3": Buffer.alloc(32, 7).toString("base64") },
  acknowledgements: [{ epoch: 3, phase: "prepare", at: "2026-01-01T00:00:00Z" }],
  backend: "wireguard-userspace",
  heartbeat: "2026-01-01T00:00:01Z",
};

/** A PodcryptNode as the API server returns it, carrying `value`. */
function nodeObject(value: unknown): KubeObject {
  const parts = toKube("nodes", parseResource("nodes", value));
  return {
    apiVersion: "podcrypt.io/v1",
    kind: "PodcryptNode",
    metadata: { name: "node-1", resourceVersion: "42", labels: parts.labels },
    ...parts.body,
  } as KubeObject;
}

/**
 * PodcryptNode objects from the API server -> podcrypt node records (fromKube + decodeObject, as
 * the Kubernetes datastore reads them): never throws; what decodes re-encodes to the same record.
 */
export const nodeMappingTarget: FuzzTarget = {
  name: "node-mapping",
  bounded: 10000,
  seeds: () => [
    text(JSON.stringify(nodeObject(NODE_VALUE))),
    text(JSON.stringify(nodeObject({ ...NODE_VALUE, underlay: { ipv6: "fd00::1" }, status: undefined }))),
    text(JSON.stringify({ metadata: { name: "plain" } })),
  ],
  mutate(input, rng) {
    // Mutate the record's fields in spec as well as the object around them.
    let obj: { spec?: Record<string, unknown> };
    try {
      obj = JSON.parse(input.toString("utf8")) as typeof obj;
    } catch {
      return jsonMutator(input, rng);
    }
    const a = obj?.spec;
    if (a !== undefined && a !== null && typeof a === "object" && rng.chance(0.6)) {
      const keys = Object.keys(a);
      if (keys.length > 0) {
        const k = rng.pick(keys);
        a[k] = mutateValue(a[k], rng);
        return text(JSON.stringify(obj));
      }
    }
    return jsonMutator(input, rng);
  },
  check(input) {
    let obj: unknown;
    try {
      obj = JSON.parse(input.toString("utf8"));
    } catch {
      return "not-json";
    }
    if (obj === null || typeof obj !== "object") return "not-object";
    const k = obj as KubeObject;
    const rec = fromKube("nodes", k);
    const d = decodeObject("nodes", rec.key, rec.raw, k.metadata?.resourceVersion ?? "", undefined);
    if (!d.ok) return `invalid ${d.invalid.error.field.split(".")[0]}`;
    const back = fromKube("nodes", { metadata: { name: rec.key }, ...toKube("nodes", d.stored.value).body });
    const again = decodeObject("nodes", back.key, back.raw, "1", undefined);
    invariant(
      again.ok && isDeepStrictEqual(again.stored.value, d.stored.value),
      "a decoded node does not round-trip",
    );
    return "ok";
  },
};

/** Every target, by name. Fresh instances: the stateful ones keep their state per run. */
export function allTargets(): FuzzTarget[] {
  return [
    wireguardMessagesTarget,
    wireguardDeviceTarget(),
    espTarget(),
    espControlTarget(),
    handoverTarget(),
    uapiTarget,
    configTarget,
    policyTarget,
    nodeMappingTarget,
  ];
}
