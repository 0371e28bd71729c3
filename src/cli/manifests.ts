import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Command, Option } from "commander";
import { PodcryptError } from "../errors/index.js";
import { projectRoot } from "../paths.js";
import { defaultManifestOptions, type ManifestOptions } from "./manifests/options.js";
import { kustomizeBase, manifestObjects, toYamlStream } from "./manifests/render.js";
import { parseIntFlag } from "./flags.js";

/** The package version, which tags the default image. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(projectRoot(), "package.json"), "utf8")) as { version: string })
    .version;
}

/** Files of `dir` that differ from the generated base (missing ones included). */
export function staleKustomizeFiles(dir: string, o: ManifestOptions): string[] {
  const stale: string[] = [];
  for (const [file, content] of kustomizeBase(o)) {
    let on: string | undefined;
    try {
      on = readFileSync(join(dir, file), "utf8");
    } catch {
      on = undefined;
    }
    if (on !== content) stale.push(file);
  }
  return stale;
}

/** Writes the kustomize base into `dir` (each file atomically). */
export function writeKustomizeBase(dir: string, o: ManifestOptions): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const [file, content] of kustomizeBase(o)) {
    const path = join(dir, file);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(`${path}.tmp`, content);
    renameSync(`${path}.tmp`, path);
    written.push(file);
  }
  return written;
}

/** `podcrypt manifests`: the Kubernetes YAML (docs/design.md#cli), or the deploy/ kustomize base. */
export function registerManifests(program: Command): void {
  program
    .command("manifests")
    .description(
      "print the Kubernetes manifests: CRDs (ClusterEncryption, EncryptionPolicy, StarlingX IPsecPolicy, with " +
        "status subresources), least-privilege RBAC per component, the controller Deployment, the agent DaemonSet " +
        "and the podcrypt-config ConfigMap. Both daemons run as `podcrypt controller|agent --config " +
        "/etc/podcrypt/config.yaml` (see their --help): agents need only $NODE_NAME, their Node gives the underlay " +
        "address and pod CIDRs; /healthz, /readyz and /metrics on ports 9808 (controller) and 9809 (agent)",
    )
    .addOption(
      new Option(
        "--mode <mode>",
        "encryption mode the controller seeds ClusterEncryption with (config cluster.mode)",
      )
        .choices(["wireguard", "ipsec"])
        .default("wireguard"),
    )
    .option("--namespace <ns>", "namespace of the controller and agents", "podcrypt-system")
    .option("--image <ref>", "container image (default podcrypt/podcrypt:<version>)")
    .option(
      "--controller-replicas <n>",
      "controller replicas (leader-elected)",
      parseIntFlag("--controller-replicas", 1, 10),
      2,
    )
    .option(
      "--host-encryption",
      "seed ClusterEncryption with node-to-node encryption on (config cluster.hostEncryption; `podcrypt enable --host|--no-host` switches it later)",
      false,
    )
    .option("--json", "print a JSON List instead of YAML", false)
    .option("--kustomize-dir <dir>", "write the kustomize base (kustomization.yaml + files) into DIR instead")
    .option("--check", "with --kustomize-dir: fail if DIR is not what would be written", false)
    .action(
      (o: {
        mode: "wireguard" | "ipsec";
        namespace: string;
        image?: string;
        controllerReplicas: number;
        hostEncryption: boolean;
        json: boolean;
        kustomizeDir?: string;
        check: boolean;
      }) => {
        const defaults = defaultManifestOptions(packageVersion());
        const opts: ManifestOptions = {
          mode: o.mode,
          namespace: o.namespace,
          image: o.image ?? defaults.image,
          controllerReplicas: o.controllerReplicas,
          hostEncryption: o.hostEncryption,
        };
        if (o.check && o.kustomizeDir === undefined)
          throw new PodcryptError("EUSAGE", "--check needs --kustomize-dir DIR");
        if (o.kustomizeDir !== undefined) {
          if (o.check) {
            const stale = staleKustomizeFiles(o.kustomizeDir, opts);
            if (stale.length > 0)
              throw new PodcryptError(
                "ESTALE",
                `${o.kustomizeDir} is out of date (${stale.join(", ")}): run npm run manifests`,
                { context: { stale } },
              );
            process.stdout.write(`${o.kustomizeDir} is up to date\n`);
            return;
          }
          for (const f of writeKustomizeBase(o.kustomizeDir, opts))
            process.stdout.write(`wrote ${join(o.kustomizeDir, f)}\n`);
          return;
        }
        const objects = manifestObjects(opts);
        process.stdout.write(
          o.json
            ? JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }, null, 2) + "\n"
            : toYamlStream(objects),
        );
      },
    );
}
