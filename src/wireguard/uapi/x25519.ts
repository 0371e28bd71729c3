import { createPrivateKey, createPublicKey } from "node:crypto";

/** The X25519 public key of a 32-byte private key (RFC 7748), through OpenSSL. */
export function x25519PublicKey(privateKey: Buffer): Buffer {
  const key = createPrivateKey({
    key: { kty: "OKP", crv: "X25519", d: privateKey.toString("base64url"), x: "" },
    format: "jwk",
  });
  const jwk = createPublicKey(key).export({ format: "jwk" });
  return Buffer.from(jwk.x!, "base64url");
}
