/**
 * Latency settings of the userspace data plane daemons (`podcrypt wireguard`, `podcrypt esp`),
 * applied once at their start by {@link tuneForLonePackets}.
 *
 * A lone packet (a ping, a request after an idle spell) wakes the daemon, runs the packet path
 * once, in the same event-loop turn as the read, and the daemon sleeps again. Traced with perf
 * under ping (20 ms apart, docs/benchmarks.md) its time went to two things, not to any timer,
 * deferred hop or batching delay:
 *   - V8's baseline tier. TurboFan optimizes a function only after it has run `--interrupt-budget`
 *     bytes of bytecode a few times over (about 66 KB x (3 + size / 150) in Node 20), which at
 *     tens of packets per second takes minutes; until then every wake-up runs baseline code whose
 *     inline caches and feedback vectors are what a cold wake-up pays for (~40 us from the wake-up
 *     to the TUN read, ~75 us from the read to `sendmmsg`). Optimized, the round trip through two
 *     daemons was ~100 us shorter. Under load the hot loops are optimized within milliseconds
 *     either way, so throughput is unchanged; the daemon only optimizes sooner, on V8's concurrent
 *     compiler threads.
 *   - Waiting for a CPU. On a busy machine the woken daemon waits behind whatever runs there,
 *     often for a whole time slice. A short slice (EEVDF, Linux 6.12) gives the waking event-loop
 *     thread an earlier virtual deadline, so it runs first and for about as long as a packet path
 *     needs; its share of the CPU (nice, weight) stays the same.
 */
import { setFlagsFromString } from "node:v8";
import type { Logger } from "../../log/logger.js";
import { native } from "../../native.js";

/**
 * Interrupt budget (bytes of bytecode between tier-up checks) set in the daemons: 1/16 of Node
 * 20's default (67584), so the packet path reaches TurboFan after a few dozen packets.
 */
export const PACKET_PATH_INTERRUPT_BUDGET = 4096;

/**
 * Time slice asked for the event-loop thread, in nanoseconds: 0.3 ms covers a cold wake-up's
 * packet path (~150-250 us here) without being cut, and is well under the default slice.
 */
export const PACKET_PATH_SLICE_NS = 300_000;

/**
 * Applies both settings of the file comment to this process (call it on the event-loop thread,
 * before the packet path first runs). The slice is a request: a kernel without custom slices
 * ignores it, a realtime policy set from outside is kept, and a refusal is logged, never thrown.
 */
export function tuneForLonePackets(logger: Logger): void {
  setFlagsFromString(`--interrupt-budget=${PACKET_PATH_INTERRUPT_BUDGET}`);
  try {
    const slice = native().setSchedSlice(PACKET_PATH_SLICE_NS);
    if (slice === -1) logger.info("realtime scheduling policy: time slice left as it is");
    else if (slice === 0) logger.info("the kernel has no custom time slices (Linux 6.12+): default slice");
    else logger.debug({ sliceNs: slice }, "event-loop time slice set");
  } catch (e) {
    logger.warn({ err: e instanceof Error ? e.message : String(e) }, "cannot set the event-loop time slice");
  }
}
