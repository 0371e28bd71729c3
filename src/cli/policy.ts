import { readFileSync } from "node:fs";
import { Command } from "commander";
import { stringify } from "yaml";
import { PodcryptError } from "../errors/index.js";
import { policyCondition, type PolicyStatus } from "../model/index.js";
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

/**
 * The STATUS column of `policy list`: what the controller last reported. `-` until it has;
 * `Invalid` when the stored object does not validate; `Programmed N/M` once every live node
 * installed the policies' selectors, else the Programmed reason (`Pending N/M`, `NotSelective` ...).
 */
export function statusSummary(status: PolicyStatus | undefined): string {
  if (status === undefined) return "-";
  if (policyCondition(status, "Accepted")?.status === "False") return "Invalid";
  const p = policyCondition(status, "Programmed");
  if (p === undefined) return "Accepted";
  const counts = `${status.programmedNodes}/${status.nodes}`;
  if (p.status === "True") return `Programmed ${counts}`;
  return p.reason === "Pending" ? `Pending ${counts}` : p.reason;
}

/** `podcrypt policy apply -f FILE [--dry-run] | delete NAME | list [--json]` (docs/design.md#selective-encryption, #cli). */
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
      "print {policies: [{key, kind, name, namespace, rules: [{name, service, namespace, ports}], status}], invalid: [{key, error, status}]}; status is the controller's report ({conditions, programmedNodes, nodes, selectedEndpoints}) or null",
      false,
    )
    .addOption(clusterDatastoreOption())
    .action(async (o: { json: boolean; datastore?: string }) => {
      const { policies, invalid } = await withClusterDatastore(o.datastore, (s) => listPolicies(s));
      const rows = policies.map(({ key, policy: p, status }) => ({
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
        status: status ?? null,
      }));
      if (o.json) {
        const bad = invalid.map((i) => ({ ...i, status: i.status ?? null }));
        process.stdout.write(JSON.stringify({ policies: rows, invalid: bad }) + "\n");
        return;
      }
      const lines = ["POLICY\tRULE\tSERVICE\tPORTS\tSTATUS"];
      for (const { policy: p, status } of policies)
        for (const r of p.rules)
          lines.push(
            `${policyKey(p)}\t${r.name}\t${r.namespace}/${r.service}\t${formatPortList(r.ports)}\t${statusSummary(status)}`,
          );
      for (const i of invalid) lines.push(`${i.key}\t(invalid: ${i.error})\t\t\t${statusSummary(i.status)}`);
      process.stdout.write(lines.join("\n") + "\n");
    });
}
