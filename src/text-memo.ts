/**
 * A pure function of a string, worked out once per distinct string: for parsing that hot paths
 * repeat on the same few texts (CIDRs every pass, endpoints every heartbeat). The results are
 * forgotten all at once when more than `limit` are kept, so texts that only ever change (garbage
 * from a peer, endpoints of nodes long gone) cannot grow it for good.
 */
export function textMemo<T>(compute: (text: string) => T, limit = 100_000): (text: string) => T {
  const results = new Map<string, T>();
  return (text) => {
    if (results.has(text)) return results.get(text) as T;
    const r = compute(text);
    if (results.size >= limit) results.clear();
    results.set(text, r);
    return r;
  };
}
