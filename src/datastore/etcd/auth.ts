/**
 * etcd's own authorization for podcrypt: one user and role per node that may write only that
 * node's record, and a controller user that writes the cluster's encryption state, policy status
 * and its leader key. etcd itself enforces it (a compromised agent cannot rewrite another node's
 * keys or pod CIDRs, nor take or revoke the controller's leadership): podcrypt's own checks are not
 * involved.
 *
 * Key layout (prefix `/podcrypt/`): everything an agent writes is its Node, `nodes/<name>`, one exact
 * key (acknowledgements live in that record), and its liveness record `__liveness/<name>` (attached
 * to a lease the agent grants and keeps alive), so a node's role grants write on those keys alone,
 * never a prefix (`nodes/node-1` as a prefix would cover `nodes/node-10`). Every
 * podcrypt user reads the whole prefix (agents watch every kind).
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Etcd3, Range, type IOptions, type IPermissionRequest } from "etcd3";
import { ValidationError } from "../../errors/index.js";
import { LEADER_KIND, LIVENESS_KIND } from "./index.js";

/** The etcd user (and role) of the controller. */
export const CONTROLLER_USER = "podcrypt-controller";

/** The etcd user (and role) of node `name`'s agent. */
export function nodeUser(name: string): string {
  return `podcrypt-node-${name}`;
}

/** A node name usable in an etcd user name and key: what Kubernetes allows for Node names. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** The permissions of the controller's role under `prefix`. */
export function controllerPermissions(prefix: string): IPermissionRequest[] {
  return [
    { permission: "Read", range: Range.prefix(prefix) },
    // The encryption state it drives, the policies' status it reports, its leader-election keys.
    { permission: "Readwrite", range: Range.prefix(`${prefix}clusterencryptions/`) },
    { permission: "Readwrite", range: Range.prefix(`${prefix}encryptionpolicies/`) },
    { permission: "Readwrite", range: Range.prefix(`${prefix}${LEADER_KIND}/`) },
  ];
}

/** The permissions of node `name`'s role under `prefix`: read everything, write its own Node only. */
export function nodePermissions(prefix: string, name: string): IPermissionRequest[] {
  return [
    { permission: "Read", range: Range.prefix(prefix) },
    { permission: "Readwrite", key: `${prefix}nodes/${name}` },
    // Its liveness record, attached to a lease it grants and keeps alive.
    { permission: "Readwrite", key: `${prefix}${LIVENESS_KIND}/${name}` },
  ];
}

/** What {@link initEtcdAuth} did for one user. */
export interface InitUserResult {
  user: string;
  /** `created`: new user, password written to `passwordFile`; `kept`: existed, password unchanged. */
  action: "created" | "kept";
  passwordFile?: string;
}

/** What {@link initEtcdAuth} did. */
export interface InitEtcdAuthResult {
  users: InitUserResult[];
  /** Whether this call turned etcd's authentication on (it was off). */
  enabledAuth: boolean;
}

/** Options of {@link initEtcdAuth}. */
export interface InitEtcdAuthOptions {
  /** Key prefix of the datastore. Default `/podcrypt/`. */
  prefix?: string;
  /** Node names: one user and role each. */
  nodes: readonly string[];
  /** Directory for the new users' password files (`<user>.password`, 0600). */
  outDir: string;
  /**
   * Given when etcd's authentication is still off: the password of the `root` user to create (etcd
   * needs one before it turns authentication on), which is turned on at the end.
   */
  rootPassword?: string | undefined;
}

/** An etcd client for {@link initEtcdAuth} (callers that load this module lazily need no etcd3 import). */
export function adminClient(options: IOptions): Etcd3 {
  return new Etcd3(options);
}

/** Whether etcd's authentication is on, asked with a client that presents no credentials. */
export async function etcdAuthEnabled(client: Etcd3): Promise<boolean> {
  try {
    await client.getRoles();
    return false;
  } catch (e) {
    // With authentication on, a request without a token is refused ("user name is empty" or
    // "permission denied"); anything else (unreachable, TLS) is the caller's to see.
    if (/user name is empty|permission denied|invalid auth token/i.test(String(e))) return true;
    throw e;
  }
}

async function ensureRole(client: Etcd3, name: string, perms: IPermissionRequest[]): Promise<void> {
  const role = client.role(name);
  await role.create().catch((e: unknown) => {
    if (!/role name already exists/i.test(String(e))) throw e;
  });
  // A role kept from an earlier run may hold grants this version no longer gives: revoke them all.
  const had = await role.permissions();
  if (had.length > 0) await role.revoke(had.map((p) => ({ permission: p.permission, range: p.range })));
  await role.grant(perms);
}

async function ensureUser(client: Etcd3, name: string, outDir: string): Promise<InitUserResult> {
  const user = client.user(name);
  const password = randomBytes(24).toString("base64url");
  const created = await user.create(password).then(
    () => true,
    (e: unknown) => {
      if (!/user name already exists/i.test(String(e))) throw e;
      return false;
    },
  );
  await user.addRole(name);
  if (!created) return { user: name, action: "kept" };
  const passwordFile = join(outDir, `${name}.password`);
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  chmodSync(passwordFile, 0o600);
  return { user: name, action: "created", passwordFile };
}

/**
 * Creates (or brings up to date) the roles and users of the controller and of every node in
 * `nodes`, with random passwords written 0600 to `outDir`; users that exist keep their password.
 * `admin` must be a client etcd lets manage users: `root`, or, while authentication is off, any
 * client together with `rootPassword` (creates `root` and turns authentication on at the end).
 */
export async function initEtcdAuth(admin: Etcd3, options: InitEtcdAuthOptions): Promise<InitEtcdAuthResult> {
  const prefix = options.prefix ?? "/podcrypt/";
  for (const n of options.nodes)
    if (!NODE_NAME.test(n))
      throw new ValidationError("--node", `"${n}" is not a node name (lower-case letters, digits, - and .)`);
  if (!existsSync(options.outDir)) mkdirSync(options.outDir, { recursive: true, mode: 0o700 });
  await ensureRole(admin, CONTROLLER_USER, controllerPermissions(prefix));
  for (const n of options.nodes) await ensureRole(admin, nodeUser(n), nodePermissions(prefix, n));
  const users: InitUserResult[] = [await ensureUser(admin, CONTROLLER_USER, options.outDir)];
  for (const n of options.nodes) users.push(await ensureUser(admin, nodeUser(n), options.outDir));
  if (options.rootPassword === undefined) return { users, enabledAuth: false };
  const root = admin.user("root");
  await root.create(options.rootPassword).catch((e: unknown) => {
    if (!/user name already exists/i.test(String(e))) throw e;
  });
  await root.addRole("root");
  await admin.auth.authEnable();
  return { users, enabledAuth: true };
}
