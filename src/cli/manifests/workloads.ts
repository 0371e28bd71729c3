/**
 * The Namespace, the ConfigMap, the controller Deployment and the agent DaemonSet.
 *
 * What the daemons honour (the contract these objects set):
 * - `podcrypt controller|agent --config /etc/podcrypt/config.yaml`, the file of {@link configFile}
 *   (src/cli/config.ts validates it; every field in it is used);
 * - env NODE_NAME (agent: its Node gives the underlay address and pod CIDRs), POD_NAME
 *   (controller identity), POD_NAMESPACE;
 * - HTTP `/healthz` (liveness), `/readyz` (readiness), `/metrics` and `/statusz` on HEALTH_PORTS,
 *   on the pod's IP (`--health-address $(POD_IP):PORT`; the agent's pod IP is its node's): the
 *   kubelet probes that address, and the daemons' own default is loopback;
 * - agent state under /var/lib/podcrypt (keys, mode 0600), WireGuard UAPI sockets under
 *   /var/run/wireguard, the userspace data planes' status and control sockets under /var/run/podcrypt.
 */
import { stringify } from "yaml";
import type { DaemonConfig } from "../config.js";
import { COMPONENT_NAMES, CONFIG_MAP_NAME, HEALTH_PORTS, type ManifestOptions } from "./options.js";

const partOf = { "app.kubernetes.io/part-of": "podcrypt" };
const labelsOf = (name: string) => ({ "app.kubernetes.io/name": name, ...partOf });

/** Where the agent keeps its private keys: a host path, so they outlive the pod. */
const STATE_DIR = "/var/lib/podcrypt";

/** The configuration file both daemons read (mounted from the ConfigMap), as src/cli/config.ts reads it. */
export function configFile(o: ManifestOptions): DaemonConfig {
  return {
    datastore: "kubernetes",
    namespace: o.namespace,
    // Seeds the ClusterEncryption "default" object when the controller first finds none.
    cluster: {
      enabled: true,
      mode: o.mode,
      encryption: "all",
      strict: true,
      rotationInterval: "1h",
      hostEncryption: o.hostEncryption,
    },
    agent: {
      dataplane: "auto",
      stateDir: STATE_DIR,
      heartbeatSeconds: 5,
      // Workload gating: no pod is scheduled onto a node before its tunnels are up.
      notReadyTaint: true,
    },
    controller: {
      leaderElection: { name: COMPONENT_NAMES.controller, ttlSeconds: 15 },
      // How long a live node may take to acknowledge a phase before the cluster moves on without it.
      phaseTimeoutSeconds: 30,
    },
    log: { level: "info" },
  };
}

const fieldEnv = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });

function probes(port: number) {
  return {
    livenessProbe: {
      httpGet: { path: "/healthz", port },
      initialDelaySeconds: 10,
      periodSeconds: 10,
      timeoutSeconds: 2,
      failureThreshold: 6,
    },
    readinessProbe: {
      httpGet: { path: "/readyz", port },
      periodSeconds: 5,
      timeoutSeconds: 2,
      failureThreshold: 3,
    },
  };
}

const CONFIG_DIR = "/etc/podcrypt";
const configVolume = { name: "config", configMap: { name: CONFIG_MAP_NAME } };
const configMount = { name: "config", mountPath: CONFIG_DIR, readOnly: true };

/** The daemon's arguments: the config file, and health on the pod's IP (the kubelet probes it there). */
const daemonArgs = (command: string, port: number) => [
  command,
  "--config",
  `${CONFIG_DIR}/config.yaml`,
  "--health-address",
  `$(POD_IP):${port}`,
];

/** The Namespace, ConfigMap, controller Deployment and agent DaemonSet. */
export function workloadObjects(o: ManifestOptions): Record<string, unknown>[] {
  const controller = COMPONENT_NAMES.controller;
  const agent = COMPONENT_NAMES.agent;
  return [
    {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name: o.namespace,
        labels: { ...partOf, "pod-security.kubernetes.io/enforce": "privileged" },
      },
    },
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: CONFIG_MAP_NAME, namespace: o.namespace, labels: partOf },
      data: { "config.yaml": stringify(configFile(o)) },
    },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: controller, namespace: o.namespace, labels: labelsOf(controller) },
      spec: {
        replicas: o.controllerReplicas,
        selector: { matchLabels: { "app.kubernetes.io/name": controller } },
        strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } },
        template: {
          metadata: { labels: labelsOf(controller) },
          spec: {
            serviceAccountName: controller,
            priorityClassName: "system-cluster-critical",
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65532,
              runAsGroup: 65532,
              seccompProfile: { type: "RuntimeDefault" },
            },
            affinity: {
              podAntiAffinity: {
                preferredDuringSchedulingIgnoredDuringExecution: [
                  {
                    weight: 100,
                    podAffinityTerm: {
                      topologyKey: "kubernetes.io/hostname",
                      labelSelector: { matchLabels: { "app.kubernetes.io/name": controller } },
                    },
                  },
                ],
              },
            },
            tolerations: [
              { key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" },
              { key: "CriticalAddonsOnly", operator: "Exists" },
            ],
            containers: [
              {
                name: "controller",
                image: o.image,
                args: daemonArgs("controller", HEALTH_PORTS.controller),
                env: [
                  fieldEnv("POD_NAME", "metadata.name"),
                  fieldEnv("POD_NAMESPACE", "metadata.namespace"),
                  fieldEnv("POD_IP", "status.podIP"),
                ],
                ports: [{ name: "health", containerPort: HEALTH_PORTS.controller, protocol: "TCP" }],
                ...probes(HEALTH_PORTS.controller),
                resources: { requests: { cpu: "20m", memory: "64Mi" }, limits: { memory: "256Mi" } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ["ALL"] },
                },
                volumeMounts: [configMount],
              },
            ],
            volumes: [configVolume],
          },
        },
      },
    },
    {
      apiVersion: "apps/v1",
      kind: "DaemonSet",
      metadata: { name: agent, namespace: o.namespace, labels: labelsOf(agent) },
      spec: {
        selector: { matchLabels: { "app.kubernetes.io/name": agent } },
        updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } },
        template: {
          metadata: { labels: labelsOf(agent) },
          spec: {
            serviceAccountName: agent,
            hostNetwork: true,
            dnsPolicy: "ClusterFirstWithHostNet",
            priorityClassName: "system-node-critical",
            terminationGracePeriodSeconds: 30,
            // Every node, whatever its taints: a node without an agent would send plaintext.
            tolerations: [{ operator: "Exists" }],
            containers: [
              {
                name: "agent",
                image: o.image,
                args: daemonArgs("agent", HEALTH_PORTS.agent),
                env: [
                  fieldEnv("NODE_NAME", "spec.nodeName"),
                  fieldEnv("POD_NAME", "metadata.name"),
                  fieldEnv("POD_NAMESPACE", "metadata.namespace"),
                  fieldEnv("POD_IP", "status.podIP"),
                ],
                ports: [
                  {
                    name: "health",
                    containerPort: HEALTH_PORTS.agent,
                    hostPort: HEALTH_PORTS.agent,
                    protocol: "TCP",
                  },
                ],
                ...probes(HEALTH_PORTS.agent),
                resources: { requests: { cpu: "50m", memory: "96Mi" }, limits: { memory: "512Mi" } },
                securityContext: {
                  runAsUser: 0,
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  seccompProfile: { type: "RuntimeDefault" },
                  capabilities: {
                    drop: ["ALL"],
                    // NET_ADMIN: links, routes, XFRM, nftables, WireGuard; NET_RAW: raw sockets of
                    // `verify` captures; SYS_MODULE: `--dataplane auto` loads wireguard/esp4 when present.
                    add: ["NET_ADMIN", "NET_RAW", "SYS_MODULE"],
                  },
                },
                volumeMounts: [
                  configMount,
                  { name: "state", mountPath: STATE_DIR },
                  { name: "wireguard-run", mountPath: "/var/run/wireguard" },
                  { name: "podcrypt-run", mountPath: "/var/run/podcrypt" },
                  { name: "tun", mountPath: "/dev/net/tun" },
                  { name: "modules", mountPath: "/lib/modules", readOnly: true },
                ],
              },
            ],
            volumes: [
              configVolume,
              { name: "state", hostPath: { path: STATE_DIR, type: "DirectoryOrCreate" } },
              { name: "wireguard-run", hostPath: { path: "/var/run/wireguard", type: "DirectoryOrCreate" } },
              { name: "podcrypt-run", hostPath: { path: "/var/run/podcrypt", type: "DirectoryOrCreate" } },
              { name: "tun", hostPath: { path: "/dev/net/tun", type: "CharDevice" } },
              { name: "modules", hostPath: { path: "/lib/modules", type: "Directory" } },
            ],
          },
        },
      },
    },
  ];
}
