import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, Option } from "commander";
import { isPodcryptError, PodcryptError, ValidationError } from "../errors/index.js";
import { clusterDown, clusterUp, startSupervisor } from "../localcluster/cluster.js";
import { alive } from "../localcluster/processes.js";
import { runSupervisor } from "../localcluster/supervisor.js";
import { createLogger } from "../log/logger.js";
import { parseClusterConfigText, resolveClusterConfig, type ClusterFlags } from "../localcluster/config.js";
import { addNode, removeNode } from "../localcluster/nodes.js";
import { upgradeNode } from "../localcluster/upgrade.js";
import { clusterInfo } from "../localcluster/plan.js";
import {
  clusterHome,
  readClusterState,
  requireClusterState,
  writeClusterState,
} from "../localcluster/state.js";
import { openDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";

/** How the cluster commands report their progress: one line each on stderr (stdout keeps the result). */
function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** `cluster up`'s flags. */
type UpFlags = ClusterFlags & {
  config?: string;
  timeout: number;
  disabled: boolean;
  hostEncryption: boolean;
  strictHost: boolean;
  prometheus: boolean;
};

export function registerCluster(program: Command): void {
  const cluster = program
    .command("cluster")
    .description("the local cluster: nodes and pods as network namespaces on this machine");

  cluster
    .command("up")
    .description("build the local cluster, start the controller and agents, and wait until it is encrypted")
    .option("--nodes <n>", "number of nodes (default 3)", parseIntFlag("--nodes", 1, 64))
    .option("--pods-per-node <m>", "plain pods per node (default 2)", parseIntFlag("--pods-per-node", 0, 50))
    .addOption(new Option("--mode <mode>", "encryption mode").choices(["wireguard", "ipsec"]))
    .addOption(
      new Option("--dataplane <kind>", "data plane for every node").choices(["auto", "kernel", "userspace"]),
    )
    .option(
      "--datastore <url>",
      "local (default), etcd://HOST:PORT or kubernetes:KUBECONFIG (a datastore on 127.0.0.1 is relayed into the nodes)",
    )
    .addOption(
      new Option(
        "--ip-family <family>",
        "pod address families: ipv4 (default), ipv6 (IPv6 pods over an IPv6 underlay) or dual (both, over an IPv4 underlay)",
      ).choices(["ipv4", "ipv6", "dual"]),
    )
    .addOption(
      new Option(
        "--underlay-family <family>",
        "the underlay's family (default ipv6 with --ip-family ipv6, else ipv4): `--ip-family dual --underlay-family ipv6` carries dual-stack pods over an IPv6-only underlay",
      ).choices(["ipv4", "ipv6"]),
    )
    .option("--config <file>", "cluster YAML (docs/design.md#the-local-cluster)")
    .option("--disabled", "start with encryption switched off (plaintext)", false)
    .option(
      "--host-encryption",
      "encrypt node-to-node traffic too: between the nodes' addresses, and a node reaching another node's pods (config hostEncryption; docs/design.md#host-encryption)",
      false,
    )
    .option(
      "--strict-host",
      "with --host-encryption: drop plaintext host traffic between the nodes too, except what host encryption leaves outside the tunnels (config strictHost; docs/design.md#host-encryption)",
      false,
    )
    .option(
      "--prometheus",
      "also run a Prometheus (Debian package prometheus) scraping every agent and controller, with deploy/monitoring's alert rules, at 127.0.0.1:9090 inside namespace pc-prom",
      false,
    )
    .option(
      "--timeout <seconds>",
      "how long to wait for the cluster to settle",
      parseIntFlag("--timeout", 1, 3600),
      90,
    )
    .action(async (o: UpFlags) => {
      let doc: unknown = {};
      if (o.config !== undefined) {
        let text: string;
        try {
          text = readFileSync(o.config, "utf8");
        } catch (cause) {
          throw new ValidationError("--config", `cannot read ${o.config}: ${(cause as Error).message}`, {
            cause,
          });
        }
        doc = parseClusterConfigText(text, o.config);
      }
      const flags: ClusterFlags = {
        ...o,
        ...(o.disabled ? { disabled: true } : {}),
        ...(o.hostEncryption ? { hostEncryption: true } : {}),
        ...(o.strictHost ? { strictHost: true } : {}),
      };
      const config = resolveClusterConfig(doc, flags);
      const state = await clusterUp(config, openDatastore, progress, o.timeout * 1000, {
        prometheus: o.prometheus,
      }).catch((e: unknown) => {
        // A cluster that runs already is not touched: say so plainly (the error does).
        if (isPodcryptError(e, "ECLUSTEREXISTS")) throw e;
        // What was built stays for a look (logs, status); say how to remove it.
        if (e instanceof Error && readClusterState(clusterHome()) !== undefined)
          e.message += `\n  the cluster is left as it is for a look (logs in ${join(clusterHome(), "logs")}); remove it with \`podcrypt cluster down\``;
        throw e;
      });
      const p = state.plan;
      process.stdout.write(
        `local cluster up: ${p.nodes.length} nodes, ${p.pods.length} pods, mode ${config.mode}, ` +
          `encryption ${config.enabled ? "on" : "off"}${config.hostEncryption === true ? `, host encryption on${config.strictHost === true ? " (strict)" : ""}` : ""}, pods ${config.ipFamily} over an ${config.underlayFamily} underlay, datastore ${config.datastore}\n` +
          `next: podcrypt verify · podcrypt status · podcrypt rotate --wait · podcrypt cluster down\n`,
      );
    });

  cluster
    .command("down")
    .description("stop every process and remove every namespace and file of the local cluster")
    .action(async () => {
      const r = await clusterDown();
      process.stdout.write(
        r.hadState || r.namespaces > 0
          ? `local cluster down: ${r.processes} processes stopped, ${r.namespaces} namespaces removed\n`
          : "no local cluster was running; nothing to remove\n",
      );
    });

  cluster
    .command("supervise")
    .description(
      "start the local cluster's supervisor again when it died (`cluster up` starts it): it adopts the running processes and restarts those that die",
    )
    .option("--foreground", "run the supervisor in this process (as `cluster up` starts it)", false)
    .action(async (o: { foreground: boolean }) => {
      const home = clusterHome();
      const state = requireClusterState(home);
      const running = state.processes.find((p) => p.role === "supervisor" && alive(p.pid));
      if (o.foreground) {
        if (running !== undefined && running.pid !== process.pid)
          throw new PodcryptError(
            "ESUPERVISOR",
            `the cluster's supervisor already runs (pid ${running.pid})`,
          );
        const stop = new AbortController();
        for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => stop.abort());
        await runSupervisor(
          home,
          () => readClusterState(home, true),
          createLogger("supervisor"),
          stop.signal,
        );
        return;
      }
      if (running !== undefined) {
        process.stdout.write(`the cluster's supervisor runs (pid ${running.pid})\n`);
        return;
      }
      const raw = readClusterState(home, true)!;
      raw.processes = [...raw.processes.filter((p) => p.role !== "supervisor"), startSupervisor(home)];
      writeClusterState(raw, home);
      process.stdout.write(
        `supervisor started (pid ${raw.processes.at(-1)!.pid}); log in ${join(home, "logs", "supervisor.log")}\n`,
      );
    });

  cluster
    .command("add-node")
    .description(
      "add a node (with its pods) to the running local cluster and wait until every node has a session with it",
    )
    .option("--name <name>", "node name (default: the next node-N)")
    .option("--pods <m>", "plain pods on it", parseIntFlag("--pods", 0, 50), 2)
    .addOption(
      new Option("--dataplane <kind>", "its data plane")
        .choices(["auto", "kernel", "userspace"])
        .default("auto"),
    )
    .option("--timeout <seconds>", "how long to wait", parseIntFlag("--timeout", 1, 3600), 90)
    .action(
      async (o: {
        name?: string;
        pods: number;
        dataplane: "auto" | "kernel" | "userspace";
        timeout: number;
      }) => {
        const r = await addNode(
          openDatastore,
          progress,
          { ...(o.name === undefined ? {} : { name: o.name }), pods: o.pods, dataplane: o.dataplane },
          o.timeout * 1000,
        );
        process.stdout.write(
          `node ${r.node.name} added (underlay ${r.node.underlayIP}, pods ${r.node.podCIDRs.join(" ")}); every node reached it in ${(r.convergedMs / 1000).toFixed(1)} s\n`,
        );
      },
    );

  cluster
    .command("remove-node")
    .description("remove a node from the running local cluster and wait until no node keeps it as a peer")
    .argument("<name>", "the node to remove")
    .option("--timeout <seconds>", "how long to wait", parseIntFlag("--timeout", 1, 3600), 90)
    .action(async (name: string, o: { timeout: number }) => {
      const r = await removeNode(openDatastore, progress, name, o.timeout * 1000);
      process.stdout.write(
        `node ${name} removed; every node dropped it in ${(r.convergedMs / 1000).toFixed(1)} s\n`,
      );
    });

  cluster
    .command("upgrade-node")
    .description(
      "upgrade a node of the running local cluster without losing a packet, one process after another as a rolling " +
        "DaemonSet update: its agent is stopped (SIGTERM) and the supervisor starts the new one, which adopts the " +
        "running data-plane daemons; then the new agent hands each userspace daemon over to a successor (SIGUSR2: " +
        "device, socket and sessions or SAs move, no handshake, no new SA instance, no sequence number reused)",
    )
    .argument("<name>", "the node to upgrade")
    .option("--timeout <seconds>", "how long each step may take", parseIntFlag("--timeout", 1, 3600), 90)
    .action(async (name: string, o: { timeout: number }) => {
      const r = await upgradeNode(openDatastore, progress, name, o.timeout * 1000);
      process.stdout.write(
        `node ${name} upgraded: new agent reporting after ${(r.agentMs / 1000).toFixed(1)} s, ` +
          `${r.daemons.length} data-plane daemon(s) handed over in ${(r.daemonsMs / 1000).toFixed(1)} s\n`,
      );
    });

  cluster
    .command("info")
    .description("describe the local cluster: fabric, nodes, pods, services")
    .option("--json", "machine-readable (docs/design.md#the-local-cluster)", false)
    .action((o: { json: boolean }) => {
      const state = requireClusterState();
      const info = clusterInfo(state.plan) as ReturnType<typeof clusterInfo> & Record<string, unknown>;
      if (o.json) {
        process.stdout.write(JSON.stringify(info, null, 2) + "\n");
        return;
      }
      const p = state.plan;
      const lines = [
        `fabric: netns ${p.fabric.netns}, bridge ${p.fabric.bridge} · mode ${p.config.mode} · encryption ${p.config.encryption} · datastore ${state.datastore}`,
        "nodes:",
        ...p.nodes.map(
          (n) =>
            `  ${n.name.padEnd(12)} netns ${n.netns.padEnd(16)} underlay ${n.underlayIP.padEnd(14)} pods ${n.podCIDRs.join(" ")}`,
        ),
        "pods:",
        ...p.pods.map(
          (x) =>
            `  ${`${x.namespace}/${x.name}`.padEnd(28)} on ${x.node.padEnd(10)} ${x.ips.join(" ").padEnd(14)} ${Object.entries(
              x.labels,
            )
              .map(([k, v]) => `${k}=${v}`)
              .join(",")}`,
        ),
        ...(p.services.length > 0
          ? ["services:", ...p.services.map((s) => `  ${s.namespace}/${s.name} ${s.ports.join(",")}`)]
          : []),
      ];
      process.stdout.write(lines.join("\n") + "\n");
    });
}
