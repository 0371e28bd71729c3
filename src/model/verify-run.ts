import { z } from "zod";
import { ipAddress, objectName, timestamp } from "./common.js";

/**
 * A verify run the agents carry out (`podcrypt verify --via-agents`): the CLI writes the run, every
 * node it names sends the run's checks from its probe endpoint while capturing its underlay, and
 * writes its report into `status.reports.<node>`. On Kubernetes it is a VerifyRun (status
 * subresource); elsewhere the object under `verifyruns/<name>`.
 */

/**
 * The most checks one run may hold: every ordered pair of 64 nodes, with room for a few checks
 * each (the endpoints' echo, host encryption's node-to-node echo, service ports when selective).
 */
export const MAX_VERIFY_CHECKS = 64 * 63 * 4;

/** One node of a run: where its probe endpoint is, and its underlay address (the negative control's target). */
export const verifyNodeSchema = z.strictObject({
  name: objectName,
  /** The node's probe endpoint: an address of its pod CIDR (see src/agent/verify/endpoint.ts). */
  endpoint: ipAddress,
  /** The node's IPv6 probe endpoint, when it has IPv6 pods: an address of its IPv6 pod CIDR. */
  endpoint6: ipAddress.optional(),
  underlay: ipAddress,
});

/** One check: marked messages from `from`'s probe endpoint to `address` (on node `to`). */
export const verifyCheckSchema = z.strictObject({
  from: objectName,
  to: objectName,
  address: ipAddress,
  protocol: z.enum(["udp", "tcp"]),
  port: z.number().int().min(1).max(65535),
  /** Whether the traffic must be encrypted (always when encrypting all traffic). */
  selected: z.boolean(),
  /** `namespace/name` of the service whose port this is (selective encryption); absent for the probe endpoints' echo. */
  service: z.string().min(1).max(320).optional(),
  /**
   * Host encryption: a node-to-node check, sent from `from`'s underlay (host) address to
   * `address`, `to`'s underlay address, where `to`'s agent echoes it for the run. Absent for
   * checks between probe endpoints and pods.
   */
  host: z.literal(true).optional(),
});

/** What one probed marker got back. */
export const verifyProbeSchema = z.strictObject({
  marker: z.string().min(1).max(256),
  echoed: z.number().int().min(0),
  lost: z.array(z.tuple([z.number().int().min(0), z.number().int().min(0)])).max(1024),
  startedAt: z.number().min(0),
});

/** A marker the node's capture saw in plaintext: first and last (ms since the epoch), last per IPv4 source. */
export const verifySeenSchema = z.strictObject({
  marker: z.string().min(1).max(256),
  first: z.number().min(0),
  last: z.number().min(0),
  lastBySource: z.record(z.string(), z.number().min(0)),
});

/** One node's report of a run. */
export const verifyReportSchema = z.strictObject({
  finishedAt: timestamp,
  /** Why the node could not carry out the run (its checks then count as failed). */
  error: z.string().max(1024).optional(),
  capture: z.strictObject({
    interface: z.string().max(64),
    packets: z.number().int().min(0),
    bytes: z.number().int().min(0),
  }),
  probes: z.array(verifyProbeSchema).max(MAX_VERIFY_CHECKS),
  seen: z.array(verifySeenSchema).max(MAX_VERIFY_CHECKS * 2),
  /** The negative control towards each peer: whether this node's own capture saw it. */
  controls: z.array(z.strictObject({ to: objectName, seen: z.boolean() })).max(1024),
});

export const verifyRunSchema = z.strictObject({
  name: objectName,
  /** Makes the run's markers unique: 12 lower-case hex digits. */
  nonce: z.string().regex(/^[0-9a-f]{12}$/, "must be 12 lower-case hex digits"),
  /** When every node starts sending (ms since the epoch): nodes capture from when they see the run. */
  startAt: z.number().int().min(0),
  seconds: z.number().int().min(1).max(600),
  count: z.number().int().min(1).max(1_000_000),
  /** Bytes per message (0: just the marker). */
  size: z.number().int().min(0).max(65_000),
  nodes: z.array(verifyNodeSchema).min(1).max(1024),
  checks: z.array(verifyCheckSchema).max(MAX_VERIFY_CHECKS),
  status: z.strictObject({ reports: z.record(objectName, verifyReportSchema) }).optional(),
});

/** A verify run. */
export type VerifyRun = z.output<typeof verifyRunSchema>;
/** A verify run's check. */
export type VerifyCheck = z.output<typeof verifyCheckSchema>;
/** One node's report of a run. */
export type VerifyReport = z.output<typeof verifyReportSchema>;

/** The marker of a check: unique in the run, and what captures look for. */
export function verifyMarker(run: { nonce: string }, c: VerifyCheck): string {
  return `${verifyMarkerPrefix(run)}${c.from}-${c.to}-${c.protocol}${c.port}-${c.address}`;
}

/** The marker of `from`'s negative control towards `to`. */
export function controlMarker(run: { nonce: string }, from: string, to: string): string {
  return `${verifyMarkerPrefix(run)}control-${from}-${to}`;
}

/** What every marker of the run starts with. */
export function verifyMarkerPrefix(run: { nonce: string }): string {
  return `PODCRYPT-VERIFY-${run.nonce}-`;
}
