import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { missingRuns, probePayload } from "./probe.js";

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
});
