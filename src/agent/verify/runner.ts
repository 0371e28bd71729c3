import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import type { Datastore, Watch } from "../../datastore/types.js";
import { isConflictError, isNotFoundError } from "../../datastore/errors.js";
import type { Logger } from "../../log/logger.js";
import { probe } from "../../localcluster/probe.js";
import {
  controlMarker,
  verifyMarker,
  verifyMarkerPrefix,
  type VerifyReport,
  type VerifyRun,
} from "../../model/index.js";
import { UnderlayCapture } from "./capture.js";
import { CONTROL_PORT } from "../control-port.js";
import { serveProbeEcho } from "./endpoint.js";

/**
 * The fault-injection knob's file name in the agent's state directory: while it exists, the
 * agent's verify captures are left closed (docs/design.md, "Verify through the agents"; for tests).
 */
export const VERIFY_BLIND_FILE = "fault-capture-blind";
/** How long after its start a run's captures keep running, past the probes' own echo wait. */
const TAIL_MS = 1500;
/** A run this much past its end is not started any more (an agent that saw it late). */
const STALE_MS = 30_000;

/** What the runner needs of its agent. */
export interface VerifyRunnerOptions {
  node: string;
  store: Datastore;
  /** The interface captured: the node's underlay. */
  underlayIf: string;
  /** This node's probe endpoint address (probes are sent from it). */
  endpoint: string;
  /** This node's IPv6 probe endpoint, when it has IPv6 pods (IPv6 probes are sent from it). */
  endpoint6?: string;
  /** This node's underlay address (the negative control's source). */
  underlay: string;
  /**
   * Fault-injection knob: while this file exists the capture is left closed (a node whose
   * capture is blind), so the negative control must catch it. Used by the tests.
   */
  blindFile: string;
  logger: Logger;
}

/**
 * Carries out `verify --via-agents` runs on one node: for each run naming this node that it has
 * not reported yet, captures its underlay from now until the run's end, sends the run's checks
 * from this node (marked messages from its probe endpoints to the other nodes' ones, and with host
 * encryption from its host address to theirs, echoed by theirs for the run) and one
 * negative control to every peer's underlay address, and writes its report into the run's status.
 */
export class VerifyRunner {
  private watch: Watch | undefined;
  private readonly running = new Set<string>();
  private stopped = false;

  constructor(private readonly o: VerifyRunnerOptions) {}

  async start(): Promise<void> {
    const runs = this.o.store.collection("verifyruns");
    const list = await runs.list();
    for (const r of list.items) this.consider(r.value);
    this.watch = await runs.watch(list.revision, {
      event: (e) => {
        if (e.type === "ADDED" || e.type === "MODIFIED") this.consider(e.object.value);
      },
      gone: () => {
        // Relist and watch again from there (a run missed meanwhile is reported late or not at all).
        if (!this.stopped) void this.restart();
      },
      error: (err) => this.o.logger.warn({ err: err.message }, "verify run watch problem; retrying"),
    });
  }

  private async restart(): Promise<void> {
    await this.watch?.close();
    await this.start().catch((e: Error) => this.o.logger.warn({ err: e.message }, "verify run watch failed"));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.watch?.close();
  }

  private consider(r: VerifyRun): void {
    if (this.stopped || this.running.has(r.name)) return;
    if (r.status?.reports[this.o.node] !== undefined) return;
    if (!r.nodes.some((n) => n.name === this.o.node)) return;
    if (Date.now() > r.startAt + r.seconds * 1000 + STALE_MS) return;
    this.running.add(r.name);
    void this.execute(r)
      .then((report) => this.report(r.name, report))
      .catch((e: Error) => this.o.logger.warn({ run: r.name, err: e.message }, "verify run failed"))
      .finally(() => setTimeout(() => this.running.delete(r.name), STALE_MS * 2).unref());
  }

  /** Runs `r`'s part of this node and returns the report. */
  async execute(r: VerifyRun): Promise<VerifyReport> {
    const self = this.o.node;
    const prefix = verifyMarkerPrefix(r);
    const blind = existsSync(this.o.blindFile);
    let capture: UnderlayCapture | undefined;
    let error: string | undefined;
    try {
      if (!blind) capture = new UnderlayCapture(this.o.underlayIf, prefix);
    } catch (e) {
      error = `capture of ${this.o.underlayIf} failed: ${(e as Error).message}`;
    }
    const peers = r.nodes.filter((n) => n.name !== self);
    const mine = r.checks.filter((c) => c.from === self);
    const controls = createSocket("udp4");
    // Host encryption's node-to-node checks to this node: echoed on its host address for the run,
    // only the run's markers from the run's nodes.
    const senders = new Set(peers.map((p) => p.underlay));
    const echo = r.checks.some((c) => c.host === true && c.to === self)
      ? await serveProbeEcho(
          this.o.underlay,
          (msg, from) => senders.has(from) && msg.subarray(0, prefix.length).toString("latin1") === prefix,
        ).catch((e: Error) => {
          error = `echo on ${this.o.underlay} failed: ${e.message}`;
          return undefined;
        })
      : undefined;
    try {
      await new Promise<void>((resolve) => controls.bind(0, this.o.underlay, resolve));
      const wait = r.startAt - Date.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      // The negative control: one marked datagram per peer, straight over the underlay. Sent
      // three times, spread over the run, so one lost datagram does not make a capture look blind.
      const sendControls = (): void => {
        for (const p of peers) controls.send(controlMarker(r, self, p.name), CONTROL_PORT, p.underlay);
      };
      sendControls();
      const spread = setInterval(sendControls, Math.max(200, (r.seconds * 1000) / 3));
      let results: Awaited<ReturnType<typeof probe>> = {};
      // Pod checks leave from the probe endpoint of their family, node-to-node checks from the
      // host address.
      const send = async (
        which: (c: (typeof mine)[number]) => boolean,
        source: string | undefined,
      ): Promise<Awaited<ReturnType<typeof probe>>> => {
        const targets = mine
          .filter(which)
          .map((c) => ({ protocol: c.protocol, ip: c.address, port: c.port, marker: verifyMarker(r, c) }));
        // No source of the family (no IPv6 endpoint here): nothing sent, the checks count as lost.
        return targets.length === 0 || source === undefined
          ? {}
          : probe(targets, r.count, r.seconds, { size: r.size, localAddress: source });
      };
      const pod = (v6: boolean) => (c: (typeof mine)[number]) =>
        c.host !== true && c.address.includes(":") === v6;
      try {
        const all = await Promise.all([
          send(pod(false), this.o.endpoint),
          send(pod(true), this.o.endpoint6),
          send((c) => c.host === true, this.o.underlay),
        ]);
        results = Object.assign({}, ...all) as Awaited<ReturnType<typeof probe>>;
      } finally {
        clearInterval(spread);
      }
      const end = r.startAt + r.seconds * 1000 + 2000 + TAIL_MS;
      if (end > Date.now()) await new Promise((res) => setTimeout(res, end - Date.now()));
      capture?.close();
      const seen = capture?.markers() ?? [];
      const seenSet = new Set(seen.map((s) => s.marker));
      return {
        finishedAt: new Date().toISOString(),
        ...(error === undefined ? {} : { error }),
        capture: {
          interface: this.o.underlayIf,
          packets: capture?.packets ?? 0,
          bytes: capture?.bytes ?? 0,
        },
        // An agent's run is never ended early: each probe sent the run's count, which the run
        // states; the report keeps the shape every version of the CLI reads.
        probes: Object.entries(results).map(([marker, { echoed, lost, startedAt }]) => ({
          marker,
          echoed,
          lost,
          startedAt,
        })),
        seen: seen.filter((s) => !s.marker.startsWith(`${prefix}control-`)),
        controls: peers.map((p) => ({ to: p.name, seen: seenSet.has(controlMarker(r, self, p.name)) })),
      };
    } finally {
      capture?.close();
      controls.close();
      echo?.close();
    }
  }

  /** Writes `report` into the run's status (compare-and-swap, retried on conflicts). */
  private async report(name: string, report: VerifyReport): Promise<void> {
    const runs = this.o.store.collection("verifyruns");
    for (let attempt = 0; attempt < 20; attempt++) {
      const cur = await runs.get(name);
      if (cur === undefined) return;
      const reports = { ...(cur.value.status?.reports ?? {}), [this.o.node]: report };
      try {
        await runs.update({ ...cur.value, status: { reports } }, { revision: cur.revision });
        return;
      } catch (e) {
        if (isNotFoundError(e)) return;
        if (!isConflictError(e)) throw e;
      }
    }
    this.o.logger.warn({ run: name }, "verify report not written: the run kept changing");
  }
}
