/** podcrypt's userspace ESP core: RFC 4303 tunnel mode, RFC 4106 AES-GCM, RFC 3948 UDP. No I/O. */
export * from "./gcm.js";
export * from "./replay.js";
export * from "./sa.js";
export * from "./sadb.js";
export * from "./drops.js";
export * from "./codec.js";
export * from "./udp.js";
export * from "./ip.js";
