/**
 * The negative control's port of `verify --via-agents`: a datagram straight to a peer's underlay
 * address, outside every tunnel (discard, RFC 863; nothing of podcrypt listens there, and the
 * datagram needs no answer). It lives here, not beside the verify runner, because host encryption
 * (desired.ts) keeps this port out of the tunnels, and the agent's folder must not import the
 * runner's (which reaches the local cluster's probe tooling).
 */
export const CONTROL_PORT = 9;
