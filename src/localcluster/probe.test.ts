import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { describe, it } from "node:test";
import { missingRuns, probe, probePayload } from "./probe.js";

describe("probe", () => {
  it("finds the runs of datagrams that never came back", () => {
    const cases: Array<[number[], Array<[number, number]>]> = [
      [[1, 1, 1], []],
      [[0, 0, 0], [[0, 2]]],
      [[1, 0, 1], [[1, 1]]],
      [
        [0, 1, 1, 0, 0, 1, 0],
        [
          [0, 0],
          [3, 4],
          [6, 6],
        ],
      ],
      [[], []],
    ];
    for (const [seen, runs] of cases) assert.deepEqual(missingRuns(Uint8Array.from(seen)), runs, `${seen}`);
  });

  it("puts the marker first, so a capture shows it whatever the sequence number", () => {
    assert.equal(probePayload("PODCRYPT-VERIFY-ab-node-1-node-2", 42), "PODCRYPT-VERIFY-ab-node-1-node-2#42");
    const full = probePayload("M", 7, 1410);
    assert.equal(full.length, 1410);
    assert.match(full, /^M#7\.+$/);
  });

  it("stops sending when told and reports only what it sent, echoed or lost", async (t) => {
    // An echo service on the loopback that answers only the first `answer` datagrams.
    const echo = createSocket("udp4");
    t.after(() => echo.close());
    let answer = 3;
    echo.on("message", (msg, from) => {
      if (answer-- > 0) echo.send(msg, from.port, from.address);
    });
    await new Promise<void>((r) => echo.bind(0, "127.0.0.1", r));
    const stop = new AbortController();
    // 1000 datagrams over 100 s, stopped after about 0.5 s: about 5 go out.
    setTimeout(() => stop.abort(), 500);
    const marker = "M";
    const target = { protocol: "udp" as const, ip: "127.0.0.1", port: echo.address().port, marker };
    let sending = 0;
    const r = (await probe([target], 1000, 100, { stop: stop.signal, sending: () => sending++ }))[marker]!;
    assert.equal(sending, 1, "told once that its messages are on their way");
    assert.ok(r.sent >= 4 && r.sent <= 10, `sent ${r.sent}`);
    assert.equal(r.echoed, 3);
    assert.deepEqual(r.lost, [[3, r.sent - 1]], "the unsent are not counted as lost");
  });

  it("sends its whole count when not stopped", async () => {
    const target = { protocol: "udp" as const, ip: "127.0.0.1", port: 9, marker: "N" };
    const r = (await probe([target], 4, 0))["N"]!;
    assert.equal(r.sent, 4);
    assert.deepEqual(r.lost, [[0, 3]]);
  });
});
