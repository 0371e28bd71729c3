import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PodcryptError } from "../errors/index.js";
import { projectRoot } from "../paths.js";
import { run } from "../platform/netns/netns.js";
import { VERIFY_PORT } from "./echo.js";
import type { ProbeResult } from "./probe.js";
import type { ClusterState } from "./state.js";

/** One ordered node pair's result (DESIGN.md section 9: `verify --json`). */
export interface PairResult {
  from: string;
  to: string;
  fromPod: string;
  toPod: string;
  delivered: boolean;
  plaintextSeen: boolean;
  sent: number;
  echoed: number;
  /** Runs of datagrams that never came back: when (ms after the first was sent) and how many. */
  losses: Array<{ atMs: number; untilMs: number; packets: number }>;
}

export interface VerifyResult {
  ok: boolean;
  encrypted: boolean;
  pairs: PairResult[];
  capture: { packets: number; bytes: number };
}

/** Starts tcpdump on the fabric bridge; resolves once it listens. */
async function startCapture(state: ClusterState, file: string): Promise<() => Promise<void>> {
  const child = spawn(
    "ip",
    [
      "netns",
      "exec",
      state.plan.fabric.netns,
      "tcpdump",
      "-i",
      state.plan.fabric.bridge,
      "-U",
      "-s",
      "0",
      "-w",
      file,
    ],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  await new Promise<void>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(
      () => reject(new PodcryptError("ECAPTURE", `tcpdump did not start: ${err}`)),
      10_000,
    );
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      if (err.includes("listening on")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new PodcryptError("ECAPTURE", `tcpdump exited with ${code}: ${err.trim()}`));
    });
  });
  return async () => {
    const done = new Promise((r) => child.once("exit", r));
    child.kill("SIGINT");
    await done;
  };
}

/**
 * `podcrypt verify`: for every ordered pair of nodes, a pod on the first sends UDP datagrams
 * carrying a unique marker to a pod on the second (which echoes them), while the fabric bridge is
 * captured. A pair fails when its marker shows up in the capture (plaintext on the underlay) or
 * no echo came back. With encryption off, every pair is expected to be plaintext: verify fails.
 */
export async function verifyCluster(state: ClusterState, seconds: number, count = 5): Promise<VerifyResult> {
  const nonce = randomBytes(6).toString("hex");
  const file = join(tmpdir(), `podcrypt-verify-${nonce}.pcap`);
  const stop = await startCapture(state, file);
  const pairs: PairResult[] = [];
  try {
    const bySource = new Map<string, Array<{ pair: PairResult; ip: string; marker: string }>>();
    for (const a of state.plan.nodes) {
      const src = state.plan.pods.find((p) => p.node === a.name);
      if (src === undefined) continue;
      for (const b of state.plan.nodes) {
        if (a.name === b.name) continue;
        const dst = state.plan.pods.find((p) => p.node === b.name);
        if (dst === undefined) continue;
        const pair: PairResult = {
          from: a.name,
          to: b.name,
          fromPod: src.name,
          toPod: dst.name,
          delivered: false,
          plaintextSeen: false,
          sent: count,
          echoed: 0,
          losses: [],
        };
        pairs.push(pair);
        const list = bySource.get(src.netns) ?? [];
        list.push({ pair, ip: dst.ip, marker: `PODCRYPT-VERIFY-${nonce}-${a.name}-${b.name}` });
        bySource.set(src.netns, list);
      }
    }
    const podcrypt = join(projectRoot(), "bin", "podcrypt");
    await Promise.all(
      [...bySource].map(async ([netns, list]) => {
        const targets = list.map((l) => `${l.ip}:${VERIFY_PORT}:${l.marker}`).join(",");
        const out = await run(
          "ip",
          [
            "netns",
            "exec",
            netns,
            process.execPath,
            podcrypt,
            "debug",
            "probe",
            "--targets",
            targets,
            "--count",
            String(count),
            "--seconds",
            String(seconds),
          ],
          {
            timeoutMs: (seconds + 30) * 1000,
          },
        );
        const results = JSON.parse(out) as Record<string, ProbeResult>;
        const gapMs = (seconds * 1000) / count;
        for (const l of list) {
          const r = results[l.marker] ?? { echoed: 0, lost: [[0, count - 1]] };
          l.pair.echoed = r.echoed;
          l.pair.delivered = r.echoed === count;
          l.pair.losses = r.lost.map(([a, b]) => ({
            atMs: Math.round(a * gapMs),
            untilMs: Math.round(b * gapMs),
            packets: b - a + 1,
          }));
        }
      }),
    );
  } finally {
    await stop();
  }
  const capture = readFileSync(file);
  rmSync(file, { force: true });
  for (const p of pairs) p.plaintextSeen = capture.includes(`PODCRYPT-VERIFY-${nonce}-${p.from}-${p.to}`);
  // pcap: 24-byte header, then 16-byte record headers.
  let packets = 0;
  for (let off = 24; off + 16 <= capture.length; packets++) off += 16 + capture.readUInt32LE(off + 8);
  return {
    ok: pairs.length > 0 && pairs.every((p) => p.delivered && !p.plaintextSeen),
    encrypted: pairs.every((p) => !p.plaintextSeen),
    pairs,
    capture: { packets, bytes: capture.length },
  };
}
