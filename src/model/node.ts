import { z } from "zod";
import { epochNumber, cidr, objectName, phase, publicKey, timestamp } from "./common.js";

/** Which data plane a node runs (docs/design.md#data-planes); `none` before the first reconcile or when disabled. */
export const backendKind = z.enum([
  "wireguard-kernel",
  "wireguard-userspace",
  "xfrm",
  "esp-userspace",
  "none",
]);
/** Which data plane a node runs. */
export type BackendKind = z.infer<typeof backendKind>;

/** An agent's acknowledgement that it finished `phase` of `epoch` for all its peers. */
export const acknowledgementSchema = z.strictObject({
  epoch: epochNumber,
  phase,
  at: timestamp,
});
/** An agent's acknowledgement that it finished `phase` of `epoch` for all its peers. */
export type Acknowledgement = z.infer<typeof acknowledgementSchema>;

/** One cause of a reconcile failure (src/errors/describe.ts ErrorLink). */
const errorLinkSchema = z.strictObject({
  message: z.string().max(1024),
  code: z.string().max(64).optional(),
  command: z.string().max(1024).optional(),
  exitCode: z.number().int().optional(),
  signal: z.string().max(32).optional(),
  stderr: z.string().max(1024).optional(),
});

/** One claim of a peer's record that an agent refused (src/agent/claims.ts RefusedClaim). */
export const refusedClaimSchema = z.strictObject({
  /** The node whose record makes the claim. */
  node: objectName,
  field: z.enum(["podCIDRs", "underlay"]),
  /** The CIDR or address claimed (as the record has it). */
  value: z.string().max(64),
  reason: z.enum([
    "outside-assigned-pod-cidrs",
    "address-not-assigned",
    "no-such-node",
    "overlaps-other-node",
  ]),
  /** For an overlap: the other node. */
  with: objectName.optional(),
});

/**
 * Workload gating (docs/design.md#workload-gating): what a node's agent asks of its Kubernetes
 * Node's taint `podcrypt.io/not-ready:NoSchedule`. `closed`: keep workloads off (taint on), its
 * tunnels are not all up yet; `open`: they were up once, workloads may come (taint off).
 */
export const workloadGateWish = z.enum(["closed", "open"]);
/** What a node's agent asks of its Node's not-ready taint. */
export type WorkloadGateWish = z.infer<typeof workloadGateWish>;

/** What the agent has installed, for `podcrypt status`. Optional; agents fill what they know. */
export const nodeStatusSchema = z.strictObject({
  /** Epoch whose keys the node currently sends with. */
  sendingEpoch: epochNumber.optional(),
  /** Tunnel MTU the agent set (docs/design.md#mtu). */
  mtu: z.number().int().min(576).max(65535).optional(),
  /** Human-readable problems the agent hit on its last reconcile (never key material). */
  errors: z.array(z.string().max(1024)).max(32).default([]),
  /**
   * Selective encryption: hash of the selector set the node has installed (src/agent/selection.ts);
   * once every live node shows the same one, the set is in force everywhere.
   */
  selection: z
    .string()
    .regex(/^[0-9a-f]{16}$/, "must be 16 hex digits")
    .optional(),
  /**
   * Data-plane daemons (userspace WireGuard, ESP) the agent started again after they died: how
   * many since the agent started, and the last one.
   */
  daemonRestarts: z.strictObject({ count: z.number().int().min(0), last: timestamp.optional() }).optional(),
  /**
   * Packets this node's strict rules dropped since its agent started, per peer (only non-zero
   * ones): `out`, pod traffic that would have left for the peer's pods in plaintext; `in`,
   * plaintext that arrived from the peer when it should have been encrypted. `peer` is "" for
   * addresses no node owns.
   */
  plaintextDrops: z
    .array(
      z.strictObject({
        peer: z.string().max(253),
        direction: z.enum(["out", "in"]),
        packets: z.number().int().min(0),
      }),
    )
    .max(4096)
    .optional(),
  /**
   * The node's tunnels to its live peers, per underlay address family, as the agent judged them
   * last (src/agent/tunnels.ts): `upCount` peers up (handshake done / SA pair installed, and what
   * it sends is answered), the peers `pending` (not yet) and `failing` (it sends and nothing comes
   * back) by name. A live peer named in neither is up. Absent while encryption is off. The
   * controller's status page draws its pair matrix from these; on Kubernetes the agent keeps its
   * workload gate closed until no peer is pending or failing.
   */
  tunnels: z
    .strictObject({
      /** When the agent judged them. */
      at: timestamp,
      families: z
        .array(
          z.strictObject({
            family: z.enum(["ipv4", "ipv6"]),
            /** How many peers' tunnels of this family are up. */
            upCount: z.number().int().min(0).optional(),
            /**
             * The up peers by name, as agents of earlier versions wrote them (a record O(nodes)
             * long): still read; agents now write `upCount` instead.
             */
            up: z.array(objectName).max(4096).optional(),
            pending: z.array(objectName).max(4096).default([]),
            failing: z.array(objectName).max(4096).default([]),
          }),
        )
        .max(2),
    })
    .optional(),
  /**
   * Host encryption as the node's last pass installed it (docs/design.md#host-encryption):
   * `applied` when it routes host traffic through its tunnels (the cluster asks for it and the
   * node has a host address), `routes` how many host routes it holds and `peers` the nodes whose
   * host addresses those routes send into a tunnel (only peers whose tunnel is up). Absent until
   * the agent's first pass (and from agents that predate it).
   */
  hostEncryption: z
    .strictObject({
      applied: z.boolean(),
      routes: z.number().int().min(0),
      peers: z.array(objectName).max(4096).default([]),
    })
    .optional(),
  /**
   * The agent's reconcile failure going on (or the last one, with `clearedAt`): the error and its
   * causes outermost first (a failed command with its command line, exit code and stderr, secrets
   * redacted), when it began, how many passes failed that way and when last.
   */
  reconcileError: z
    .strictObject({
      ...errorLinkSchema.shape,
      causes: z.array(errorLinkSchema).max(8).default([]),
      since: timestamp,
      last: timestamp,
      count: z.number().int().min(1),
      clearedAt: timestamp.optional(),
    })
    .optional(),
  /**
   * The node asks for a rotation before the schedule (IPsec: an outbound SA of `epoch` nears the
   * end of its sequence numbers). The controller starts one when `epoch` is still current.
   */
  rotationWanted: z
    .strictObject({ epoch: epochNumber, reason: z.string().max(256), at: timestamp })
    .optional(),
  /**
   * Peers' claims this node's agent refused in its last pass and does not apply
   * (src/agent/claims.ts): `podcrypt status` shows what the agents refuse from these reports.
   */
  refusedClaims: z.array(refusedClaimSchema).max(256).optional(),
  /**
   * Workload gating: the agent's wish for its Node's not-ready taint, which the leader controller
   * applies on the kubernetes datastore (agents have no write on Node objects). Absent: the agent
   * does not gate (`agent.notReadyTaint` off), and the controller leaves the Node alone.
   */
  workloadGate: workloadGateWish.optional(),
});

/** Epoch numbers as decimal strings, the record key of `Node.publicKeys`. */
const epochKey = z.string().regex(/^(0|[1-9]\d*)$/, "must be a decimal epoch number");

/**
 * A node of the cluster as its agent publishes it (docs/design.md#datastores). Written by the node's own
 * agent only; the controller reads it.
 */
export const nodeSchema = z
  .strictObject({
    name: objectName,
    /** Underlay (host) addresses the data plane sends to. At least one of the two. */
    underlay: z.strictObject({
      ipv4: z.ipv4({ message: "must be an IPv4 address" }).optional(),
      ipv6: z.ipv6({ message: "must be an IPv6 address" }).optional(),
    }),
    /** Pod CIDRs routed to this node. */
    podCIDRs: z.array(cidr).default([]),
    /** What the node's kernel offers; `--dataplane auto` picks from these. */
    capabilities: z
      .strictObject({
        wireguardKernel: z.boolean().default(false),
        xfrmKernel: z.boolean().default(false),
      })
      .default({ wireguardKernel: false, xfrmKernel: false }),
    /** Public keys by epoch (decimal string): `{"3": "base64..."}`. Private keys never leave the node. */
    publicKeys: z.record(epochKey, publicKey).default({}),
    /**
     * IPsec: the node's current SA instance, 16 random bytes as 32 lowercase hex digits, bound
     * into every ESP key and SPI of its pairs (src/keys/derive.ts). A new value whenever the
     * node's data plane may have lost outbound sequence numbers; peers then install new SAs.
     * Absent until the node's IPsec data plane runs: peers install no SA toward it before.
     */
    saInstance: z
      .string()
      .regex(/^[0-9a-f]{32}$/, "must be 32 lowercase hex digits")
      .optional(),
    /** Latest acknowledgements, newest last; the controller looks for `{epoch, phase}` of the run in progress. */
    acknowledgements: z.array(acknowledgementSchema).max(16).default([]),
    /** The data plane in use. */
    backend: backendKind.default("none"),
    /**
     * Written by agents of earlier versions, read by nothing: liveness is the node's liveness
     * record (Datastore.holdLiveness). Kept so that such records still validate; agents drop it
     * with their next write.
     */
    heartbeat: timestamp.optional(),
    status: nodeStatusSchema.optional(),
  })
  .superRefine((n, ctx) => {
    if (n.underlay.ipv4 === undefined && n.underlay.ipv6 === undefined)
      ctx.addIssue({ code: "custom", path: ["underlay"], message: "needs an ipv4 or ipv6 address" });
  });

/** A node of the cluster as its agent publishes it. */
export type Node = z.output<typeof nodeSchema>;
/** A Node as written by callers: fields with defaults may be left out. */
export type NodeInput = z.input<typeof nodeSchema>;

/**
 * The newest acknowledgement of `node` for `epoch`/`phase`, if any; with `notBefore` (an ISO
 * time), only if it was written then or later (a lagging node's switch counts from its switch time).
 */
export function findAcknowledgement(
  node: Pick<NodeInput, "acknowledgements">,
  epoch: number,
  ph: Acknowledgement["phase"],
  notBefore?: string,
): Acknowledgement | undefined {
  const acks = node.acknowledgements ?? [];
  for (let i = acks.length - 1; i >= 0; i--) {
    const a = acks[i]!;
    if (a.epoch !== epoch || a.phase !== ph) continue;
    return notBefore === undefined || Date.parse(a.at) >= Date.parse(notBefore) ? a : undefined;
  }
  return undefined;
}
