import assert from "node:assert/strict";
import { test } from "node:test";
import { executeGet, executeSet } from "./apply.js";
import { UapiErrno } from "./errors.js";
import { MemoryUapiDevice } from "../../../test/support/memory-uapi-device.js";
import { publicFromPrivate } from "../../keys/x25519.js";

const hex = (b: number): string => Buffer.alloc(32, b).toString("hex");
const K1 = hex(1);
const K2 = hex(2);
const PRIV = Buffer.alloc(32, 7);
const ZERO = hex(0);

/** Sets up a device with one peer (K1) through the same text `wg` would send. */
async function deviceWithPeer(): Promise<MemoryUapiDevice> {
  const d = new MemoryUapiDevice();
  const r = await executeSet(
    d,
    `private_key=${PRIV.toString("hex")}\nlisten_port=51820\npublic_key=${K1}\nendpoint=10.0.0.2:51820\nallowed_ip=10.9.0.2/32\n`,
  );
  assert.equal(r.errno, 0);
  return d;
}

const getText = (d: MemoryUapiDevice): string => executeGet(d).text;

test("set then get round-trips in wireguard-go's order and formats", async () => {
  const d = new MemoryUapiDevice();
  const body = [
    `private_key=${PRIV.toString("hex").toUpperCase()}`,
    "listen_port=51820",
    "fwmark=4660",
    `public_key=${K1}`,
    `preshared_key=${K2}`,
    "endpoint=[fd00:0::2]:51821",
    "persistent_keepalive_interval=25",
    "allowed_ip=10.9.0.1/24",
    "allowed_ip=fd00:9:0::1/64",
    "protocol_version=1",
    `public_key=${K2}`,
    "endpoint=192.168.1.2:1",
    "",
  ].join("\n");
  assert.equal((await executeSet(d, body)).errno, 0);
  d.recordTraffic(Buffer.alloc(32, 1), 1234n, 5678n, 1_700_000_000_123_456_789n);
  const clamped = Buffer.from(PRIV);
  clamped[0] = clamped[0]! & 248;
  clamped[31] = (clamped[31]! & 127) | 64;
  assert.equal(
    getText(d),
    [
      `private_key=${clamped.toString("hex")}`,
      "listen_port=51820",
      "fwmark=4660",
      `public_key=${K1}`,
      `preshared_key=${K2}`,
      "protocol_version=1",
      "endpoint=[fd00::2]:51821",
      "last_handshake_time_sec=1700000000",
      "last_handshake_time_nsec=123456789",
      "tx_bytes=5678",
      "rx_bytes=1234",
      "persistent_keepalive_interval=25",
      "allowed_ip=10.9.0.0/24",
      "allowed_ip=fd00:9::/64",
      `public_key=${K2}`,
      `preshared_key=${ZERO}`,
      "protocol_version=1",
      "endpoint=192.168.1.2:1",
      "last_handshake_time_sec=0",
      "last_handshake_time_nsec=0",
      "tx_bytes=0",
      "rx_bytes=0",
      "persistent_keepalive_interval=0",
      "",
    ].join("\n"),
  );
});

test("an empty device answers nothing but errno", () => {
  const r = executeGet(new MemoryUapiDevice());
  assert.deepEqual(r, { text: "", errno: 0 });
});

/** Table of bad requests: errno as wireguard-go answers it, and nothing applied. */
const invalid: Array<[string, string, number]> = [
  ["line without =", "listen_port", UapiErrno.PROTOCOL],
  ["unknown device key", "foo=1", UapiErrno.INVALID],
  ["unknown peer key", `public_key=${K2}\nfoo=1`, UapiErrno.INVALID],
  ["device key in a peer section", `public_key=${K2}\nlisten_port=1`, UapiErrno.INVALID],
  ["private key not hex", "private_key=zz", UapiErrno.INVALID],
  ["private key short", `private_key=${K1.slice(2)}`, UapiErrno.INVALID],
  ["private key long", `private_key=${K1}00`, UapiErrno.INVALID],
  ["public key not hex", `public_key=${"g".repeat(64)}`, UapiErrno.INVALID],
  ["public key base64", `public_key=${Buffer.alloc(32, 1).toString("base64")}`, UapiErrno.INVALID],
  ["preshared key short", `public_key=${K2}\npreshared_key=00`, UapiErrno.INVALID],
  ["listen port too big", "listen_port=65536", UapiErrno.INVALID],
  ["listen port negative", "listen_port=-1", UapiErrno.INVALID],
  ["listen port text", "listen_port=abc", UapiErrno.INVALID],
  ["fwmark too big", "fwmark=4294967296", UapiErrno.INVALID],
  ["replace_peers false", "replace_peers=false", UapiErrno.INVALID],
  ["remove false", `public_key=${K1}\nremove=false`, UapiErrno.INVALID],
  ["update_only yes", `public_key=${K2}\nupdate_only=yes`, UapiErrno.INVALID],
  ["replace_allowed_ips 1", `public_key=${K1}\nreplace_allowed_ips=1`, UapiErrno.INVALID],
  ["endpoint without port", `public_key=${K2}\nendpoint=10.0.0.3`, UapiErrno.INVALID],
  ["endpoint host name", `public_key=${K2}\nendpoint=example.com:1`, UapiErrno.INVALID],
  ["endpoint v6 unbracketed", `public_key=${K2}\nendpoint=fd00::1:51820`, UapiErrno.INVALID],
  ["endpoint port too big", `public_key=${K2}\nendpoint=10.0.0.3:70000`, UapiErrno.INVALID],
  ["allowed ip without length", `public_key=${K2}\nallowed_ip=10.0.0.1`, UapiErrno.INVALID],
  ["allowed ip length too big", `public_key=${K2}\nallowed_ip=10.0.0.1/33`, UapiErrno.INVALID],
  ["keepalive too big", `public_key=${K2}\npersistent_keepalive_interval=65536`, UapiErrno.INVALID],
  ["protocol version 2", `public_key=${K2}\nprotocol_version=2`, UapiErrno.INVALID],
];

for (const [name, body, errno] of invalid) {
  test(`bad set: ${name} -> errno=${errno}, nothing applied`, async () => {
    const d = await deviceWithPeer();
    const before = getText(d);
    // Valid changes first: validation of the whole request happens before any is applied.
    const r = await executeSet(
      d,
      `listen_port=1111\npublic_key=${K1}\nallowed_ip=10.9.9.0/24\n` + body + "\n",
    );
    assert.equal(r.errno, errno);
    assert.ok(r.error !== undefined);
    assert.equal(getText(d), before);
  });
}

test("error messages never echo key material", async () => {
  const secret = "ab".repeat(31) + "zz";
  const r = await executeSet(new MemoryUapiDevice(), `private_key=${secret}\n`);
  assert.equal(r.errno, UapiErrno.INVALID);
  assert.ok(!r.error!.message.includes("abab"));
});

test("peer semantics: remove, update_only, replace_allowed_ips, replace_peers, own key", async () => {
  const steps: Array<{ body: string; peers: Record<string, string[]> }> = [
    {
      body: `public_key=${K2}\nallowed_ip=10.9.0.3/32`,
      peers: { [K1]: ["10.9.0.2/32"], [K2]: ["10.9.0.3/32"] },
    },
    // Moving an allowed IP to another peer takes it from the first (cryptokey routing).
    {
      body: `public_key=${K2}\nallowed_ip=10.9.0.2/32`,
      peers: { [K1]: [], [K2]: ["10.9.0.3/32", "10.9.0.2/32"] },
    },
    {
      body: `public_key=${K2}\nallowed_ip=10.1.0.0/16\nreplace_allowed_ips=true\nallowed_ip=10.2.0.0/16`,
      peers: { [K1]: [], [K2]: ["10.2.0.0/16"] },
    },
    {
      body: `public_key=${hex(3)}\nupdate_only=true\nallowed_ip=10.3.0.0/16`,
      peers: { [K1]: [], [K2]: ["10.2.0.0/16"] },
    },
    {
      body: `public_key=${K1}\nupdate_only=true\nallowed_ip=10.3.0.0/16`,
      peers: { [K1]: ["10.3.0.0/16"], [K2]: ["10.2.0.0/16"] },
    },
    { body: `public_key=${K1}\nremove=true\nallowed_ip=10.4.0.0/16`, peers: { [K2]: ["10.2.0.0/16"] } },
    { body: `public_key=${K1}\nremove=true`, peers: { [K2]: ["10.2.0.0/16"] } },
    // The device's own public key is ignored as a peer.
    {
      body: `public_key=${publicFromPrivate(PRIV).toString("hex")}\nallowed_ip=10.5.0.0/16`,
      peers: { [K2]: ["10.2.0.0/16"] },
    },
    { body: `replace_peers=true\npublic_key=${hex(4)}`, peers: { [hex(4)]: [] } },
  ];
  const d = await deviceWithPeer();
  for (const { body, peers } of steps) {
    assert.equal((await executeSet(d, body + "\n")).errno, 0, body);
    const got = Object.fromEntries(
      d
        .state()
        .peers.map((p) => [
          p.publicKey.toString("hex"),
          p.allowedIps.map((a) => `${Array.from(a.address).join(".")}/${a.bits}`),
        ]),
    );
    assert.deepEqual(got, peers, body);
  }
});

test("private key all zeros clears it; preshared key all zeros clears it", async () => {
  const d = await deviceWithPeer();
  assert.equal((await executeSet(d, `public_key=${K1}\npreshared_key=${K2}\n`)).errno, 0);
  assert.match(getText(d), new RegExp(`preshared_key=${K2}`));
  assert.equal(
    (await executeSet(d, `private_key=${ZERO}\npublic_key=${K1}\npreshared_key=${ZERO}\n`)).errno,
    0,
  );
  const text = getText(d);
  assert.doesNotMatch(text, /private_key=/);
  assert.match(text, new RegExp(`preshared_key=${ZERO}`));
  assert.equal(d.publicKey(), undefined);
});

test("a port in use fails with -EADDRINUSE; changes before it stay, after it are not made", async () => {
  const d = await deviceWithPeer();
  d.portsInUse.add(2222);
  const r = await executeSet(d, `fwmark=7\nlisten_port=2222\npublic_key=${K2}\n`);
  assert.equal(r.errno, UapiErrno.PORT_IN_USE);
  const s = d.state();
  assert.equal(s.fwmark, 7);
  assert.equal(s.listenPort, 51820);
  assert.equal(s.peers.length, 1);
  // Port 0 picks a free port.
  assert.equal((await executeSet(d, "listen_port=0\n")).errno, 0);
  assert.equal(d.state().listenPort, d.ephemeralPort);
});

test("device failures map to errno and do not throw", async () => {
  const d = await deviceWithPeer();
  d.failNextCall("upsertPeer");
  assert.equal((await executeSet(d, `public_key=${K2}\n`)).errno, UapiErrno.UNKNOWN);
  assert.equal(d.hasPeer(Buffer.alloc(32, 2)), false);
  d.failNextCall("setFwmark", UapiErrno.INVALID);
  assert.equal((await executeSet(d, "fwmark=1\n")).errno, UapiErrno.INVALID);
  d.failNextCall("state");
  const failed = executeGet(d);
  assert.equal(failed.errno, UapiErrno.UNKNOWN);
  assert.equal(failed.text, "");
  // The device recovers: the next requests work.
  assert.equal((await executeSet(d, `public_key=${K2}\n`)).errno, 0);
  assert.match(getText(d), new RegExp(`public_key=${K2}`));
});

test("a set body stops at the first blank line", async () => {
  const d = new MemoryUapiDevice();
  assert.equal((await executeSet(d, "listen_port=5\n\nlisten_port=6\n")).errno, 0);
  assert.equal(d.state().listenPort, 5);
});
