/**
 * Scale check (not a unit test): how long a write takes to reach N watchers on real etcd, each
 * watcher on its own client connection as an agent would be. Run:
 *   npx tsx test/datastore/watch-fanout.ts [N=500] [rounds=5]
 */
import { EtcdDatastore } from "../../src/datastore/etcd/index.js";
import { sampleNode } from "./conformance.js";
import { EtcdTestServer } from "../support/etcd-server.js";

const n = Number(process.argv[2] ?? 500);
const rounds = Number(process.argv[3] ?? 5);
const server = await EtcdTestServer.start();
const clients: EtcdDatastore[] = [];
try {
  const writer = new EtcdDatastore({ hosts: server.endpoint });
  clients.push(writer);
  const rev = (await writer.collection("nodes").list()).revision;
  let pending = 0;
  let done: () => void = () => {};
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const c = new EtcdDatastore({ hosts: server.endpoint });
    clients.push(c);
    await c.collection("nodes").watch(rev, {
      event: () => {
        if (--pending === 0) done();
      },
      gone: () => {},
    });
  }
  console.log(`${n} watchers established in ${(performance.now() - t0).toFixed(0)} ms`);
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    pending = n;
    const all = new Promise<void>((res) => (done = res));
    const start = performance.now();
    await writer.collection("nodes").create(sampleNode(`fanout-${r}`));
    await all;
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  console.log(
    `write -> all ${n} watchers: min ${times[0]!.toFixed(1)} ms, median ${times[Math.floor(times.length / 2)]!.toFixed(1)} ms, max ${times[times.length - 1]!.toFixed(1)} ms over ${rounds} writes`,
  );
} finally {
  await Promise.allSettled(clients.map((c) => c.close()));
  await server.stop();
}
