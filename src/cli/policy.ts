import { readFileSync } from "node:fs";
import { Command } from "commander";
import { stringify } from "yaml";
import { PodcryptError } from "../errors/index.js";
import { formatPortList, parsePolicyText, policyKey, toManifest } from "../policy/index.js";
import { applyPolicies, deletePolicy, listPolicies } from "../policy/store.js";
import { clusterDatastoreOption, withClusterDatastore } from "./datastore.js";

function readInput(file: string): string {
  try {
    return readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (e) {
    throw new PodcryptError("EREAD", `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/** `podcrypt policy apply -f FILE [--dry-run] | delete NAME | list [--json]` (DESIGN.md sections 5, 9). */
export function registerPolicy(program: Command): void {
  const policy = program
    .command("policy")
    .description("selective encryption: EncryptionPolicy and StarlingX IPsecPolicy");

  policy
    .command("apply")
    .description(
      "validate and store the policies of a YAML/JSON file (multi-document); nothing is stored if any is invalid",
    )
    .requiredOption("-f, --filename <file>", "policy file, - for stdin")
    .option("--dry-run", "validate and print the normalized policies; store nothing", false)
    .option("--json", "print the result as JSON", false)
    .addOption(clusterDatastoreOption())
    .action(async (o: { filename: string; dryRun: boolean; json: boolean; datastore?: string }) => {
      const r = parsePolicyText(readInput(o.filename), o.filename);
      const first = r.errors[0];
      if (first !== undefined) {
        // Every error on its own line; main() prints the first as the closing line.
        for (const e of r.errors.slice(1)) process.stderr.write(`podcrypt: ${e.message}\n`);
        throw first;
      }
      if (o.dryRun) {
        const manifests = r.policies.map((p) => toManifest(p.policy));
        process.stdout.write(
          o.json
            ? JSON.stringify(manifests, null, 2) + "\n"
            : manifests.map((m) => stringify(m)).join("---\n"),
        );
        return;
      }
      const results = await withClusterDatastore(o.datastore, (s) => applyPolicies(s, r.policies));
      process.stdout.write(
        o.json
          ? JSON.stringify(results) + "\n"
          : results.map((x) => `policy ${x.key} ${x.action}\n`).join(""),
      );
    });

  policy
    .command("delete")
    .description("delete a policy: NAME, or NAMESPACE/NAME when the name is in several namespaces")
    .argument("<name>")
    .addOption(clusterDatastoreOption())
    .action(async (name: string, o: { datastore?: string }) => {
      const key = await withClusterDatastore(o.datastore, (s) => deletePolicy(s, name));
      process.stdout.write(`policy ${key} deleted\n`);
    });

  policy
    .command("list")
    .description("list the stored policies")
    .option(
      "--json",
      "print [{key, kind, name, namespace, rules: [{name, service, namespace, ports}]}]",
      false,
    )
    .addOption(clusterDatastoreOption())
    .action(async (o: { json: boolean; datastore?: string }) => {
      const { policies, invalid } = await withClusterDatastore(o.datastore, (s) => listPolicies(s));
      const rows = policies.map(({ key, policy: p }) => ({
        key,
        kind: p.kind,
        name: p.name,
        namespace: p.namespace ?? null,
        rules: p.rules.map((r) => ({
          name: r.name,
          service: r.service,
          namespace: r.namespace,
          ports: formatPortList(r.ports),
        })),
      }));
      if (o.json) {
        process.stdout.write(JSON.stringify({ policies: rows, invalid }) + "\n");
        return;
      }
      const lines = ["POLICY\tRULE\tSERVICE\tPORTS"];
      for (const { policy: p } of policies)
        for (const r of p.rules)
          lines.push(`${policyKey(p)}\t${r.name}\t${r.namespace}/${r.service}\t${formatPortList(r.ports)}`);
      for (const i of invalid) lines.push(`${i.key}\t(invalid: ${i.error})`);
      process.stdout.write(lines.join("\n") + "\n");
    });
}
