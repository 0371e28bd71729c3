/** Messages between bench/scale's main thread and its agent workers (agents-worker.ts). */

/** What a worker is given at start. */
export interface WorkerSetup {
  endpoint: string;
  /** etcd clients of this worker; agent i uses client i mod clients. */
  clients: number;
  sharedWatches: boolean;
  /** HTTP/2 flow-control window of each etcd client's connection, bytes (see agents-worker.ts). */
  flowControlWindow: number;
  heartbeatMs: number;
  resyncMs?: number;
}

/** A condition on each agent of a worker. */
export type Condition =
  /** It ran its first reconcile. */
  | { kind: "started" }
  /** Its generation `epoch` holds `count` peers. */
  | { kind: "peers"; epoch: number; count: number }
  /** Its generation `epoch` holds `node` (trivially true for `node` itself). */
  | { kind: "has-peer"; node: string; epoch: number }
  /** It holds generation `epoch` only, with `count` peers. */
  | { kind: "only"; epoch: number; count: number };

export type Request = { id: number } & (
  | { op: "start"; indices: number[]; timeoutMs: number }
  /** Answers with the time `condition` first held for every agent (of `names`, when given). */
  | { op: "until"; condition: Condition; names?: string[]; what: string; timeoutMs: number }
  /** Fails if a peer in generation `epoch` is held under another key than `keys` (node → key). */
  | { op: "check-keys"; epoch: number; keys: Array<[string, string]> }
  /** Measurements begin (optionally profiling this worker to `profile` when they end). */
  | { op: "measure"; profile?: string }
  | { op: "measured"; profile?: string }
  | { op: "stop" }
);

export interface Reply {
  id: number;
  error?: string;
  /** Wall-clock ms (Date.now()). */
  at?: number;
  reconciles?: number;
  agents?: number;
  /** Agents that failed to start and were replaced by fresh ones (agents-worker.ts). */
  restarts?: number;
  loopDelayMs?: { p50: number; p99: number; max: number };
}
