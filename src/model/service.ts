import { z } from "zod";
import { ipAddress, namespaceName, objectName, portEntry } from "./common.js";

/** A service that policies refer to: the selector picks pods, the ports are `proto/port` strings. */
export const serviceSchema = z.strictObject({
  name: objectName,
  namespace: namespaceName,
  selector: z.record(z.string().min(1), z.string()).default({}),
  ports: z.array(portEntry).default([]),
});
/** A service that policies refer to. */
export type Service = z.output<typeof serviceSchema>;
/** A Service as written by callers. */
export type ServiceInput = z.input<typeof serviceSchema>;

/** One ready endpoint of a service: a pod IP, with the pod and node when known. */
export const endpointAddressSchema = z.strictObject({
  ip: ipAddress,
  pod: objectName.optional(),
  node: objectName.optional(),
});

/** The pod IPs behind a service (same name and namespace as the Service). */
export const endpointsSchema = z.strictObject({
  name: objectName,
  namespace: namespaceName,
  addresses: z.array(endpointAddressSchema).default([]),
});
/** The pod IPs behind a service. */
export type Endpoints = z.output<typeof endpointsSchema>;
/** An Endpoints as written by callers. */
export type EndpointsInput = z.input<typeof endpointsSchema>;
