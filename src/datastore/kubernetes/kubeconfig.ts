import { KubeConfig } from "@kubernetes/client-node";
import { ValidationError } from "../../errors/index.js";

/** The KubeConfig a `kubernetes[:FILE]` datastore URL names. */
export function kubeConfigOf(url: string): KubeConfig {
  const kc = new KubeConfig();
  const file = url.slice("kubernetes".length).replace(/^:/, "");
  try {
    if (file === "") kc.loadFromDefault();
    else kc.loadFromFile(file);
  } catch (cause) {
    throw new ValidationError(
      "--datastore",
      `cannot load the kubeconfig ${file || "(default)"}: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  if (kc.getCurrentCluster() === null)
    throw new ValidationError(
      "--datastore",
      `the kubeconfig ${file || "(default)"} names no current cluster`,
    );
  return kc;
}

/** The API server URL of a `kubernetes[:FILE]` datastore URL. */
export function kubeServer(url: string): string {
  return kubeConfigOf(url).getCurrentCluster()!.server;
}
