import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseResource, type ClusterEncryption } from "../model/index.js";
import { enableEdit, enableSettled } from "./phase-commands.js";

function cluster(fields: Record<string, unknown>): ClusterEncryption {
  return parseResource("clusterencryptions", { name: "default", ...fields });
}

describe("enable: what it writes", () => {
  it("without --host/--no-host host encryption is left as it is", () => {
    const c = cluster({
      enabled: false,
      hostEncryption: true,
      applied: { enabled: false, mode: "wireguard", host: true },
    });
    const e = enableEdit(c, {});
    assert.equal(e.enabled, true);
    assert.equal(e.hostEncryption, true);
    assert.equal(e.rotateRequestedAt, undefined);
  });

  it("--host and --no-host write the desired state only: the controller's run switches it", () => {
    const c = cluster({ enabled: true, applied: { enabled: true, mode: "wireguard", host: false } });
    const e = enableEdit(c, { host: true });
    assert.equal(e.hostEncryption, true);
    assert.deepEqual(e.applied, c.applied);
    assert.equal(e.rotateRequestedAt, undefined);
    assert.equal(enableEdit(e, { host: false }).hostEncryption, false);
    assert.equal(enableEdit(c, { host: true, mode: "ipsec" }).mode, "ipsec");
  });
});

describe("enable: strict host mode", () => {
  const NOW = new Date("2026-12-06T12:00:00.000Z");
  it("--strict-host needs host encryption; --no-host switches it off too; a change alone asks for a rotation", () => {
    const c = cluster({ enabled: true, applied: { enabled: true, mode: "wireguard", host: false } });
    assert.throws(() => enableEdit(c, { strictHost: true }, NOW), /--strict-host: needs host encryption/);
    // With --host: the controller's run for host encryption is the run; no rotation besides.
    const both = enableEdit(c, { host: true, strictHost: true }, NOW);
    assert.deepEqual([both.hostEncryption, both.strictHost, both.rotateRequestedAt], [true, true, undefined]);
    const on = cluster({
      enabled: true,
      hostEncryption: true,
      strictHost: true,
      applied: { enabled: true, mode: "wireguard", host: true },
    });
    const strictOff = enableEdit(on, { strictHost: false }, NOW);
    assert.deepEqual([strictOff.hostEncryption, strictOff.strictHost], [true, false]);
    assert.equal(strictOff.rotateRequestedAt, NOW.toISOString());
    const off = enableEdit(on, { host: false }, NOW);
    assert.deepEqual([off.hostEncryption, off.strictHost, off.rotateRequestedAt], [false, false, undefined]);
    assert.equal(enableEdit(on, {}, NOW).rotateRequestedAt, undefined, "unchanged: nothing requested");
  });
});

describe("enable --wait: when it is done", () => {
  it("with --host, only once host encryption runs as configured", () => {
    const pending = cluster({
      enabled: true,
      hostEncryption: true,
      epoch: 4,
      applied: { enabled: true, mode: "wireguard", host: false },
    });
    assert.equal(enableSettled(pending, { host: true }), false, "a run that ended with the old setting");
    assert.equal(enableSettled(pending, {}), true, "without --host the setting is not waited for");
    const done = { ...pending, applied: { enabled: true, mode: "wireguard" as const, host: true } };
    assert.equal(enableSettled(done, { host: true }), true);
  });

  it("encryption off by the time it looks: nothing to wait for", () => {
    const off = cluster({
      enabled: false,
      hostEncryption: true,
      applied: { enabled: false, mode: "wireguard", host: false },
    });
    assert.equal(enableSettled(off, { host: true }), true);
  });
});
