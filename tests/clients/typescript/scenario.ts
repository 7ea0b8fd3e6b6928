// The generated-client scenario (issue 11) with openapi-typescript types and openapi-fetch,
// run by .ci/e2e/clients.sh against a live server. The types come from the committed spec
// (generated/sigil.d.ts, made by `npm run generate`); `tsc` checks this file against them,
// so a spec change that breaks a call breaks the build.
//
// Environment: SIGIL_URL, SIGIL_TENANT, SIGIL_ADMIN_PASSWORD (the tenant's first admin).

import createClient from "openapi-fetch";

import type { components, operations, paths } from "./generated/sigil.js";

// Every call below goes through the path and verb of one operationId; these checks fail
// to compile if the spec moves an operation to another path or verb.
type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false;
type Expect<T extends true> = T;
export type OperationIds = [
  Expect<Equal<paths["/api/v1/auth/login"]["post"], operations["login"]>>,
  Expect<Equal<paths["/api/v1/auth/confirm-password"]["post"], operations["confirmPassword"]>>,
  Expect<Equal<paths["/api/v1/scope-sets"]["post"], operations["createScopeSet"]>>,
  Expect<Equal<paths["/api/v1/scope-sets"]["get"], operations["listScopeSets"]>>,
  Expect<Equal<paths["/api/v1/audit-events"]["get"], operations["listAuditEvents"]>>,
  Expect<Equal<paths["/api/v1/tokens"]["post"], operations["createToken"]>>,
  Expect<Equal<paths["/api/v1/users/me"]["get"], operations["getCurrentUser"]>>,
  Expect<Equal<paths["/api/v1/tokens/{token_id}/regenerate"]["post"], operations["regenerateToken"]>>,
  Expect<Equal<paths["/api/v1/tokens/{token_id}"]["delete"], operations["deleteToken"]>>,
  Expect<Equal<paths["/api/v1/scope-sets/{set_id}"]["delete"], operations["deleteScopeSet"]>>,
];

type Problem = components["schemas"]["Problem"];

// Every list answers one envelope: these fail to compile if a list's model loses a field.
type Envelope = { items: unknown[]; total: number; offset: number; limit: number };
export type ListEnvelopes = [
  Expect<components["schemas"]["ScopeSetList"] extends Envelope ? true : false>,
  Expect<components["schemas"]["PluginList"] extends Envelope ? true : false>,
  Expect<components["schemas"]["SigningKeyList"] extends Envelope ? true : false>,
  Expect<components["schemas"]["MethodList"] extends Envelope ? true : false>,
  Expect<components["schemas"]["TokenList"] extends Envelope ? true : false>,
  Expect<components["schemas"]["UserList"] extends Envelope ? true : false>,
  Expect<components["schemas"]["TenantList"] extends Envelope ? true : false>,
  Expect<components["schemas"]["AuditPage"] extends Envelope ? true : false>,
];

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const baseUrl = env("SIGIL_URL");
const tenant = env("SIGIL_TENANT");
const password = env("SIGIL_ADMIN_PASSWORD");

let passed = 0;
let failed = 0;

function check(what: string, ok: boolean, detail: unknown = ""): void {
  if (ok) {
    passed += 1;
    console.log(`ok    ${what}`);
  } else {
    failed += 1;
    console.log(`FAIL  ${what} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
}

/** The body of a 2xx answer, or a thrown error naming the step. */
function ok<T>(what: string, r: { data?: T; error?: unknown; response: Response }, status: number): T {
  check(`${what} -> ${status}`, r.response.status === status, `got ${r.response.status}: ${JSON.stringify(r.error)}`);
  if (r.data === undefined && status !== 204) throw new Error(`${what}: no body`);
  return r.data as T;
}

function refused(what: string, r: { error?: Problem; response: Response }, status: number, code: string): void {
  check(
    `${what} -> ${status} ${code}`,
    r.response.status === status && r.error?.code === code,
    `got ${r.response.status}: ${JSON.stringify(r.error)}`,
  );
}

const anonymous = createClient<paths>({ baseUrl });
const as = (token: string) => createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

async function main(): Promise<void> {
  const suffix = Date.now().toString(36);

  // login, then confirmPassword so token changes are allowed.
  const login = ok(
    "login",
    await anonymous.POST("/api/v1/auth/login", { body: { tenant, username: "admin", password } }),
    200,
  );
  check("login answers a bearer session", login.token_type === "Bearer" && login.token.length > 0);
  const session = as(login.token);
  const confirmed = ok(
    "confirmPassword",
    await session.POST("/api/v1/auth/confirm-password", { body: { password } }),
    200,
  );
  check("confirmation lasts into the future", Date.parse(confirmed.confirmed_until) > Date.now());

  // createScopeSet with the methods the minted token gets.
  const setId = `client-ts-${suffix}`;
  const set = ok(
    "createScopeSet",
    await session.POST("/api/v1/scope-sets", {
      body: { id: setId, name: "TypeScript client scenario", methods: ["me.get", "tokens.*"] },
    }),
    201,
  );
  check("the set has the given id", set.id === setId, set);

  // listScopeSets and listAuditEvents answer the one list envelope.
  const sets = ok(
    "listScopeSets",
    await session.GET("/api/v1/scope-sets", { params: { query: { q: setId, offset: 0, limit: 10 } } }),
    200,
  );
  check(
    "the envelope pages the sets",
    sets.total === 1 && sets.offset === 0 && sets.limit === 10 && sets.items.map((s) => s.id).join() === setId,
    sets,
  );
  const events = ok(
    "listAuditEvents",
    await session.GET("/api/v1/audit-events", {
      params: { query: { action: "scope_set.create", target_id: setId, offset: 0, limit: 1 } },
    }),
    200,
  );
  check(
    "the audit page has the envelope too",
    events.total === 1 && events.offset === 0 && events.limit === 1 && events.items.length === 1,
    events,
  );

  // createToken with that set.
  const expiresAt = new Date(Date.now() + 24 * 3600 * 1000).toISOString();
  const minted = ok(
    "createToken",
    await session.POST("/api/v1/tokens", {
      body: { name: `ts-scenario-${suffix}`, scope_set: setId, expires_at: expiresAt },
    }),
    201,
  );
  check("the token uses the set", minted.token.scope.set === setId, minted.token.scope);
  const tokenId = minted.token.id;
  const firstSecret = minted.secret;

  // getCurrentUser with the minted token.
  const me = ok("getCurrentUser with the minted token", await as(firstSecret).GET("/api/v1/users/me"), 200);
  check("the credential is the minted token", me.token_id === tokenId && me.token_kind === "personal", me);
  check(
    "its methods are within the set",
    me.methods.includes("me.get") && me.methods.every((m) => m === "me.get" || m.startsWith("tokens.")),
    me.methods,
  );

  // regenerateToken: the old secret is refused, the new one works.
  const regenerated = ok(
    "regenerateToken",
    await session.POST("/api/v1/tokens/{token_id}/regenerate", { params: { path: { token_id: tokenId } } }),
    200,
  );
  check("a new secret", regenerated.secret !== firstSecret && regenerated.token.id === tokenId);
  check("a new generation", regenerated.token.generation === minted.token.generation + 1, regenerated.token);
  refused("getCurrentUser with the old secret", await as(firstSecret).GET("/api/v1/users/me"), 401, "token_replaced");
  const again = ok("getCurrentUser with the new secret", await as(regenerated.secret).GET("/api/v1/users/me"), 200);
  check("still the same token", again.token_id === tokenId);

  // deleteToken: the secret stops working.
  ok(
    "deleteToken",
    await session.DELETE("/api/v1/tokens/{token_id}", { params: { path: { token_id: tokenId } } }),
    204,
  );
  refused("getCurrentUser after deleteToken", await as(regenerated.secret).GET("/api/v1/users/me"), 401, "token_unknown");

  ok(
    "deleteScopeSet (clean-up)",
    await session.DELETE("/api/v1/scope-sets/{set_id}", { params: { path: { set_id: setId } } }),
    204,
  );
}

try {
  await main();
} catch (e) {
  failed += 1;
  console.log(`FAIL  ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
}
console.log(`typescript client: ${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
