import { runConformance } from "./conformance.js";
import { MemoryDatastore } from "../support/memory-datastore/index.js";

const root = new MemoryDatastore();
runConformance("memory", async () => {
  const store = root.connect();
  return { store, close: () => store.close() };
});
