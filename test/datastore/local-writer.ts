/** Child process of local.test.ts: opens the state dir given as argv[2] and creates node argv[3]. */
import { LocalDatastore } from "../../src/datastore/local/index.js";
import { sampleNode } from "./conformance.js";

const store = await LocalDatastore.open({ dir: process.argv[2]! });
await store.collection("nodes").create(sampleNode(process.argv[3]!));
await store.close();
