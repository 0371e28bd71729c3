import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseResource, type ClusterEncryption } from "../model/index.js";
import { enableEdit } from "./phase-commands.js";

const NOW = new Date("2026-12-06T12:00:00.000Z");

function cluster(fields: Record<string, unknown>): ClusterEncryption {
  return parseResource("clusterencryptions", { name: "default", ...fields });
}

describe("enable: what it writes", () => {
  it("without --host/--no-host host encryption is left as it is", () => {
    const c = cluster({
      enabled: false,
      hostEncryption: true,
      applied: { enabled: false, mode: "wireguard" },
    });
    const e = enableEdit(c, {}, NOW);
    assert.equal(e.enabled, true);
    assert.equal(e.hostEncryption, true);
    assert.equal(e.rotateRequestedAt, undefined);
  });

  it("--host on a cluster that encrypts already asks for a rotation, so that --wait has a run to wait for", () => {
    const c = cluster({ enabled: true, applied: { enabled: true, mode: "wireguard" } });
    const e = enableEdit(c, { host: true }, NOW);
    assert.equal(e.hostEncryption, true);
    assert.equal(e.rotateRequestedAt, NOW.toISOString());
    const back = enableEdit(e, { host: false }, NOW);
    assert.equal(back.hostEncryption, false);
  });

  it("--host with a run that starts anyway (encryption off, or a new mode) asks for no rotation", () => {
    const off = cluster({ enabled: false, applied: { enabled: false, mode: "wireguard" } });
    assert.equal(enableEdit(off, { host: true }, NOW).rotateRequestedAt, undefined);
    const on = cluster({ enabled: true, applied: { enabled: true, mode: "wireguard" } });
    const ipsec = enableEdit(on, { host: true, mode: "ipsec" }, NOW);
    assert.equal(ipsec.mode, "ipsec");
    assert.equal(ipsec.rotateRequestedAt, undefined);
  });

  it("--strict-host needs host encryption; --no-host switches it off too; a change asks for a rotation", () => {
    const c = cluster({ enabled: true, applied: { enabled: true, mode: "wireguard" } });
    assert.throws(() => enableEdit(c, { strictHost: true }, NOW), /--strict-host: needs host encryption/);
    const both = enableEdit(c, { host: true, strictHost: true }, NOW);
    assert.deepEqual([both.hostEncryption, both.strictHost], [true, true]);
    const strictOnly = enableEdit({ ...both, rotateRequestedAt: undefined }, { strictHost: false }, NOW);
    assert.deepEqual([strictOnly.hostEncryption, strictOnly.strictHost], [true, false]);
    assert.equal(strictOnly.rotateRequestedAt, NOW.toISOString());
    const off = enableEdit(both, { host: false }, NOW);
    assert.deepEqual([off.hostEncryption, off.strictHost], [false, false]);
    assert.equal(enableEdit({ ...both, rotateRequestedAt: undefined }, {}, NOW).rotateRequestedAt, undefined);
  });

  it("--host when host encryption is on already changes nothing else", () => {
    const c = cluster({ enabled: true, hostEncryption: true, applied: { enabled: true, mode: "wireguard" } });
    assert.equal(enableEdit(c, { host: true }, NOW).rotateRequestedAt, undefined);
  });
});
