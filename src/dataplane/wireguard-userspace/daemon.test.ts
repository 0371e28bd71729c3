import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { handoverFailure } from "./daemon.js";

const schema = z.object({
  ok: z.literal(true),
  handover: z.object({ device: z.object({ port: z.number() }) }),
});

function failure(answer: unknown): string {
  const r = schema.safeParse(answer);
  assert.ok(!r.success, "the answer does not match");
  return handoverFailure(answer, r.error);
}

describe("handoverFailure", () => {
  it("names a refusal by its own message", () => {
    assert.equal(failure({ ok: false, error: "a handover is in progress" }), "a handover is in progress");
  });

  it("never repeats the values of a malformed answer, which may hold the device's keys", () => {
    const secret = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const message = failure({ ok: true, handover: { device: { privateKey: secret, port: "51820" } } });
    assert.ok(!message.includes(secret), message);
    assert.ok(!message.includes("51820"), message);
    assert.match(message, /handover\.device\.port/);
  });

  it("names the whole answer when it is not an object", () => {
    assert.match(failure("garbage"), /\(answer\)/);
  });
});
