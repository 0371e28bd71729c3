/** Node key pairs, per-pair ESP key derivation, key IDs and SPIs, Cilium-compatible PSKs. */
export * from "./x25519.js";
export * from "./derive.js";
export * from "./keystore.js";
export * from "./psk.js";
