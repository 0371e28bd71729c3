import { Command } from "commander";
import { etcdConnection, isEtcdUrl, parseEtcdUrl } from "../datastore/etcd/url.js";
import { PodcryptError, ValidationError } from "../errors/index.js";

interface InitFlags {
  datastore: string;
  node: string[];
  out: string;
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, ...v.split(",").filter((s) => s !== "")];
}

/**
 * `podcrypt datastore init-etcd-auth`: the etcd users and roles that let etcd itself keep every
 * agent to its own Node record (src/datastore/etcd/auth.ts), and turns etcd's authentication on.
 */
export function registerDatastore(program: Command): void {
  const ds = program.command("datastore").description("set up a cluster's datastore");
  ds.command("init-etcd-auth")
    .description(
      "create etcd's users and roles for podcrypt: podcrypt-controller, and podcrypt-node-NAME per node that may write only its own node's record; new users' passwords go to OUT/USER.password (0600); turns etcd's authentication on when it is off (creating root with the URL's password-file)",
    )
    .requiredOption(
      "--datastore <url>",
      "the etcd as root: etcds://HOST:PORT?ca=FILE&cert=FILE&key=FILE&user=root&password-file=FILE",
    )
    .option("--node <names>", "node names, comma-separated or repeated", collect, [])
    .requiredOption("--out <dir>", "directory for the new users' password files")
    .action(async (o: InitFlags) => {
      if (!isEtcdUrl(o.datastore))
        throw new ValidationError("--datastore", `init-etcd-auth needs an etcd URL, got "${o.datastore}"`);
      const conn = etcdConnection(parseEtcdUrl(o.datastore));
      if (conn.auth?.username !== "root")
        throw new ValidationError(
          "--datastore",
          "init-etcd-auth acts as etcd's root user: add ?user=root&password-file=FILE (when authentication is still off, root is created with that password)",
        );
      // Loaded on use: the etcd client costs a second of start-up.
      const { adminClient, etcdAuthEnabled, initEtcdAuth } = await import("../datastore/etcd/auth.js");
      const { EtcdDatastore } = await import("../datastore/etcd/index.js");
      const tls = conn.credentials === undefined ? {} : { credentials: conn.credentials };
      const probe = adminClient({ hosts: conn.hosts, ...tls });
      let admin: ReturnType<typeof adminClient> | undefined;
      try {
        const enabled = await etcdAuthEnabled(probe).catch((e: unknown) => {
          // The datastore's own mapping names TLS and connection failures plainly.
          throw new EtcdDatastore({ hosts: conn.hosts, client: tls }).mapError(e);
        });
        admin = enabled ? adminClient({ hosts: conn.hosts, ...tls, auth: conn.auth }) : probe;
        const r = await initEtcdAuth(admin, {
          nodes: o.node,
          outDir: o.out,
          rootPassword: enabled ? undefined : conn.auth.password,
        }).catch((e: unknown) => {
          throw new EtcdDatastore({ hosts: conn.hosts, client: { ...tls, auth: conn.auth } }).mapError(e);
        });
        for (const u of r.users)
          console.log(
            u.action === "created"
              ? `${u.user}: created, password in ${u.passwordFile}`
              : `${u.user}: exists, roles updated, password unchanged`,
          );
        if (r.enabledAuth)
          console.log("etcd authentication turned on (root has the password-file's password)");
      } catch (e) {
        if (e instanceof PodcryptError) throw e;
        throw new PodcryptError(
          "EETCDAUTH",
          `init-etcd-auth: ${e instanceof Error ? e.message : String(e)}`,
          {
            cause: e,
          },
        );
      } finally {
        if (admin !== undefined && admin !== probe) admin.close();
        probe.close();
      }
    });
}
