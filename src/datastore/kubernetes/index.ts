/** The `kubernetes` datastore backend. */
export { KubernetesDatastore, type KubernetesDatastoreOptions } from "./datastore.js";
export { API_CALLS, type ApiCall } from "./api-calls.js";
export { KubeClient, KubeApiError, isKubeApiError } from "./client.js";
export { Informer, ResumableWatch, type InformerHandlers, type ResumableWatchHandlers } from "./watch.js";
export * from "./mapping.js";
export { kubeConfigOf, kubeServer } from "./kubeconfig.js";
