import { setTimeout as sleep } from "node:timers/promises";
import { Command, Option } from "commander";
import { isConflictError } from "../datastore/errors.js";
import type { Datastore } from "../datastore/types.js";
import { PodcryptError } from "../errors/index.js";
import { CLUSTER_ENCRYPTION_NAME, type ClusterEncryption, type EncryptionMode } from "../model/index.js";
import { clusterDatastoreOption, openClusterDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";

async function change(
  store: Datastore,
  edit: (c: ClusterEncryption) => ClusterEncryption,
): Promise<ClusterEncryption> {
  const col = store.collection("clusterencryptions");
  for (let i = 0; i < 10; i++) {
    const cur = await col.get(CLUSTER_ENCRYPTION_NAME);
    if (cur === undefined)
      throw new PodcryptError(
        "ENOCLUSTER",
        "the cluster has no ClusterEncryption yet: is the controller running?",
      );
    try {
      return (await col.update(edit(cur.value), { revision: cur.revision })).value;
    } catch (e) {
      if (!isConflictError(e)) throw e;
    }
  }
  throw new PodcryptError("ECONFLICT", "the cluster configuration kept changing under us; try again");
}

/** Waits until a run that started after `fromEpoch` completed (phase idle, epoch advanced). */
async function waitIdle(
  store: Datastore,
  fromEpoch: number,
  timeoutMs: number,
  say: (l: string) => void,
): Promise<ClusterEncryption> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const c = (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))!.value;
    const line = c.phase === "idle" ? `idle at epoch ${c.epoch}` : `${c.phase} → epoch ${c.target?.epoch}`;
    if (line !== last) say(`  ${line}`);
    last = line;
    if (c.phase === "idle" && c.epoch > fromEpoch) return c;
    if (Date.now() > deadline)
      throw new PodcryptError(
        "ETIMEOUT",
        `not complete after ${timeoutMs / 1000} s (${line}); see podcrypt status`,
      );
    await sleep(200);
  }
}

async function runPhaseCommand(
  what: string,
  edit: (c: ClusterEncryption) => ClusterEncryption,
  o: { wait: boolean; timeout: number; datastore?: string },
): Promise<void> {
  const store = await openClusterDatastore(o.datastore);
  try {
    const before = (await store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME))?.value;
    const after = await change(store, edit);
    const fromEpoch = Math.max(
      before?.epoch ?? 0,
      after.epoch,
      after.phase === "idle" ? after.epoch : (after.target?.epoch ?? 1) - 1,
    );
    process.stdout.write(`${what} requested\n`);
    if (!o.wait) return;
    const started = Date.now();
    const done = await waitIdle(store, fromEpoch, o.timeout * 1000, (l) => process.stderr.write(l + "\n"));
    const timeouts = done.timeouts.filter((t) => t.epoch === done.epoch);
    process.stdout.write(
      `${what} complete: epoch ${done.epoch}, encryption ${done.applied?.enabled ? `on (${done.applied.mode})` : "off"}, ` +
        `${((Date.now() - started) / 1000).toFixed(1)} s` +
        (timeouts.length > 0
          ? `; timed out: ${timeouts.map((t) => `${t.node} (${t.phase})`).join(", ")}`
          : "") +
        "\n",
    );
  } finally {
    await store.close();
  }
}

const waitOptions = (c: Command): Command =>
  c
    .addOption(clusterDatastoreOption())
    .option("--wait", "wait until the run completed (every phase acknowledged)", false)
    .option(
      "--timeout <seconds>",
      "with --wait: give up after this long",
      parseIntFlag("--timeout", 1, 3600),
      120,
    );

export function registerPhaseCommands(program: Command): void {
  waitOptions(
    program
      .command("rotate")
      .description("rotate every node's keys now (prepare → switch → retire, no packet lost)"),
  ).action((o: { wait: boolean; timeout: number; datastore?: string }) =>
    runPhaseCommand(
      "rotation",
      (c) => {
        if (!(c.applied?.enabled ?? c.enabled))
          throw new PodcryptError("EDISABLED", "encryption is off: nothing to rotate (podcrypt enable)");
        return { ...c, rotateRequestedAt: new Date().toISOString() };
      },
      o,
    ),
  );
  waitOptions(
    program
      .command("enable")
      .description("switch encryption on (make before break: plaintext accepted until every node encrypts)")
      .addOption(new Option("--mode <mode>", "encryption mode").choices(["wireguard", "ipsec"])),
  ).action((o: { wait: boolean; timeout: number; datastore?: string; mode?: EncryptionMode }) =>
    runPhaseCommand("enable", (c) => ({ ...c, enabled: true, ...(o.mode ? { mode: o.mode } : {}) }), o),
  );
  waitOptions(program.command("disable").description("switch encryption off (no packet lost)")).action(
    (o: { wait: boolean; timeout: number; datastore?: string }) =>
      runPhaseCommand("disable", (c) => ({ ...c, enabled: false }), o),
  );
}
