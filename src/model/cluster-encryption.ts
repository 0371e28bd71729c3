import { z } from "zod";
import { duration, encryptionMode, epochNumber, objectName, phase, timestamp } from "./common.js";

/** The one ClusterEncryption object every component reads. */
export const CLUSTER_ENCRYPTION_NAME = "default";

/** Default cipher per mode: WireGuard's fixed suite; IPsec as docs/design.md#data-planes. */
export const DEFAULT_CIPHER = { wireguard: "chacha20poly1305", ipsec: "rfc4106(gcm(aes))" } as const;

/** Where the controller is taking the cluster: set when a run starts, cleared when it ends. */
export const targetSchema = z.strictObject({
  epoch: epochNumber,
  mode: encryptionMode,
  enabled: z.boolean(),
  /** Host encryption at the end of the run (`hostEncryption` when it started). Absent: unchanged. */
  host: z.boolean().optional(),
});

/** A node that did not acknowledge a phase in time; the run went on without it. */
export const nodeTimeoutSchema = z.strictObject({
  node: objectName,
  epoch: epochNumber,
  phase,
  at: timestamp,
});

/**
 * A node that had not switched to the new epoch when a rotation retired the old one (its agent was
 * down or stuck, so its data plane still uses `epoch`). Until it catches up, or until `until` at the
 * latest, every other node keeps generation `epoch` (its keys and the data plane's generation in
 * that slot) for this node only, so the node's pairs keep working; no new run starts meanwhile, as
 * the next epoch would need the same generation slot. When the node's agent is back it installs the
 * current epoch and acknowledges `prepare` of it; `switchAt` is then set (a grace period later, so
 * every peer installed the node's new key) and both ends move their pairs to the current epoch; the
 * node's `switch` acknowledgement of the current epoch ends the lag.
 */
export const laggingNodeSchema = z.strictObject({
  node: objectName,
  /** The epoch the node still uses. */
  epoch: epochNumber,
  /** When the run it missed started. */
  since: timestamp,
  /** When peers stop keeping `epoch` for it (since the end of that run plus `maxNodeLag`). */
  until: timestamp,
  /** Set once the node prepared the current epoch: pairs with it move to the current epoch. */
  switchAt: timestamp.optional(),
});

/** A node still using an older epoch, kept for it for a bounded time. */
export type LaggingNode = z.infer<typeof laggingNodeSchema>;

/**
 * The cluster's encryption configuration and the state of the phased protocol
 * (docs/design.md#keys-and-rotation, #strict-mode, #selective-encryption, #datastores). Written by the controller (and by the CLI for `enabled`/`mode`/`rotationInterval`
 * requests); read by every agent.
 */
export const clusterEncryptionSchema = z
  .strictObject({
    /** Always `default`. */
    name: z.literal(CLUSTER_ENCRYPTION_NAME, { message: `must be "${CLUSTER_ENCRYPTION_NAME}"` }),
    /** Whether selected traffic is encrypted. Default true. */
    enabled: z.boolean().default(true),
    /** Data plane mode. Default `wireguard`. */
    mode: encryptionMode.default("wireguard"),
    /** Cipher; defaults to DEFAULT_CIPHER[mode]. */
    cipher: z.string().min(1).optional(),
    /** Automatic rotation period, e.g. `1h` (default), `30m`. */
    rotationInterval: duration.default("1h"),
    /**
     * How long the other nodes keep the old epoch for a node that missed a rotation (its agent was
     * down), e.g. `1h` (default, one rotation interval). After that its pairs stop working until
     * its agent returns, and deferred runs may start.
     */
    maxNodeLag: duration.default("1h"),
    /** Fail closed: drop selected plaintext (docs/design.md#strict-mode). Default true. */
    strict: z.boolean().default(true),
    /** Encrypt host-to-host traffic too. Default false. */
    hostEncryption: z.boolean().default(false),
    /**
     * Strict host mode (docs/design.md#host-encryption): with `strict` and `hostEncryption` on,
     * plaintext host traffic to and from the other nodes' addresses is dropped too, except what
     * host encryption leaves outside the tunnels (their own ports, the datastore connection, the
     * operator's exclusions). Without `hostEncryption` it has no effect. Default false.
     */
    strictHost: z.boolean().default(false),
    /** `all` inter-node pod traffic (default) or only what EncryptionPolicy objects select. */
    encryption: z.enum(["all", "selective"]).default("all"),
    /**
     * What the cluster runs now (written by the controller at the end of each run). `enabled` and
     * `mode` above are the desired state: when they differ from this, the controller starts a run.
     * Absent until the controller first saw the cluster.
     */
    applied: z
      .strictObject({
        enabled: z.boolean(),
        mode: encryptionMode,
        /**
         * Whether host encryption runs. `hostEncryption` above is the desired state: when it
         * differs, the controller starts a run that switches it make-before-break
         * (docs/design.md#host-encryption). Absent (written before it existed): `hostEncryption`.
         */
        host: z.boolean().optional(),
      })
      .optional(),
    /** Set by `podcrypt rotate`: a rotation is wanted if this is later than `lastCompletedAt`. */
    rotateRequestedAt: timestamp.optional(),
    /** Current protocol phase; `idle` when no run is in progress. */
    phase: phase.default("idle"),
    /** The epoch whose keys are in force (the one being left while a run is in progress). */
    epoch: epochNumber.default(0),
    /** Set while a run is in progress. */
    target: targetSchema.optional(),
    /** When each phase of the current (or last) run began. */
    phaseStartedAt: z
      .strictObject({
        prepare: timestamp.optional(),
        switch: timestamp.optional(),
        retire: timestamp.optional(),
      })
      .default({}),
    /** When the last run finished (drives the automatic rotation schedule). */
    lastCompletedAt: timestamp.optional(),
    /** Nodes that timed out in the current or last run. */
    timeouts: z.array(nodeTimeoutSchema).max(1024).default([]),
    /** Nodes still using an older epoch (see {@link laggingNodeSchema}); written by the controller. */
    lagging: z.array(laggingNodeSchema).max(1024).default([]),
  })
  .superRefine((c, ctx) => {
    if (c.phase !== "idle" && c.target === undefined)
      ctx.addIssue({ code: "custom", path: ["target"], message: `is required while phase is ${c.phase}` });
    if (c.target !== undefined && c.target.epoch <= c.epoch)
      ctx.addIssue({ code: "custom", path: ["target", "epoch"], message: "must be greater than epoch" });
  });

/** The cluster's encryption configuration and protocol state. */
export type ClusterEncryption = z.output<typeof clusterEncryptionSchema>;
/** A ClusterEncryption as written by callers: defaulted fields may be left out. */
export type ClusterEncryptionInput = z.input<typeof clusterEncryptionSchema>;

/** The cipher in force: the configured one or the mode's default. */
export function effectiveCipher(c: ClusterEncryption): string {
  return c.cipher ?? DEFAULT_CIPHER[c.mode];
}
