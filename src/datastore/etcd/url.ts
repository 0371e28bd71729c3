/**
 * The etcd datastore's URL: `etcds://HOST:PORT[,HOST:PORT...]?ca=FILE&cert=FILE&key=FILE&user=NAME&password-file=FILE`
 * (TLS; `ca` verifies etcd's server certificate, `cert`/`key` are the client certificate etcd
 * checks with `--client-cert-auth`, `user`/`password-file` log in to etcd's user authentication)
 * or plaintext `etcd://HOST:PORT[...]`.
 *
 * Plaintext lets anyone on the path read and rewrite every key (nodes' keys, pod CIDRs), so it is
 * refused unless every host is a loopback address (127.0.0.0/8, ::1, localhost: nothing lies
 * between the two ends, as in the local cluster) or the URL says `allow-insecure=true`.
 *
 * A password is never part of the URL (it would show in process lists, config files, logs and
 * status): only the name of a file holding it. Only file names reach errors, never their contents.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { ValidationError } from "../../errors/index.js";

/** Query parameters an etcd URL may carry. */
const PARAMS = ["ca", "cert", "key", "user", "password-file", "allow-insecure"] as const;

/** What {@link parseEtcdUrl} found in a URL, files not read yet. */
export interface EtcdUrl {
  /** Whether the URL is `etcds://` (TLS). */
  tls: boolean;
  /** `HOST:PORT` of every endpoint. */
  hostPorts: string[];
  /** CA certificate file (PEM) that signed etcd's server certificate; default the system's CAs. */
  ca?: string;
  /** Client certificate (PEM) and its key, for etcd's `--client-cert-auth`. */
  cert?: string;
  key?: string;
  /** etcd user to authenticate as. */
  user?: string;
  /** File whose first line is that user's password. */
  passwordFile?: string;
  /** `allow-insecure=true`: plaintext to a non-loopback etcd, knowingly. */
  allowInsecure: boolean;
}

/** The connection options {@link etcdConnection} builds (etcd3's `credentials` and `auth`). */
export interface EtcdConnection {
  hosts: string[];
  credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
  auth?: { username: string; password: string };
}

const FIELD = "--datastore";

function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "localhost" || (isIP(h) === 4 && h.startsWith("127.")) || h === "::1";
}

/** Whether `url` names the etcd datastore (`etcd://` or `etcds://`). */
export function isEtcdUrl(url: string): boolean {
  return url.startsWith("etcd://") || url.startsWith("etcds://");
}

/** Parses an etcd datastore URL; refuses a password in it, unknown parameters, and insecure plaintext. */
export function parseEtcdUrl(url: string): EtcdUrl {
  const tls = url.startsWith("etcds://");
  const rest = url.slice(tls ? "etcds://".length : "etcd://".length);
  const q = rest.indexOf("?");
  const authority = q < 0 ? rest : rest.slice(0, q);
  if (authority.includes("@"))
    throw new ValidationError(
      FIELD,
      "an etcd URL carries no user or password before the host: use ?user=NAME&password-file=FILE",
    );
  const hostPorts = authority.split(",");
  if (hostPorts.some((h) => !/^(?:[\w.-]+|\[[0-9a-fA-F:]+\]):\d{1,5}$/.test(h)))
    throw new ValidationError(
      FIELD,
      `"${tls ? "etcds" : "etcd"}://${authority}" is not ${tls ? "etcds" : "etcd"}://HOST:PORT[,HOST:PORT...]`,
    );
  const params = new URLSearchParams(q < 0 ? "" : rest.slice(q + 1));
  for (const name of params.keys()) {
    if (name === "password")
      throw new ValidationError(
        FIELD,
        "an etcd URL never carries a password (it would show in process lists and logs): put it in a file and name it with password-file=FILE",
      );
    if (!(PARAMS as readonly string[]).includes(name))
      throw new ValidationError(FIELD, `unknown etcd URL parameter "${name}" (known: ${PARAMS.join(", ")})`);
  }
  const get = (name: (typeof PARAMS)[number]): string | undefined => {
    const v = params.get(name);
    if (v === null) return undefined;
    if (v === "") throw new ValidationError(FIELD, `etcd URL parameter ${name} is empty`);
    return v;
  };
  const allowRaw = get("allow-insecure");
  if (allowRaw !== undefined && allowRaw !== "true" && allowRaw !== "false")
    throw new ValidationError(FIELD, `allow-insecure must be true or false, got "${allowRaw}"`);
  const parsed: EtcdUrl = { tls, hostPorts, allowInsecure: allowRaw === "true" };
  for (const [name, field] of [
    ["ca", "ca"],
    ["cert", "cert"],
    ["key", "key"],
    ["user", "user"],
    ["password-file", "passwordFile"],
  ] as const) {
    const v = get(name);
    if (v !== undefined) parsed[field] = v;
  }
  if (!tls && (parsed.ca !== undefined || parsed.cert !== undefined || parsed.key !== undefined))
    throw new ValidationError(FIELD, "ca=, cert= and key= need TLS: write etcds:// instead of etcd://");
  if ((parsed.cert === undefined) !== (parsed.key === undefined))
    throw new ValidationError(FIELD, "a client certificate needs both cert=FILE and key=FILE");
  if (parsed.cert !== undefined && parsed.ca === undefined)
    throw new ValidationError(
      FIELD,
      "a client certificate needs ca=FILE too (the CA that signed etcd's certificate)",
    );
  if ((parsed.user === undefined) !== (parsed.passwordFile === undefined))
    throw new ValidationError(FIELD, "etcd authentication needs both user=NAME and password-file=FILE");
  if (!tls && !parsed.allowInsecure && !hostPorts.every((h) => isLoopbackHost(h.replace(/:\d+$/, ""))))
    throw new ValidationError(
      FIELD,
      `plaintext etcd to ${hostPorts.join(",")} is refused: anyone on the network between could read and rewrite the cluster's keys and pod CIDRs. ` +
        "Use etcds://HOST:PORT?ca=FILE&cert=FILE&key=FILE&user=NAME&password-file=FILE, or accept the risk with ?allow-insecure=true",
    );
  return parsed;
}

function readNamed(param: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
    throw new ValidationError(FIELD, `cannot read the etcd ${param} file ${file} (${why})`, { cause: e });
  }
}

function readPem(param: string, file: string, label: "CERTIFICATE" | "PRIVATE KEY"): Buffer {
  const b = readNamed(param, file);
  const re = label === "CERTIFICATE" ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
  if (!re.test(b.toString("latin1")))
    throw new ValidationError(FIELD, `the etcd ${param} file ${file} holds no PEM ${label}`);
  return b;
}

/** Reads the files a parsed URL names into etcd3 client options. */
export function etcdConnection(u: EtcdUrl): EtcdConnection {
  const scheme = u.tls ? "https" : "http";
  const c: EtcdConnection = { hosts: u.hostPorts.map((h) => `${scheme}://${h}`) };
  // Without ca= (and no client certificate) grpc verifies against the system's trusted CAs.
  if (u.ca !== undefined) {
    c.credentials = { rootCertificate: readPem("ca", u.ca, "CERTIFICATE") };
    if (u.cert !== undefined && u.key !== undefined) {
      c.credentials.certChain = readPem("cert", u.cert, "CERTIFICATE");
      c.credentials.privateKey = readPem("key", u.key, "PRIVATE KEY");
    }
  }
  if (u.user !== undefined && u.passwordFile !== undefined) {
    const password = readNamed("password", u.passwordFile).toString("utf8").split(/\r?\n/)[0] ?? "";
    if (password === "")
      throw new ValidationError(FIELD, `the etcd password file ${u.passwordFile} is empty`);
    c.auth = { username: u.user, password };
  }
  return c;
}
