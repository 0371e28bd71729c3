/**
 * Selective encryption (docs/design.md#selective-encryption): parsing and validation of `EncryptionPolicy`
 * (podcrypt.io/v1) and StarlingX `IPsecPolicy` (starlingx.io/v1) documents into one internal form,
 * and their resolution to data-plane selectors.
 */
export * from "./types.js";
export { parsePortEntry, parsePortList, formatPort, formatPortList, MIN_PORT, MAX_PORT } from "./ports.js";
export {
  parsePolicyObject,
  parsePolicyText,
  parsePoliciesOrThrow,
  checkPolicySet,
  policyKey,
  ruleKey,
  toStored,
  fromStored,
  toManifest,
  type ParsedPolicy,
  type ParseResult,
  type PolicySource,
} from "./parse.js";
export { resolveSelectors, diffSelectors, selectorsForNode, isEmptyDiff, compareIPs } from "./resolve.js";
