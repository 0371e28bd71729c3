import { resolve } from "node:path";
import type { Command } from "commander";
import { PodcryptError } from "../errors/index.js";
import { clusterHome, readClusterState } from "../localcluster/state.js";
import { clusterDatastoreOption, openDatastore } from "./datastore.js";
import { parseIntFlag } from "./flags.js";

/** Registers `podcrypt debug bundle` under the `debug` command (src/debug/bundle.ts). */
export function registerDebugBundle(debug: Command): void {
  debug
    .command("bundle")
    .description(
      "write what a bug report needs to a tar.gz (version, config and records without secrets, status, logs, each node's data plane with keys hidden, the phase timeline): from the local cluster, or a real cluster's datastore",
    )
    .requiredOption("-o, --output <file>", "the archive to write (FILE.tar.gz, mode 0600)")
    .option(
      "--node <name>",
      "only this node; on a real cluster (--datastore) also the node this runs on, whose data plane is read here",
    )
    .addOption(clusterDatastoreOption())
    .option("--config <file>", "a daemon config file to include (secrets removed)")
    .option("--log <file...>", "log files to include (a real cluster's agent and daemons)")
    .option("--lines <n>", "lines of each log", parseIntFlag("--lines", 1, 1_000_000), 2000)
    .action(
      async (o: {
        output: string;
        node?: string;
        datastore?: string;
        config?: string;
        log?: string[];
        lines: number;
      }) => {
        const home = clusterHome();
        const state = o.datastore === undefined ? readClusterState(home) : undefined;
        if (o.datastore === undefined && state === undefined)
          throw new PodcryptError(
            "ENOCLUSTER",
            "no local cluster is running: bundle a real cluster with --datastore URL (and --node NAME on a node)",
          );
        if (state !== undefined && o.node !== undefined && !state.plan.nodes.some((n) => n.name === o.node))
          throw new PodcryptError("ENONODE", `the local cluster has no node ${o.node}`);
        // Loaded on use: the collectors load the data-plane clients, which other `debug` commands go without.
        const { writeBundle } = await import("../debug/bundle.js");
        const { collectStatus } = await import("../localcluster/status.js");
        const store = await openDatastore(state?.datastore ?? o.datastore!);
        try {
          const out = resolve(o.output);
          const r = await writeBundle(
            {
              store,
              ...(state === undefined
                ? {}
                : { local: { state, home }, status: () => collectStatus(state, openDatastore) }),
              ...(o.node === undefined ? {} : { node: o.node }),
              ...(state === undefined && o.node !== undefined ? { hostNode: o.node } : {}),
              ...(o.config === undefined ? {} : { configFile: o.config }),
              ...(o.log === undefined ? {} : { logFiles: o.log }),
              logLines: o.lines,
            },
            out,
          );
          process.stdout.write(
            `wrote ${out}: ${r.files.length} files` +
              (r.problems.length === 0
                ? ""
                : `; not collected (see MANIFEST.txt): ${r.problems.join("; ")}`) +
              "\n",
          );
        } finally {
          await store.close();
        }
      },
    );
}
