import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { installPodcrypt, SERVICE_ACCOUNT_USERS } from "./rbac.js";
import type { KubeApiServer } from "./server.js";

/** The RBAC authorizer, with the generated roles of both components installed through the API. */
describe("kube-apiserver RBAC", () => {
  let s: KubeApiServer;
  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${s.url}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        "Content-Type": method === "PATCH" ? "application/merge-patch+json" : "application/json",
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return res.status;
  };
  before(async () => {
    s = await installPodcrypt({ tokens: { controller: "c", agent: "a", admin: "root" } });
    await call("root", "POST", "/apis/starlingx.io/v1/ipsecpolicies", {
      metadata: { name: "p" },
      spec: { policies: [{ name: "r", servicename: "s", servicens: "n", serviceports: "tcp/1" }] },
    });
  });
  after(async () => {
    await s.close();
  });

  it("cluster roles grant everywhere; roles only in their namespace; subresources are their own", async () => {
    assert.equal(await call("a", "GET", "/api/v1/nodes"), 200);
    assert.equal(
      await call("a", "GET", "/apis/coordination.k8s.io/v1/namespaces/podcrypt-system/leases"),
      200,
    );
    assert.equal(
      await call("a", "GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases"),
      403,
      "leases only in podcrypt's namespace",
    );
    assert.equal(await call("a", "GET", "/apis/coordination.k8s.io/v1/leases"), 403, "not across namespaces");
    assert.equal(
      await call("a", "PATCH", "/apis/starlingx.io/v1/ipsecpolicies/p/status", { status: {} }),
      403,
    );
    assert.equal(
      await call("c", "PATCH", "/apis/starlingx.io/v1/ipsecpolicies/p/status", { status: {} }),
      200,
    );
    assert.equal(
      await call("c", "PUT", "/apis/starlingx.io/v1/ipsecpolicies/p", {}),
      403,
      "status, not the spec",
    );
    assert.equal(
      await call("c", "GET", "/api/v1/namespaces/podcrypt-system/secrets"),
      404,
      "served only if the type exists",
    );
    assert.equal(await call("nobody", "GET", "/api/v1/nodes"), 401);
  });

  it("every decision is in the request log, with the service account's user", () => {
    const denied = s.requests.filter((r) => r.code === 403);
    assert.deepEqual(
      denied.map(
        (r) =>
          `${r.user === SERVICE_ACCOUNT_USERS.agent ? "agent" : "controller"} ${r.verb} ${r.resource}${r.subresource ? `/${r.subresource}` : ""} ${r.namespace}`,
      ),
      [
        "agent list leases default",
        "agent list leases ",
        "agent patch ipsecpolicies/status ",
        "controller update ipsecpolicies ",
      ],
    );
  });
});
