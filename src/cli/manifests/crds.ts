/**
 * The CustomResourceDefinitions podcrypt installs (docs/design.md#datastores): ClusterEncryption and
 * PodcryptNode (cluster-scoped) and EncryptionPolicy (namespaced) in podcrypt.io/v1, and StarlingX's IPsecPolicy
 * (starlingx.io/v1, cluster-scoped as upstream's `+kubebuilder:resource:scope=Cluster`). Schemas are
 * structural OpenAPI v3 (every node typed, no $ref) so the API server prunes unknown fields and
 * rejects what the parser in src/policy would reject anyway, as early as `kubectl apply`.
 */

/** A JSON-schema node as CRDs take it (OpenAPI v3 subset plus `x-kubernetes-*`). */
export type JSONSchemaProps = { [key: string]: unknown };

/** The CRD API group of podcrypt's own resources. */
export const PODCRYPT_GROUP = "podcrypt.io";
/** StarlingX's group, for IPsecPolicy accepted as is. */
export const STARLINGX_GROUP = "starlingx.io";

const str = (description: string, extra: JSONSchemaProps = {}): JSONSchemaProps => ({
  type: "string",
  description,
  ...extra,
});
const bool = (description: string, dflt?: boolean): JSONSchemaProps => ({
  type: "boolean",
  description,
  ...(dflt === undefined ? {} : { default: dflt }),
});
const int = (description: string, extra: JSONSchemaProps = {}): JSONSchemaProps => ({
  type: "integer",
  format: "int64",
  description,
  ...extra,
});
const time = (description: string): JSONSchemaProps => str(description, { format: "date-time" });
const obj = (description: string, properties: Record<string, JSONSchemaProps>, required?: string[]) => ({
  type: "object",
  description,
  properties,
  ...(required === undefined ? {} : { required }),
});

const DNS1123_SUBDOMAIN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/** A list of node names (a node record's tunnel report). */
const names = (description: string): JSONSchemaProps => ({
  type: "array",
  description,
  maxItems: 4096,
  items: str("A node name.", { maxLength: 253, pattern: DNS1123_SUBDOMAIN }),
});
const DNS1123_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const DNS1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
const PROTO = "([Tt][Cc][Pp]|[Uu][Dd][Pp]|[Ss][Cc][Tt][Pp])/[0-9]{1,5}";
/** `udp/53,tcp/9153`: syntax only; port range and duplicates are checked by src/policy and reported in status. */
export const PORT_LIST_PATTERN = `^ *${PROTO}( *, *${PROTO})* *$`;
const MODES = ["wireguard", "ipsec"];
const PHASES = ["idle", "prepare", "switch", "retire"];
const DURATION = "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$";

const condition = obj(
  "A standard Kubernetes condition.",
  {
    type: str("Condition type, such as Accepted or Programmed."),
    status: str("True, False or Unknown.", { enum: ["True", "False", "Unknown"] }),
    reason: str("CamelCase reason."),
    message: str("Human-readable detail, such as the validation error naming the field."),
    observedGeneration: int("The .metadata.generation the condition was set for.", { minimum: 0 }),
    lastTransitionTime: time("When status last changed."),
  },
  ["type", "status"],
);

const policyStatus = (extra: Record<string, JSONSchemaProps> = {}): JSONSchemaProps =>
  obj("Written by the controller.", {
    ...extra,
    conditions: {
      type: "array",
      description: "Accepted and Programmed conditions.",
      items: condition,
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["type"],
    },
    observedGeneration: int("The generation the status describes.", { minimum: 0 }),
    programmedNodes: int("Live nodes whose data plane has installed this policy's selectors.", {
      minimum: 0,
    }),
    nodes: int("Live nodes: the policy is Programmed when programmedNodes reaches it.", { minimum: 0 }),
    selectedEndpoints: int("Pod IPs the policy currently selects.", { minimum: 0 }),
  });

const rule = (kind: "EncryptionPolicy" | "IPsecPolicy"): JSONSchemaProps => {
  const f =
    kind === "IPsecPolicy"
      ? { service: "servicename", namespace: "servicens", ports: "serviceports" }
      : { service: "service", namespace: "namespace", ports: "ports" };
  return obj(
    "Encrypt traffic between pods and the pods of this service on these ports.",
    {
      name: str("Rule name, unique across all policies (it names data-plane objects).", {
        maxLength: 253,
        pattern: DNS1123_SUBDOMAIN,
      }),
      [f.service]: str("Service name.", { maxLength: 63, pattern: DNS1035_LABEL }),
      [f.namespace]: str("Namespace of the service.", { maxLength: 63, pattern: DNS1123_LABEL }),
      [f.ports]: str('Comma-separated proto/port list, such as "udp/53,tcp/53,tcp/9153" (tcp, udp, sctp).', {
        pattern: PORT_LIST_PATTERN,
        maxLength: 4096,
      }),
    },
    ["name", f.service, f.namespace, f.ports],
  );
};

const policySpec = (kind: "EncryptionPolicy" | "IPsecPolicy"): JSONSchemaProps =>
  obj(
    "What to encrypt.",
    {
      policies: {
        type: "array",
        description: "Rules; names are unique.",
        minItems: 1,
        maxItems: 1024,
        items: rule(kind),
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
      },
    },
    ["policies"],
  );

/**
 * ClusterEncryption keeps every model field (src/model/cluster-encryption.ts) but `name` in
 * `.spec`, protocol state included, because the controller changes it with compare-and-swap
 * together with the configuration (src/datastore/kubernetes/mapping.ts); `.status` holds only
 * human-readable conditions. A test checks the schema against the model.
 */
export const CLUSTER_ENCRYPTION_STATUS_FIELDS = ["conditions", "observedGeneration"] as const;

const clusterEncryptionSchema: JSONSchemaProps = obj(
  "The cluster's encryption configuration (only the object named default is used) and the state of the phased protocol.",
  {
    apiVersion: str("APIVersion of this object."),
    kind: str("Kind of this object."),
    metadata: { type: "object" },
    spec: obj("Configuration (desired state) and the protocol state the controller drives.", {
      enabled: bool("Whether selected traffic is encrypted.", true),
      mode: str("Data plane mode.", { enum: MODES, default: "wireguard" }),
      cipher: str("Cipher; defaults to chacha20poly1305 (wireguard) or rfc4106(gcm(aes)) (ipsec).", {
        minLength: 1,
      }),
      rotationInterval: str("Automatic key rotation period, such as 1h or 30m.", {
        pattern: DURATION,
        default: "1h",
      }),
      maxNodeLag: str("How long nodes keep the old epoch for a node that missed a rotation.", {
        pattern: DURATION,
        default: "1h",
      }),
      strict: bool("Fail closed: selected traffic never leaves a node in plaintext.", true),
      hostEncryption: bool("Encrypt host-to-host traffic too.", false),
      strictHost: bool(
        "With strict and hostEncryption: drop plaintext host traffic between the nodes too (what host encryption leaves outside the tunnels passes).",
        false,
      ),
      encryption: str("all inter-node pod traffic, or only what policies select.", {
        enum: ["all", "selective"],
        default: "all",
      }),
      rotateRequestedAt: time("Set by `podcrypt rotate`: rotate if later than lastCompletedAt."),
      applied: obj(
        "What the cluster runs now.",
        {
          enabled: bool("Encrypted."),
          mode: str("Mode.", { enum: MODES }),
          host: bool("Host encryption runs (absent: as hostEncryption)."),
        },
        ["enabled", "mode"],
      ),
      phase: str("Current phase; idle between runs.", { enum: PHASES }),
      epoch: int("Epoch whose keys are in force.", { minimum: 0 }),
      target: obj(
        "Where the run in progress is taking the cluster.",
        {
          epoch: int("Target epoch.", { minimum: 0 }),
          mode: str("Target mode.", { enum: MODES }),
          enabled: bool("Target enabled."),
          host: bool("Host encryption at the end of the run (absent: unchanged)."),
        },
        ["epoch", "mode", "enabled"],
      ),
      phaseStartedAt: obj("When each phase of the current or last run began.", {
        prepare: time("prepare began."),
        switch: time("switch began."),
        retire: time("retire began."),
      }),
      lastCompletedAt: time("When the last run finished."),
      timeouts: {
        type: "array",
        description: "Nodes that did not acknowledge in time.",
        maxItems: 1024,
        items: obj(
          "A node that timed out.",
          {
            node: str("Node name."),
            epoch: int("Epoch.", { minimum: 0 }),
            phase: str("Phase.", { enum: PHASES }),
            at: time("When."),
          },
          ["node", "epoch", "phase", "at"],
        ),
      },
      lagging: {
        type: "array",
        description: "Nodes still using an older epoch, kept for them for a bounded time.",
        maxItems: 1024,
        items: obj(
          "A node that missed a rotation.",
          {
            node: str("Node name."),
            epoch: int("The epoch it still uses.", { minimum: 0 }),
            since: time("When the run it missed started."),
            until: time("When the others stop keeping its epoch."),
            switchAt: time("When its pairs moved to the current epoch."),
          },
          ["node", "epoch", "since", "until"],
        ),
      },
    }),
    status: obj("Human-readable state, written by the controller.", {
      conditions: {
        type: "array",
        description: "Ready and Progressing conditions.",
        items: condition,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
      },
      observedGeneration: int("The generation the status describes.", { minimum: 0 }),
    }),
  },
);

/**
 * VerifyRun: one `verify --via-agents` run (src/model/verify-run.ts): the run in `.spec`, written
 * once by the CLI; each node's report in `.status.reports.<node>`, written by that node's agent
 * through the status subresource. The API server checks the outline; the model validates the rest.
 */
const verifyRunSchema: JSONSchemaProps = obj(
  "A verify run carried out by the agents: marked probes between every pair of nodes' probe endpoints, captured on each node's underlay, with a negative control.",
  {
    apiVersion: str("APIVersion of this object."),
    kind: str("Kind of this object."),
    metadata: { type: "object" },
    spec: {
      type: "object",
      description: "The run: nonce, start, duration, the nodes and the checks (src/model/verify-run.ts).",
      "x-kubernetes-preserve-unknown-fields": true,
    },
    status: obj("The nodes' reports.", {
      reports: {
        type: "object",
        description: "Each node's report, under its name.",
        additionalProperties: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
      },
    }),
  },
);

/**
 * PodcryptNode: one node's record (src/model/node.ts), named after its Kubernetes Node and written
 * only by that node's agent (the ValidatingAdmissionPolicy of src/cli/manifests/admission.ts).
 * Every model field but `name` and `status` in `.spec`, the agent's report in `.status`. No status
 * subresource: the agent writes its record in one request (keys, acknowledgements and heartbeat
 * together). A test checks the schema against the model.
 */
const podcryptNodeSchema: JSONSchemaProps = obj(
  "One node's podcrypt record: public keys, acknowledgements, underlay. Named after the Kubernetes Node; written by that node's agent only.",
  {
    apiVersion: str("APIVersion of this object."),
    kind: str("Kind of this object."),
    metadata: { type: "object" },
    spec: obj(
      "What the node's agent publishes. Peers believe pod CIDRs only inside the Node's spec.podCIDRs and addresses only from its status.addresses.",
      {
        underlay: obj("Underlay (host) addresses the data plane sends to.", {
          ipv4: str("IPv4 address.", { format: "ipv4" }),
          ipv6: str("IPv6 address.", { format: "ipv6" }),
        }),
        podCIDRs: { type: "array", description: "Pod CIDRs routed to this node.", items: str("A CIDR.") },
        capabilities: obj("What the node's kernel offers.", {
          wireguardKernel: bool("Kernel WireGuard."),
          xfrmKernel: bool("Kernel XFRM (IPsec)."),
        }),
        publicKeys: {
          type: "object",
          description: "Public keys (base64 X25519) by epoch. Private keys never leave the node.",
          additionalProperties: str("Base64 public key.", { pattern: "^[A-Za-z0-9+/]{43}=$" }),
        },
        saInstance: str(
          "IPsec: the node's current SA instance, bound into every ESP key and SPI of its pairs.",
          {
            pattern: "^[0-9a-f]{32}$",
          },
        ),
        acknowledgements: {
          type: "array",
          description: "Latest acknowledgements of protocol phases, newest last.",
          maxItems: 16,
          items: obj(
            "The node finished a phase of an epoch.",
            {
              epoch: int("Epoch.", { minimum: 0 }),
              phase: str("Phase.", { enum: PHASES }),
              at: time("When."),
            },
            ["epoch", "phase", "at"],
          ),
        },
        backend: str("The data plane in use.", {
          enum: ["wireguard-kernel", "wireguard-userspace", "xfrm", "esp-userspace", "none"],
        }),
        heartbeat: time(
          "Written by agents of earlier versions; liveness is the node's Lease podcrypt-node-<name>.",
        ),
      },
      ["underlay"],
    ),
    status: obj("What the agent reports about its node (src/model/node.ts nodeStatusSchema).", {
      sendingEpoch: int("Epoch whose keys the node sends with.", { minimum: 0 }),
      mtu: int("Tunnel MTU.", { minimum: 576, maximum: 65535 }),
      errors: {
        type: "array",
        description: "Problems of the last reconcile.",
        maxItems: 32,
        items: str("An error.", { maxLength: 1024 }),
      },
      selection: str("Hash of the installed selector set.", { pattern: "^[0-9a-f]{16}$" }),
      daemonRestarts: obj(
        "How often the agent replaced a dead userspace data-plane daemon, and when last.",
        { count: int("Restarts.", { minimum: 0 }), last: time("When the last one was replaced.") },
        ["count"],
      ),
      plaintextDrops: {
        type: "array",
        description:
          "Packets strict mode dropped since the agent started, per peer: out (would have left in plaintext), in (arrived in plaintext).",
        maxItems: 4096,
        items: obj(
          "One peer and direction.",
          {
            peer: str("The peer node (empty: an address no node owns).", { maxLength: 253 }),
            direction: str("out or in.", { enum: ["out", "in"] }),
            packets: int("Packets dropped.", { minimum: 0 }),
          },
          ["peer", "direction", "packets"],
        ),
      },
      tunnels: obj(
        "The node's tunnels to its live peers per underlay family: up, pending or failing.",
        {
          at: time("When the agent judged them."),
          families: {
            type: "array",
            description: "One entry per underlay address family.",
            maxItems: 2,
            items: obj(
              "The peers of one family by state.",
              {
                family: str("ipv4 or ipv6.", { enum: ["ipv4", "ipv6"] }),
                upCount: int(
                  "How many peers' tunnels are up (live peers named neither pending nor failing).",
                  {
                    minimum: 0,
                  },
                ),
                up: names("Peers whose tunnel is up, by name (written by agents of earlier versions)."),
                pending: names("Peers whose tunnel is not up yet."),
                failing: names("Peers that do not answer through the tunnel."),
              },
              ["family"],
            ),
          },
        },
        ["at", "families"],
      ),
      hostEncryption: obj(
        "Host encryption as the node's last pass installed it: applied or not, its host routes, the peers they tunnel to.",
        {
          applied: bool("The node routes host traffic through its tunnels."),
          routes: int("Host routes installed.", { minimum: 0 }),
          peers: names("Peers whose host address is routed into a tunnel."),
        },
        ["applied", "routes"],
      ),
      reconcileError: obj(
        "The reconcile failure going on (or the last one, with clearedAt): the error, its causes, when it began, how many passes failed so.",
        {
          message: str("The error.", { maxLength: 1024 }),
          code: str("Its stable code.", { maxLength: 64 }),
          command: str("The command that failed (secrets redacted).", { maxLength: 1024 }),
          exitCode: int("Its exit code."),
          signal: str("The signal that ended it.", { maxLength: 32 }),
          stderr: str("What it printed on stderr (secrets redacted).", { maxLength: 1024 }),
          causes: {
            type: "array",
            description:
              "Its causes, outermost first; a failed command with its command line, exit code and stderr.",
            maxItems: 8,
            items: obj(
              "A cause.",
              {
                message: str("The cause.", { maxLength: 1024 }),
                code: str("Its code.", { maxLength: 64 }),
                command: str("The command that failed (secrets redacted).", { maxLength: 1024 }),
                exitCode: int("Its exit code."),
                signal: str("The signal that ended it.", { maxLength: 32 }),
                stderr: str("What it printed on stderr (secrets redacted).", { maxLength: 1024 }),
              },
              ["message"],
            ),
          },
          since: time("When the failure began."),
          last: time("When it happened last."),
          count: int("How many passes failed so.", { minimum: 1 }),
          clearedAt: time("When a pass succeeded again."),
        },
        ["message", "since", "last", "count"],
      ),
      rotationWanted: obj(
        "The node asks for an early rotation.",
        { epoch: int("Epoch.", { minimum: 0 }), reason: str("Why.", { maxLength: 256 }), at: time("When.") },
        ["epoch", "reason", "at"],
      ),
      refusedClaims: {
        type: "array",
        description: "Peers' claims the agent refused in its last pass and does not apply.",
        maxItems: 256,
        items: obj(
          "One refused claim.",
          {
            node: str("The node whose record makes the claim.", { maxLength: 253 }),
            field: str("podCIDRs or underlay.", { enum: ["podCIDRs", "underlay"] }),
            value: str("The CIDR or address claimed.", { maxLength: 64 }),
            reason: str("Why it was refused.", {
              enum: [
                "outside-assigned-pod-cidrs",
                "address-not-assigned",
                "no-such-node",
                "overlaps-other-node",
              ],
            }),
            with: str("For an overlap: the other node.", { maxLength: 253 }),
          },
          ["node", "field", "value", "reason"],
        ),
      },
      workloadGate: str(
        "Workload gating: closed asks for the NoSchedule taint podcrypt.io/not-ready on this node's Node (tunnels not all up yet), open for none; the controller applies it.",
        { enum: ["closed", "open"] },
      ),
    }),
  },
  ["spec"],
);

const policyRoot = (
  kind: "EncryptionPolicy" | "IPsecPolicy",
  extraStatus: Record<string, JSONSchemaProps> = {},
) =>
  obj(
    kind === "IPsecPolicy"
      ? "StarlingX IPsec policy (starlingx.io/v1), accepted as is: protects traffic to the listed services."
      : "Selective encryption: traffic to the listed services is encrypted when ClusterEncryption.spec.encryption is selective.",
    {
      apiVersion: str("APIVersion of this object."),
      kind: str("Kind of this object."),
      metadata: { type: "object" },
      spec: policySpec(kind),
      status: policyStatus(extraStatus),
    },
    ["spec"],
  );

const policyColumns = [
  {
    name: "Accepted",
    type: "string",
    jsonPath: '.status.conditions[?(@.type=="Accepted")].status',
    description: "Whether the policy validated",
  },
  {
    name: "Programmed",
    type: "string",
    jsonPath: '.status.conditions[?(@.type=="Programmed")].status',
    description: "Whether every live node installed the policy",
  },
  {
    name: "Programmed-Nodes",
    type: "integer",
    jsonPath: ".status.programmedNodes",
    description: "Nodes that installed the policy",
  },
  {
    name: "Nodes",
    type: "integer",
    jsonPath: ".status.nodes",
    description: "Live nodes",
  },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
];

function crd(
  group: string,
  kind: string,
  plural: string,
  scope: "Cluster" | "Namespaced",
  schema: JSONSchemaProps,
  columns: Record<string, unknown>[],
  shortNames: string[],
  categories: string[],
  statusSubresource = true,
): Record<string, unknown> {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.${group}`, labels: { "app.kubernetes.io/part-of": "podcrypt" } },
    spec: {
      group,
      scope,
      names: { plural, singular: kind.toLowerCase(), kind, listKind: `${kind}List`, shortNames, categories },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: { openAPIV3Schema: schema },
          ...(statusSubresource ? { subresources: { status: {} } } : {}),
          additionalPrinterColumns: columns,
        },
      ],
    },
  };
}

/** The CRDs, ClusterEncryption first. */
export function customResourceDefinitions(): Record<string, unknown>[] {
  return [
    crd(
      PODCRYPT_GROUP,
      "ClusterEncryption",
      "clusterencryptions",
      "Cluster",
      clusterEncryptionSchema,
      [
        { name: "Enabled", type: "boolean", jsonPath: ".spec.enabled" },
        { name: "Mode", type: "string", jsonPath: ".spec.mode" },
        { name: "Encryption", type: "string", jsonPath: ".spec.encryption" },
        { name: "Phase", type: "string", jsonPath: ".spec.phase" },
        { name: "Epoch", type: "integer", jsonPath: ".spec.epoch" },
        { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
      ],
      ["ce"],
      ["podcrypt"],
    ),
    crd(
      PODCRYPT_GROUP,
      "EncryptionPolicy",
      "encryptionpolicies",
      "Namespaced",
      policyRoot("EncryptionPolicy"),
      policyColumns,
      ["encpol"],
      ["podcrypt"],
    ),
    crd(
      STARLINGX_GROUP,
      "IPsecPolicy",
      "ipsecpolicies",
      "Cluster",
      // upstream's status is {status: string}; kept, with podcrypt's conditions beside it.
      policyRoot("IPsecPolicy", { status: str("Upstream StarlingX summary field.") }),
      policyColumns,
      [],
      ["podcrypt"],
    ),
    crd(
      PODCRYPT_GROUP,
      "PodcryptNode",
      "podcryptnodes",
      "Cluster",
      podcryptNodeSchema,
      [
        { name: "Backend", type: "string", jsonPath: ".spec.backend" },
        { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
      ],
      ["pcn"],
      ["podcrypt"],
      false,
    ),
    crd(
      PODCRYPT_GROUP,
      "VerifyRun",
      "verifyruns",
      "Cluster",
      verifyRunSchema,
      [
        { name: "Seconds", type: "integer", jsonPath: ".spec.seconds" },
        { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
      ],
      [],
      ["podcrypt"],
    ),
  ];
}
