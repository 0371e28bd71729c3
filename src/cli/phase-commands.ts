import { setTimeout as sleep } from "node:timers/promises";
import { Command, Option } from "commander";
import { isConflictError, isUnavailableError } from "../datastore/errors.js";
import type { Datastore } from "../datastore/types.js";
import { PodcryptError, ValidationError } from "../errors/index.js";
import { CLUSTER_ENCRYPTION_NAME, type ClusterEncryption, type EncryptionMode } from "../model/index.js";
import {
  answered,
  clusterDatastoreName,
  clusterDatastoreOption,
  DEFAULT_DATASTORE_TIMEOUT_S,
  openClusterDatastore,
} from "./datastore.js";
import { parseIntFlag } from "./flags.js";
import { applied } from "../protocol/index.js";

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

/**
 * Waits until a run that started after `fromEpoch` completed (phase idle, epoch advanced) and the
 * cluster is `settled`, until `deadline`.
 */
async function waitIdle(
  store: Datastore,
  fromEpoch: number,
  deadline: number,
  timeoutS: number,
  ask: <T>(what: string, p: Promise<T>) => Promise<T>,
  say: (l: string) => void,
  settled: (c: ClusterEncryption) => boolean,
): Promise<ClusterEncryption> {
  let last = "";
  let unavailable: { since: number; error: string } | undefined;
  for (;;) {
    let c: ClusterEncryption;
    try {
      c = (await ask(
        "reading the ClusterEncryption",
        store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME),
      ))!.value;
      if (unavailable !== undefined) say(`  the datastore answers again`);
      unavailable = undefined;
    } catch (e) {
      // A datastore that is down for a while (restarted, failed over) is waited for, within the
      // deadline: the run goes on once it is back.
      if (!isUnavailableError(e)) throw e;
      if (unavailable === undefined) {
        unavailable = { since: Date.now(), error: e.message };
        say(`  the datastore does not answer (${e.message}); waiting for it`);
      }
      if (Date.now() + 500 >= deadline)
        throw new PodcryptError(
          "ETIMEOUT",
          `not complete after ${timeoutS} s (last seen: ${last.trim() || "nothing"}); the datastore has not answered for ${Math.round((Date.now() - unavailable.since) / 1000)} s: ${unavailable.error}`,
        );
      await sleep(Math.min(500, deadline - Date.now() - 500));
      continue;
    }
    const waiting = c.phase === "idle" && c.lagging.length > 0 ? `, waits for ${lagList(c)} to catch up` : "";
    const line =
      c.phase === "idle" ? `idle at epoch ${c.epoch}${waiting}` : `${c.phase} → epoch ${c.target?.epoch}`;
    if (line !== last) say(`  ${line}`);
    last = line;
    if (c.phase === "idle" && c.epoch > fromEpoch && settled(c)) return c;
    if (Date.now() + 200 >= deadline)
      throw new PodcryptError("ETIMEOUT", `not complete after ${timeoutS} s (${line}); see podcrypt status`);
    await sleep(Math.min(200, deadline - Date.now() - 200));
  }
}

/** The lagging nodes of `c` as a person reads them. */
function lagList(c: ClusterEncryption): string {
  return c.lagging.map((l) => `${l.node} (epoch ${l.epoch}, kept until ${l.until})`).join(", ");
}

async function runPhaseCommand(
  what: string,
  edit: (c: ClusterEncryption) => ClusterEncryption,
  o: { wait: boolean; timeout?: number; datastore?: string },
  settled: (c: ClusterEncryption) => boolean = () => true,
): Promise<void> {
  // Without --wait the timeout bounds only the request; with it, the whole wait, exactly.
  const timeoutS = o.timeout ?? (o.wait ? DEFAULT_WAIT_S : DEFAULT_DATASTORE_TIMEOUT_S);
  const deadline = Date.now() + timeoutS * 1000;
  const name = clusterDatastoreName(o.datastore);
  const ask = <T>(doing: string, p: Promise<T>): Promise<T> =>
    answered(name, doing, Math.max(1, deadline - Date.now()), p, timeoutS);
  const store = await ask("connecting", openClusterDatastore(o.datastore));
  try {
    const before = (
      await ask(
        "reading the ClusterEncryption",
        store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME),
      )
    )?.value;
    const after = await ask(`writing the ${what} request`, change(store, edit));
    const fromEpoch = Math.max(
      before?.epoch ?? 0,
      after.epoch,
      after.phase === "idle" ? after.epoch : (after.target?.epoch ?? 1) - 1,
    );
    process.stdout.write(`${what} requested\n`);
    if (!o.wait) return;
    const started = Date.now();
    const done = await waitIdle(
      store,
      fromEpoch,
      deadline,
      timeoutS,
      ask,
      (l) => process.stderr.write(l + "\n"),
      settled,
    );
    const timeouts = done.timeouts.filter((t) => t.epoch === done.epoch);
    const lagging = done.lagging.filter((l) => l.epoch < done.epoch);
    process.stdout.write(
      `${what} ${lagging.length > 0 ? "complete except for the lagging nodes" : "complete"}: epoch ${done.epoch}, encryption ${done.applied?.enabled ? `on (${done.applied.mode})` : "off"}, ` +
        `${((Date.now() - started) / 1000).toFixed(1)} s` +
        (timeouts.length > 0
          ? `; timed out: ${timeouts.map((t) => `${t.node} (${t.phase})`).join(", ")}`
          : "") +
        "\n",
    );
    if (lagging.length > 0) {
      process.stderr.write(
        `podcrypt: not acknowledged by ${lagging.map((l) => l.node).join(", ")}: ${lagList(done)}. ` +
          "Their pairs keep the old epoch until their agent is back and catches up; " +
          "check those agents (podcrypt status)\n",
      );
      process.exitCode = EXIT_LAGGING;
    }
  } finally {
    // A datastore that stopped answering must not hold the command past its timeout; the timer is
    // unref'd so that, once the store closed, it does not hold the process until the deadline.
    await Promise.race([store.close(), sleep(Math.max(0, deadline - Date.now()), undefined, { ref: false })]);
  }
}

/** Exit code of a `--wait` run that completed while some nodes did not acknowledge it. */
export const EXIT_LAGGING = 3;

/** Default `--timeout` of `--wait`, in seconds. */
const DEFAULT_WAIT_S = 120;

const waitOptions = (c: Command): Command =>
  c
    .addOption(clusterDatastoreOption())
    .option("--wait", "wait until the run completed (every phase acknowledged)", false)
    .option(
      "--timeout <seconds>",
      `give up after this long (default ${DEFAULT_WAIT_S} with --wait, else ${DEFAULT_DATASTORE_TIMEOUT_S}); ` +
        `with --wait, exit code ${EXIT_LAGGING} when the run completed but some nodes did not acknowledge it (named)`,
      parseIntFlag("--timeout", 1, 3600),
    );

/**
 * The ClusterEncryption `enable` writes: enabled, the mode if given, host encryption if
 * `--host`/`--no-host` was given, and strict host mode if `--strict-host`/`--no-strict-host` was
 * (`--no-host` switches strict host mode off too; `--strict-host` needs host encryption). A change
 * of host encryption alone makes the controller start a run (a rotation) that switches it
 * make-before-break (docs/design.md#host-encryption). A change of strict host mode alone starts no
 * run, so it requests a rotation (at `now`): its phases are acknowledged by every node only after a
 * pass with the new setting, which is what `--wait` waits for.
 */
export function enableEdit(
  c: ClusterEncryption,
  o: { mode?: EncryptionMode | undefined; host?: boolean | undefined; strictHost?: boolean | undefined },
  now: Date = new Date(),
): ClusterEncryption {
  const strictHost = o.strictHost ?? (o.host === false ? false : undefined);
  const next: ClusterEncryption = {
    ...c,
    enabled: true,
    ...(o.mode ? { mode: o.mode } : {}),
    ...(o.host === undefined ? {} : { hostEncryption: o.host }),
    ...(strictHost === undefined ? {} : { strictHost }),
  };
  if (next.strictHost && !next.hostEncryption)
    throw new ValidationError(
      "--strict-host",
      "needs host encryption (add --host): strict host mode guards the host traffic host encryption tunnels",
    );
  const runStarts =
    !c.enabled ||
    next.mode !== c.mode ||
    c.applied?.enabled !== true ||
    next.hostEncryption !== applied(c).host;
  if (next.strictHost !== c.strictHost && !runStarts) next.rotateRequestedAt = now.toISOString();
  return next;
}

/**
 * Whether `enable`'s run is done once the cluster is idle past the epoch it started from: with
 * `--host`/`--no-host`, once host encryption runs as configured (a run already going when it was
 * asked for ends with the old setting, and the controller starts one more).
 */
export function enableSettled(c: ClusterEncryption, o: { host?: boolean | undefined }): boolean {
  return o.host === undefined || !c.enabled || applied(c).host === c.hostEncryption;
}

export function registerPhaseCommands(program: Command): void {
  waitOptions(
    program
      .command("rotate")
      .description("rotate every node's keys now (prepare → switch → retire, no packet lost)"),
  ).action((o: { wait: boolean; timeout?: number; datastore?: string }) =>
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
      .addOption(new Option("--mode <mode>", "encryption mode").choices(["wireguard", "ipsec"]))
      .option(
        "--host",
        "encrypt node-to-node traffic too (ClusterEncryption hostEncryption; docs/design.md#host-encryption); " +
          "on a cluster that encrypts already this also rotates the keys, so that --wait returns once every node acknowledged it",
      )
      .option(
        "--no-host",
        "stop encrypting node-to-node traffic (pod traffic stays encrypted; strict host mode goes off too)",
      )
      .option(
        "--strict-host",
        "with host encryption and strict mode: drop plaintext host traffic between the nodes too, except what " +
          "host encryption leaves outside the tunnels (ClusterEncryption strictHost; docs/design.md#host-encryption)",
      )
      .option("--no-strict-host", "stop dropping plaintext host traffic (host traffic stays encrypted)"),
  ).action(
    (o: {
      wait: boolean;
      timeout?: number;
      datastore?: string;
      mode?: EncryptionMode;
      host?: boolean;
      strictHost?: boolean;
    }) =>
      runPhaseCommand(
        "enable",
        (c) => enableEdit(c, o),
        o,
        (c) => enableSettled(c, o),
      ),
  );
  waitOptions(program.command("disable").description("switch encryption off (no packet lost)")).action(
    (o: { wait: boolean; timeout?: number; datastore?: string }) =>
      runPhaseCommand("disable", (c) => ({ ...c, enabled: false }), o),
  );
}
