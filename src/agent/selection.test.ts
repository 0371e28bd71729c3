import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Selector } from "../policy/types.js";
import { selectionHash } from "../protocol/index.js";
import { SelectionTracker } from "./selection.js";

const sel = (node: string, protocol: Selector["protocol"], port: number, ...podIPs: string[]): Selector => ({
  node,
  protocol,
  port,
  podIPs,
  sources: ["IPsecPolicy/x#r"],
});

/** `node proto/port ip` lines of a selector list, for readable comparisons. */
const lines = (list: readonly Selector[]): string[] =>
  list.flatMap((s) => s.podIPs.map((ip) => `${s.node} ${s.protocol}/${s.port} ${ip}`)).sort();

const DNS = [sel("n2", "udp", 53, "10.0.2.5"), sel("n2", "tcp", 53, "10.0.2.5")];
const DNS_TCP_ONLY = [sel("n2", "tcp", 53, "10.0.2.5")];

describe("selectionHash", () => {
  it("depends on what is selected, not on order, grouping or why", () => {
    const a = [sel("n2", "udp", 53, "10.0.2.5", "10.0.2.6")];
    const b = [{ ...sel("n2", "udp", 53, "10.0.2.6"), sources: [] }, sel("n2", "udp", 53, "10.0.2.5")];
    assert.equal(selectionHash(a), selectionHash(b));
    assert.match(selectionHash(a), /^[0-9a-f]{16}$/);
    assert.notEqual(selectionHash(a), selectionHash([sel("n2", "udp", 54, "10.0.2.5", "10.0.2.6")]));
    assert.notEqual(selectionHash([]), selectionHash(a));
  });
});

describe("SelectionTracker: a change spreads make before break", () => {
  it("a fresh node encrypts at once but expects encryption only once everyone has the set", () => {
    const t = new SelectionTracker();
    const first = t.update(DNS, false);
    assert.deepEqual(lines(first.encrypt), lines(DNS));
    assert.deepEqual(first.expectEncrypted, []);
    assert.equal(t.settled, false);
    const settled = t.update(DNS, true);
    assert.deepEqual(lines(settled.expectEncrypted), lines(DNS));
    assert.equal(t.settled, true);
  });

  it("a removed port stays encrypted, and stops being expected at once, until everyone has the change", () => {
    const t = new SelectionTracker();
    t.update(DNS, true);
    const during = t.update(DNS_TCP_ONLY, false);
    assert.deepEqual(lines(during.encrypt), lines(DNS), "udp/53 still sent encrypted");
    assert.deepEqual(lines(during.expectEncrypted), lines(DNS_TCP_ONLY), "udp/53 plaintext accepted");
    const after = t.update(DNS_TCP_ONLY, true);
    assert.deepEqual(lines(after.encrypt), lines(DNS_TCP_ONLY));
    assert.deepEqual(lines(after.expectEncrypted), lines(DNS_TCP_ONLY));
  });

  it("changes that overlap before settling accumulate: union encrypted, intersection expected", () => {
    const t = new SelectionTracker();
    t.update(DNS, true);
    const web = [sel("n1", "tcp", 80, "10.0.1.9")];
    t.update([...DNS, ...web], false); // web added
    const both = t.update(web, false); // dns removed before the first change settled
    assert.deepEqual(lines(both.encrypt), lines([...DNS, ...web]));
    assert.deepEqual(both.expectEncrypted, []);
    // Back to a set seen before: nothing is narrowed until it settles.
    const again = t.update([...DNS, ...web], false);
    assert.deepEqual(lines(again.encrypt), lines([...DNS, ...web]));
    assert.deepEqual(again.expectEncrypted, []);
    assert.deepEqual(lines(t.update(web, true).expectEncrypted), lines(web));
  });

  it("an endpoint added to a selected port is a change like any other", () => {
    const t = new SelectionTracker();
    t.update(DNS, true);
    const more = [sel("n2", "udp", 53, "10.0.2.5", "10.0.3.7"), sel("n2", "tcp", 53, "10.0.2.5")];
    const during = t.update(more, false);
    assert.ok(lines(during.encrypt).includes("n2 udp/53 10.0.3.7"));
    assert.ok(!lines(during.expectEncrypted).includes("n2 udp/53 10.0.3.7"));
  });
});
