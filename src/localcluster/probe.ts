import { createSocket } from "node:dgram";

/** One marked probe: datagrams carrying `marker` to `ip:port`, echoed back by the pod's echo service. */
export interface ProbeTarget {
  ip: string;
  port: number;
  marker: string;
}

/**
 * Sends `count` UDP datagrams carrying each target's marker, spread over `seconds`, and reports
 * for each marker how many echoes came back. Runs inside a pod's namespace.
 */
export async function probe(
  targets: ProbeTarget[],
  count: number,
  seconds: number,
): Promise<Record<string, number>> {
  const sock = createSocket("udp4");
  const received: Record<string, number> = Object.fromEntries(targets.map((t) => [t.marker, 0]));
  sock.on("message", (msg) => {
    const text = msg.toString("utf8");
    if (text in received) received[text]!++;
  });
  await new Promise<void>((resolve) => sock.bind(0, resolve));
  const gap = (seconds * 1000) / Math.max(1, count);
  for (let i = 0; i < count; i++) {
    for (const t of targets) sock.send(t.marker, t.port, t.ip);
    await new Promise((r) => setTimeout(r, gap));
  }
  // Echoes still in flight (a handshake in progress, a loaded machine) get two seconds to return.
  await new Promise((r) => setTimeout(r, 2000));
  sock.close();
  return received;
}
