export {
  FakeDataplane,
  FakeFabric,
  fakeErrno,
  type FakeGeneration,
  type FakeStats,
  type FakeStep,
} from "./backend.js";
export { MemoryEpochKeys } from "./keys.js";
