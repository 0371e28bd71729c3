import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import type { EspExportedSa } from "../dataplane/esp-userspace/control.js";
import { DEFAULT_ESP_SOCKET_DIR } from "../dataplane/esp-userspace/socket-path.js";
import { PodcryptError } from "../errors/index.js";
import { OutboundSa, formatSpi } from "../esp/sa.js";
import { tsharkEspSaLine } from "../esp/tshark.js";

/** Warning printed on stderr whenever keys are exported. */
export const KEY_EXPORT_WARNING =
  "podcrypt: WARNING: these lines contain ESP session keys; anyone holding them can decrypt the captured traffic. " +
  "Use them for debugging only and delete them afterwards.\n";

/**
 * The live SAs of every ESP daemon whose control socket is in `dir`, each once (the outbound SA of
 * a -> b and the inbound SA of b from a are the same SA seen from both ends). Unreachable sockets
 * (a stale file of a daemon that died) are skipped.
 */
export async function collectClusterSas(dir = DEFAULT_ESP_SOCKET_DIR): Promise<EspExportedSa[]> {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".sock"));
  } catch (cause) {
    throw new PodcryptError(
      "ENOESP",
      `no ESP daemons: cannot read ${dir} (is the cluster up in ipsec mode?)`,
      {
        cause,
      },
    );
  }
  // Loaded on use: the control protocol's schemas load zod, which every other `debug` command
  // (the pods' echo servers and probes, started by the dozen in a local cluster) goes without.
  const { espExportSas } = await import("../dataplane/esp-userspace/control.js");
  const seen = new Map<string, EspExportedSa>();
  for (const f of files.sort()) {
    const sas = await espExportSas(join(dir, f)).catch(() => undefined);
    for (const sa of sas ?? []) {
      const key = `${sa.spi}|${sa.key}|${sa.salt}`;
      const have = seen.get(key);
      // Prefer the view that knows both outer addresses.
      if (have === undefined || (have.src === "*" && sa.src !== "*") || (have.dst === "*" && sa.dst !== "*"))
        seen.set(key, sa);
    }
  }
  return [...seen.values()];
}

/** One tshark `esp_sa` UAT line of an exported SA. */
export function exportedSaLine(sa: EspExportedSa): string {
  return tsharkEspSaLine(
    new OutboundSa({
      spi: sa.spi,
      keyId: sa.keyId,
      key: Buffer.from(sa.key, "hex"),
      salt: Buffer.from(sa.salt, "hex"),
      icvLength: sa.icvLength,
      peer: sa.peer,
      ...(sa.src !== "*" ? { srcAddress: sa.src } : {}),
      ...(sa.dst !== "*" ? { dstAddress: sa.dst } : {}),
      createdAt: 0,
    }),
  );
}

/** Registers `podcrypt debug esp-sa` under the `debug` command. */
export function registerDebugEsp(debug: Command): void {
  debug
    .command("esp-sa")
    .description(
      "the local cluster's live ESP SAs (from every daemon socket in /var/run/podcrypt/esp); with --tshark as lines " +
        "of tshark's esp_sa table, keys included, so a capture can be decrypted",
    )
    .option("--tshark", "print esp_sa UAT lines WITH KEYS (warns on stderr)", false)
    .option("--socket-dir <dir>", "directory of the ESP daemons' control sockets", DEFAULT_ESP_SOCKET_DIR)
    .option("--json", "without --tshark: the SAs as JSON (no keys)", false)
    .action(async (o: { tshark: boolean; socketDir: string; json: boolean }) => {
      const sas = await collectClusterSas(o.socketDir);
      if (sas.length === 0)
        throw new PodcryptError(
          "ENOSA",
          `no ESP SAs: no userspace ESP daemon answers in ${o.socketDir} ` +
            "(is a local cluster running with --mode ipsec? kernel XFRM SAs are in `ip xfrm state`)",
        );
      if (o.tshark) {
        process.stderr.write(KEY_EXPORT_WARNING);
        process.stdout.write(sas.map((sa) => exportedSaLine(sa) + "\n").join(""));
        return;
      }
      const rows = sas.map((sa) => ({ src: sa.src, dst: sa.dst, spi: formatSpi(sa.spi), keyId: sa.keyId }));
      if (o.json) process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
      else
        process.stdout.write(
          rows.map((r) => `${r.src} -> ${r.dst} spi ${r.spi} key ID ${r.keyId}`).join("\n") + "\n",
        );
    });
}
