export { KubeApiServer, type KubeApiServerOptions, type RequestRecord, type Verb } from "./server.js";
export { ObjectStore, PATCH_TYPES, type KubeObject, type ObjectMeta, type WatchEvent } from "./store.js";
export { podcryptCrds } from "./crds.js";
export { ApiStatusError, type Status } from "./status.js";
export type { ResourceType } from "./resources.js";
export {
  installPodcrypt,
  kubeconfigYaml,
  rbacAllows,
  serviceAccountUser,
  SERVICE_ACCOUNT_USERS,
} from "./rbac.js";
