import type { Datastore } from "../datastore/types.js";
import { CLUSTER_ENCRYPTION_NAME, type Node } from "../model/index.js";
import { statusView, type StatusView } from "./view.js";

/** Reads the ClusterEncryption object, the node records and their liveness and makes the status view of `now`. */
export async function readStatusView(store: Datastore, now: number): Promise<StatusView> {
  const [cluster, nodes, heartbeats] = await Promise.all([
    store.collection("clusterencryptions").get(CLUSTER_ENCRYPTION_NAME),
    store.collection("nodes").list(),
    store.heartbeats(),
  ]);
  return statusView(
    cluster?.value,
    nodes.items.map((i): Node => i.value),
    heartbeats,
    now,
  );
}
