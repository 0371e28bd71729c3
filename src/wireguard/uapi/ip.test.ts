import assert from "node:assert/strict";
import { test } from "node:test";
import { parseIp } from "../ip.js";
import { formatEndpoint, formatIp, formatPrefix, parseEndpoint, parsePrefix } from "./ip.js";

test("IP addresses format as Go's netip does", () => {
  const cases: Array<[string, string | undefined]> = [
    ["10.0.0.1", "10.0.0.1"],
    ["255.255.255.255", "255.255.255.255"],
    ["010.0.0.1", undefined],
    ["10.0.0", undefined],
    ["10.0.0.256", undefined],
    ["fd00:0:0::1", "fd00::1"],
    ["FD00::A", "fd00::a"],
    ["::", "::"],
    ["::1", "::1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["1:0:0:2:0:0:3:4", "1::2:0:0:3:4"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ["1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8"],
    ["::ffff:1.2.3.4", "::ffff:1.2.3.4"],
    ["::ffff:102:304", "::ffff:1.2.3.4"],
    ["1::2::3", undefined],
    ["1:2:3:4:5:6:7:8:9", undefined],
    ["1:2:3:4:5:6:7::8", undefined],
    ["12345::", undefined],
    ["fe80::1%lo", undefined],
    // an embedded IPv4 address only ends an IPv6 one (RFC 4291 section 2.2, form 3)
    ["1.2.3.4::", undefined],
    ["1.2.3.4::1", undefined],
    ["1:1.2.3.4::", undefined],
  ];
  for (const [input, want] of cases) {
    const bytes = parseIp(input);
    assert.equal(bytes === undefined ? undefined : formatIp(bytes), want, input);
  }
});

test("prefixes need a length and print masked", () => {
  const cases: Array<[string, string | undefined]> = [
    ["10.0.0.1/24", "10.0.0.0/24"],
    ["10.1.2.3/32", "10.1.2.3/32"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["10.0.0.1/33", undefined],
    ["10.0.0.1", undefined],
    ["10.0.0.1/", undefined],
    ["10.0.0.1/08", undefined],
    ["fd00:0:0::1/64", "fd00::/64"],
    ["fd00::1:2/127", "fd00::1:2/127"],
    ["fd00::1:3/127", "fd00::1:2/127"],
    ["::/0", "::/0"],
    ["fd00::/129", undefined],
  ];
  for (const [input, want] of cases) {
    const p = parsePrefix(input);
    assert.equal(p === undefined ? undefined : formatPrefix(p), want, input);
  }
});

test("endpoints: IPv4, bracketed IPv6, zones dropped, no host names", () => {
  const cases: Array<[string, string | undefined]> = [
    ["1.2.3.4:51820", "1.2.3.4:51820"],
    ["1.2.3.4:0", "1.2.3.4:0"],
    ["[fd00::1]:5", "[fd00::1]:5"],
    ["[fd00:0::1]:65535", "[fd00::1]:65535"],
    ["[fe80::1%lo]:7", "[fe80::1]:7"],
    ["fd00::1:5", undefined],
    ["[fd00::1]5", undefined],
    ["1.2.3.4:65536", undefined],
    ["1.2.3.4", undefined],
    ["example.com:51820", undefined],
    ["[1.2.3.4]:5", undefined],
    ["1.2.3.4:-1", undefined],
  ];
  for (const [input, want] of cases) {
    const ep = parseEndpoint(input);
    assert.equal(ep === undefined ? undefined : formatEndpoint(ep), want, input);
  }
});
