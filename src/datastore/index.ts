/** The datastore interface, its errors, and helpers shared by every backend's consumers. */
export * from "./types.js";
export * from "./errors.js";
