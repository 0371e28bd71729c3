import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isValidationError } from "../errors/index.js";
import { formatPortList, parsePortEntry, parsePortList } from "./ports.js";

describe("parsePortList", () => {
  const valid: [string | string[], string][] = [
    ["udp/53,tcp/53,tcp/9153", "udp/53,tcp/53,tcp/9153"],
    ["tcp/9402", "tcp/9402"],
    [" UDP/53 , Tcp/80 ", "udp/53,tcp/80"],
    ["sctp/1,tcp/65535", "sctp/1,tcp/65535"],
    [["tcp/80", "udp/53"], "tcp/80,udp/53"],
    ["tcp/080", "tcp/80"],
  ];
  for (const [input, want] of valid)
    it(`accepts ${JSON.stringify(input)}`, () => {
      assert.equal(formatPortList(parsePortList(input, "f")), want);
    });

  const invalid: [string | string[], RegExp][] = [
    ["", /must list at least one port/],
    [[], /must list at least one port/],
    ["tcp/53,", /empty entry/],
    ["tcp/53,,udp/53", /empty entry/],
    ["53", /"53" has no protocol: write tcp\/53/],
    ["tcp:53", /is not proto\/port/],
    ["tcp/", /"" in "tcp\/" is not a port number/],
    ["tcp/http", /"http" in "tcp\/http" is not a port number/],
    ["tcp/-1", /is not a port number/],
    ["tcp/0", /^f: port 0 is out of range 1-65535$/],
    ["udp/65536", /^f: port 65536 is out of range 1-65535$/],
    ["tcp/99999999999", /out of range/],
    ["quic/443", /unknown protocol "quic" in "quic\/443"; use tcp, udp or sctp/],
    ["icmp/8", /protocol "icmp" has no ports/],
    ["tcp/8000-8080", /port ranges such as "tcp\/8000-8080" are not supported/],
    ["tcp/53,TCP/53", /duplicate port tcp\/53/],
  ];
  for (const [input, want] of invalid)
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parsePortList(input, "f"),
        (e: unknown) => isValidationError(e) && e.field === "f" && want.test(e.message),
      );
    });
});

describe("parsePortEntry", () => {
  it("lower-cases the protocol", () => {
    assert.deepEqual(parsePortEntry("SCTP/2905", "x"), { protocol: "sctp", port: 2905 });
  });
});
