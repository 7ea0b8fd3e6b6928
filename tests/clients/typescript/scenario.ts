// The generated-client scenario with openapi-typescript types and openapi-fetch, run by
// .ci/e2e/clients.sh against a live server. The types come from the committed spec
// (generated/sigil.d.ts, made by `npm run generate`); `tsc` checks this file against them,
// so a spec change that breaks a call breaks the build.
//
// Every operationId of openapi/sigil.json is called at least once through the typed client
// and its typed answer checked: the scenario reads the operationIds from the spec at the
// start, records the operation of every request (a middleware maps its verb and schema path
// to the operationId) and fails at the end if one was not called, so a new operation without
// a client call fails the check.
//
// Environment: SIGIL_URL, SIGIL_TENANT, SIGIL_ADMIN_PASSWORD (the tenant's first admin),
// SIGIL_OPERATOR_TOKEN (from `sigil operator token`), SIGIL_SPEC (default: the committed spec).

import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import createClient, { type Middleware } from "openapi-fetch";

import type { components, operations, paths } from "./generated/sigil.js";

// Every call below goes through the path and verb of one operationId; these checks fail
// to compile if the spec moves an operation to another path or verb.
type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false;
type Expect<T extends true> = T;
export type OperationIds = [
  Expect<Equal<paths["/api/v1/auth/login"]["post"], operations["login"]>>,
  Expect<Equal<paths["/api/v1/auth/login/complete"]["post"], operations["completeLogin"]>>,
  Expect<Equal<paths["/api/v1/users/me/two-factor/totp"]["post"], operations["beginTotpEnrolment"]>>,
  Expect<Equal<paths["/api/v1/users/me/two-factor/totp/confirm"]["post"], operations["confirmTotpEnrolment"]>>,
  Expect<Equal<paths["/api/v1/users/me/two-factor/totp/disable"]["post"], operations["disableTotp"]>>,
  Expect<Equal<paths["/api/v1/users/{user_id}/two-factor/reset"]["post"], operations["resetUserTwoFactor"]>>,
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
type LoginResult = components["schemas"]["LoginResult"];
type LoginChallenge = components["schemas"]["LoginChallenge"];

/** A login's session (200); a challenge (202, two-factor sign-in) is not one. */
function sessionOf(data: LoginResult | LoginChallenge): LoginResult {
  if (!("token" in data)) throw new Error("login answered a challenge, not a session");
  return data;
}

/** The TOTP code of now (RFC 6238: HMAC-SHA1, 6 digits, 30 s), as an authenticator app makes it. */
function totpCode(secret: string): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const key: number[] = [];
  for (const c of secret.replace(/=+$/, "")) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      key.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30)));
  const mac = createHmac("sha1", Buffer.from(key)).update(counter).digest();
  const at = (mac.at(-1) ?? 0) & 15;
  return String((mac.readUInt32BE(at) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

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
const operatorToken = env("SIGIL_OPERATOR_TOKEN");
const specPath = process.env.SIGIL_SPEC ?? fileURLToPath(new URL("../../../../openapi/sigil.json", import.meta.url));

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
  if (r.response.status !== status) throw new Error(`${what}: cannot go on`);
  if (r.data === undefined && status !== 204) throw new Error(`${what}: no body`);
  return r.data as T;
}

/** A typed error: the spec's Problem with the expected status and code. */
function refused(what: string, r: { error?: Problem; response: Response }, status: number, code: string): void {
  check(
    `${what} -> ${status} ${code}`,
    r.response.status === status && r.error?.status === status && r.error?.code === code,
    `got ${r.response.status}: ${JSON.stringify(r.error)}`,
  );
}

// Coverage: the operationIds of the spec, by verb and path template; every request records
// the operation it went to.
type Spec = { paths: Record<string, Record<string, { operationId?: string }>> };
const verbs = new Set(["get", "put", "post", "delete", "patch", "head", "options", "trace"]);
const operationOf = new Map<string, string>();
for (const [path, item] of Object.entries((JSON.parse(readFileSync(specPath, "utf8")) as Spec).paths)) {
  for (const [verb, op] of Object.entries(item)) {
    if (verbs.has(verb) && op.operationId) operationOf.set(`${verb.toUpperCase()} ${path}`, op.operationId);
  }
}
const called = new Set<string>();
const record: Middleware = {
  onRequest({ request, schemaPath }) {
    const operationId = operationOf.get(`${request.method.toUpperCase()} ${schemaPath}`);
    if (operationId) called.add(operationId);
    else check(`a request to an operation of the spec`, false, `${request.method} ${schemaPath}`);
  },
};

function client(token?: string) {
  const c = createClient<paths>({ baseUrl, headers: token ? { Authorization: `Bearer ${token}` } : {} });
  c.use(record);
  return c;
}
const anonymous = client();
const as = (token: string) => client(token);
const uuid = () => crypto.randomUUID();

async function main(): Promise<void> {
  const suffix = Date.now().toString(36);
  const operator = as(operatorToken);

  // --- Service: getHealth, getReadiness.
  const health = ok("getHealth", await anonymous.GET("/healthz"), 200);
  check("health is ok with a version", health.status === "ok" && health.version.length > 0, health);
  const ready = ok("getReadiness", await anonymous.GET("/readyz"), 200);
  check("ready is ok", ready.status === "ok", ready);

  // --- Auth: login, confirmPassword, getCurrentUser, updateCurrentUser.
  const login = sessionOf(
    ok("login", await anonymous.POST("/api/v1/auth/login", { body: { tenant, username: "admin", password } }), 200),
  );
  check("login answers a bearer session", login.token_type === "Bearer" && login.token.length > 0);
  const session = as(login.token);
  refused(
    "login with a wrong password",
    await anonymous.POST("/api/v1/auth/login", { body: { tenant, username: "admin", password: `wrong-${suffix}` } }),
    401,
    "invalid_credentials",
  );
  const confirmed = ok(
    "confirmPassword",
    await session.POST("/api/v1/auth/confirm-password", { body: { password } }),
    200,
  );
  check("confirmation lasts into the future", Date.parse(confirmed.confirmed_until) > Date.now());
  const mine = ok("getCurrentUser (session)", await session.GET("/api/v1/users/me"), 200);
  check("the session is the admin's", mine.user.username === "admin" && mine.role === "admin" && mine.tenant === tenant, mine);
  const adminId = mine.user.id;
  const renamed = ok(
    "updateCurrentUser",
    await session.PATCH("/api/v1/users/me", { body: { display_name: `Admin ${suffix}` } }),
    200,
  );
  check("the display name changed", renamed.display_name === `Admin ${suffix}`, renamed);

  // --- Own tenant: getMyTenant, updateTenantPolicy, listSigningKeys, rotateSigningKey, getJwks.
  const myTenant = ok("getMyTenant", await session.GET("/api/v1/tenant"), 200);
  check("the tenant is the session's", myTenant.slug === tenant && myTenant.enabled, myTenant);
  const policy = { ...myTenant.policy, max_tokens_per_user: myTenant.policy.max_tokens_per_user - 1 };
  const updated = ok("updateTenantPolicy", await session.PUT("/api/v1/tenant/policy", { body: policy }), 200);
  check("the policy changed", updated.policy.max_tokens_per_user === policy.max_tokens_per_user, updated.policy);
  const keys = ok(
    "listSigningKeys",
    await session.GET("/api/v1/tenant/signing-keys", { params: { query: { offset: 0, limit: 50 } } }),
    200,
  );
  check("one active key", keys.items.filter((k) => k.state === "active").length === 1, keys);
  const rotated = ok(
    "rotateSigningKey",
    await session.POST("/api/v1/tenant/signing-keys/rotate", { body: { overlap_secs: 3600 } }),
    201,
  );
  check("the new key is active and new", rotated.state === "active" && !keys.items.some((k) => k.kid === rotated.kid), rotated);
  const jwks = ok(
    "getJwks",
    await anonymous.GET("/api/v1/tenants/{tenant}/jwks.json", { params: { path: { tenant } } }),
    200,
  );
  const published = new Set(jwks.keys.map((k) => k.kid));
  check(
    "the JWKS publishes the new key and the retiring one",
    [rotated.kid, ...keys.items.map((k) => k.kid)].every((kid) => published.has(kid)) &&
      jwks.keys.every((k) => k.kty === "OKP" && k.crv === "Ed25519"),
    jwks,
  );
  refused(
    "getJwks of an unknown tenant",
    await anonymous.GET("/api/v1/tenants/{tenant}/jwks.json", { params: { path: { tenant: `nope-${suffix}` } } }),
    404,
    "not_found",
  );

  // --- Registry: listMethods, listPlugins, registerPlugin, getPlugin, deletePlugin.
  const methods = ok(
    "listMethods",
    await session.GET("/api/v1/methods", { params: { query: { plugin: "platform", access: "read", limit: 200 } } }),
    200,
  );
  check(
    "the platform plugin's read methods",
    methods.total > 0 &&
      methods.items.every((m) => m.plugin === "platform" && m.access === "read") &&
      methods.items.some((m) => m.id === "platform.environment.control.getenvs"),
    methods.total,
  );
  const plugins = ok("listPlugins", await session.GET("/api/v1/plugins", { params: { query: { limit: 200 } } }), 200);
  check("the platform plugin is listed", plugins.items.some((p) => p.id === "platform"), plugins.total);
  const pluginId = `tsplug${suffix}`;
  const registered = ok(
    "registerPlugin",
    await session.POST("/api/v1/plugins", {
      body: {
        manifest: {
          id: pluginId,
          name: "TypeScript scenario plugin",
          version: "1.0.0",
          methods: [
            {
              id: `${pluginId}.items.list`,
              http: { method: "GET", path: "/items" },
              access: "read",
              description: "List the items.",
            },
          ],
        },
      },
    }),
    201,
  );
  check(
    "the plugin is registered with its method",
    registered.plugin.id === pluginId && registered.plugin.methods.map((m) => m.id).join() === `${pluginId}.items.list`,
    registered.plugin,
  );
  const plugin = ok(
    "getPlugin",
    await session.GET("/api/v1/plugins/{plugin_id}", { params: { path: { plugin_id: pluginId } } }),
    200,
  );
  check("getPlugin answers the plugin", plugin.id === pluginId && plugin.version === "1.0.0", plugin);
  const removed = ok(
    "deletePlugin",
    await session.DELETE("/api/v1/plugins/{plugin_id}", { params: { path: { plugin_id: pluginId } } }),
    200,
  );
  check(
    "the plugin's methods are removed",
    removed.id === pluginId && removed.removed_methods.join() === `${pluginId}.items.list`,
    removed,
  );
  refused(
    "getPlugin after deletePlugin",
    await session.GET("/api/v1/plugins/{plugin_id}", { params: { path: { plugin_id: pluginId } } }),
    404,
    "not_found",
  );

  // --- Scope sets: createScopeSet, listScopeSets, getScopeSet, updateScopeSet.
  const setId = `client-ts-${suffix}`;
  const set = ok(
    "createScopeSet",
    await session.POST("/api/v1/scope-sets", {
      body: { id: setId, name: "TypeScript client scenario", methods: ["me.get", "tokens.*"] },
    }),
    201,
  );
  check("the set has the given id", set.id === setId, set);
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
  const gotSet = ok(
    "getScopeSet",
    await session.GET("/api/v1/scope-sets/{set_id}", { params: { path: { set_id: setId } } }),
    200,
  );
  check("getScopeSet answers its entries", gotSet.entries.join() === "me.get,tokens.*", gotSet);
  const changedSet = ok(
    "updateScopeSet",
    await session.PATCH("/api/v1/scope-sets/{set_id}", {
      params: { path: { set_id: setId } },
      body: { name: "TypeScript client scenario (renamed)" },
    }),
    200,
  );
  check("the set is renamed", changedSet.name === "TypeScript client scenario (renamed)", changedSet);

  // --- Users: createUser, listUsers, getUser, updateUser, changePassword (as the user).
  const memberName = `ts-member-${suffix}`;
  const memberPassword = `Ts-member-pass-${suffix}-1`;
  const member = ok(
    "createUser",
    await session.POST("/api/v1/users", {
      body: { username: memberName, display_name: "TypeScript member", kind: "person", role: "member", password: memberPassword },
    }),
    201,
  );
  check("the user is an active member", member.role === "member" && member.active, member);
  const users = ok(
    "listUsers",
    await session.GET("/api/v1/users", { params: { query: { q: memberName, role: "member", limit: 10 } } }),
    200,
  );
  check("listUsers finds the member", users.items.map((u) => u.id).join() === member.id, users);
  const gotUser = ok(
    "getUser",
    await session.GET("/api/v1/users/{user_id}", { params: { path: { user_id: member.id } } }),
    200,
  );
  check("getUser answers the member", gotUser.username === memberName, gotUser);
  refused(
    "getUser of an unknown id",
    await session.GET("/api/v1/users/{user_id}", { params: { path: { user_id: uuid() } } }),
    404,
    "not_found",
  );
  const changedUser = ok(
    "updateUser",
    await session.PATCH("/api/v1/users/{user_id}", {
      params: { path: { user_id: member.id } },
      body: { display_name: "TypeScript member (renamed)" },
    }),
    200,
  );
  check("the user is renamed", changedUser.display_name === "TypeScript member (renamed)", changedUser);
  const memberLogin = sessionOf(
    ok(
      "login as the member",
      await anonymous.POST("/api/v1/auth/login", { body: { tenant, username: memberName, password: memberPassword } }),
      200,
    ),
  );
  const memberSession = as(memberLogin.token);
  refused("listUsers as a member", await memberSession.GET("/api/v1/users"), 403, "user_lacks_permission");
  const newPassword = `Ts-member-pass-${suffix}-2`;
  ok(
    "changePassword",
    await memberSession.POST("/api/v1/users/me/password", {
      body: { current_password: memberPassword, new_password: newPassword },
    }),
    204,
  );
  ok(
    "login with the new password",
    await anonymous.POST("/api/v1/auth/login", { body: { tenant, username: memberName, password: newPassword } }),
    200,
  );

  // --- Tokens: createToken, getCurrentUser with it, getToken, updateToken, listTokens,
  // copyToken, regenerateToken, getTokenHygiene.
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
  const me = ok("getCurrentUser with the minted token", await as(firstSecret).GET("/api/v1/users/me"), 200);
  check("the credential is the minted token", me.token_id === tokenId && me.token_kind === "personal", me);
  check(
    "its methods are within the set",
    me.methods.includes("me.get") && me.methods.every((m) => m === "me.get" || m.startsWith("tokens.")),
    me.methods,
  );
  const byId = { params: { path: { token_id: tokenId } } };
  const gotToken = ok("getToken", await session.GET("/api/v1/tokens/{token_id}", byId), 200);
  check(
    "getToken answers the token (own session: no ceiling)",
    gotToken.id === tokenId && gotToken.owner_id === adminId && gotToken.ceiling == null,
    gotToken,
  );
  const changedToken = ok(
    "updateToken",
    await session.PATCH("/api/v1/tokens/{token_id}", { ...byId, body: { name: `ts-scenario-${suffix}-renamed` } }),
    200,
  );
  check("the token is renamed", changedToken.name === `ts-scenario-${suffix}-renamed`, changedToken);
  const tokens = ok(
    "listTokens",
    await session.GET("/api/v1/tokens", { params: { query: { q: `ts-scenario-${suffix}`, scope_set: setId, limit: 10 } } }),
    200,
  );
  check("listTokens finds the token", tokens.items.map((t) => t.id).join() === tokenId, tokens);
  const copied = ok(
    "copyToken",
    await session.POST("/api/v1/tokens/{token_id}/copy", {
      params: { path: { token_id: tokenId }, query: { name: `ts-copy-${suffix}` } },
    }),
    201,
  );
  check(
    "the copy is a new token with the same scope",
    copied.token.id !== tokenId && copied.token.scope.set === setId && copied.secret !== firstSecret,
    copied.token,
  );
  const regenerated = ok(
    "regenerateToken",
    await session.POST("/api/v1/tokens/{token_id}/regenerate", { ...byId, body: { grace_period_secs: 0 } }),
    200,
  );
  check("a new secret", regenerated.secret !== firstSecret && regenerated.token.id === tokenId);
  check("a new generation", regenerated.token.generation === minted.token.generation + 1, regenerated.token);
  refused("getCurrentUser with the old secret", await as(firstSecret).GET("/api/v1/users/me"), 401, "token_replaced");
  const again = ok("getCurrentUser with the new secret", await as(regenerated.secret).GET("/api/v1/users/me"), 200);
  check("still the same token", again.token_id === tokenId);
  // rotateCurrentToken: a login session cannot rotate itself (tokens do).
  refused(
    "rotateCurrentToken with a login session",
    await session.POST("/api/v1/tokens/current/rotate", {}),
    403,
    "session_not_rotatable",
  );
  const hygiene = ok(
    "getTokenHygiene",
    await session.GET("/api/v1/tokens/hygiene", { params: { query: { expiring_within_days: 2, unused_for_days: 30 } } }),
    200,
  );
  check(
    "the token expiring tomorrow is listed as expiring",
    hygiene.expiring.some((t) => t.id === tokenId),
    hygiene.expiring.map((t) => t.id),
  );

  // --- Verification: introspectToken, authorizeRequest (forward auth).
  const introspected = ok(
    "introspectToken",
    await session.POST("/api/v1/introspect", { body: { token: regenerated.secret, method: "me.get" } }),
    200,
  );
  check(
    "the token is active and may call me.get",
    introspected.active && introspected.token_id === tokenId && introspected.method_allowed === true,
    introspected,
  );
  const denied = ok(
    "introspectToken for a method outside the scope",
    await session.POST("/api/v1/introspect", { body: { token: regenerated.secret, method: "users.list" } }),
    200,
  );
  check(
    "inactive for that method: method_not_in_scope",
    !denied.active && denied.method_allowed === false && denied.code === "method_not_in_scope",
    denied,
  );
  const forward = ok(
    "createToken for forward auth",
    await session.POST("/api/v1/tokens", {
      body: { name: `ts-forward-${suffix}`, methods: ["platform.environment.control.getenvs"], expires_at: expiresAt },
    }),
    201,
  );
  const allowed = ok(
    "authorizeRequest",
    await as(forward.secret).GET("/api/v1/authorize", {
      params: { header: { "X-Original-Method": "GET", "X-Original-URI": "/1.0/environment/control/rest/getenvs?x=1" } },
    }),
    200,
  );
  check(
    "forward auth maps the route to the method",
    allowed.method === "platform.environment.control.getenvs" &&
      allowed.token_id === forward.token.id &&
      allowed.tenant === tenant &&
      allowed.user === "admin",
    allowed,
  );
  refused(
    "authorizeRequest for a method outside the scope",
    await as(forward.secret).GET("/api/v1/authorize", {
      params: { header: { "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/1.0/environment/control/rest/getenvinfo" } },
    }),
    403,
    "method_not_in_scope",
  );

  // --- Leaks: reportLeakedTokens revokes; reportSecretScanningMatches is refused unconfigured.
  const receipt = ok(
    "reportLeakedTokens",
    await session.POST("/api/v1/leaks", {
      body: { secrets: [forward.secret], source: "typescript-scenario", url: "https://example.com/paste" },
    }),
    202,
  );
  check("one secret received", receipt.received === 1, receipt);
  refused(
    "authorizeRequest with the leaked token",
    await as(forward.secret).GET("/api/v1/authorize", {
      params: { header: { "X-Original-URI": "/1.0/environment/control/rest/getenvs" } },
    }),
    401,
    "token_leaked",
  );
  refused(
    "reportSecretScanningMatches without partner keys",
    await anonymous.POST("/api/v1/leaks/secret-scanning", {
      params: { header: { "Github-Public-Key-Identifier": "kid", "Github-Public-Key-Signature": "c2ln" } },
      body: [{ token: forward.secret, type: "sigil_token", source: "content" }],
    }),
    403,
    "leak_reports_not_configured",
  );

  // --- Webhooks: an endpoint (a `.invalid` host: nothing is really sent), its secret once,
  // a test delivery in its log, a secret rotation, then removal.
  const hook = ok(
    "createWebhook",
    await session.POST("/api/v1/webhooks", {
      body: { url: "https://hooks.invalid/typescript", event_types: ["token.created", "token.leaked"], description: "ts" },
    }),
    201,
  );
  check("a whsec_ secret", hook.secret.startsWith("whsec_"), hook);
  const hookList = ok("listWebhooks", await session.GET("/api/v1/webhooks", {}), 200);
  check("the endpoint is listed", hookList.items.some((w) => w.id === hook.webhook.id), hookList);
  const hookPath = { params: { path: { webhook_id: hook.webhook.id } } };
  const hookGot = ok("getWebhook", await session.GET("/api/v1/webhooks/{webhook_id}", hookPath), 200);
  check("its events", hookGot.event_types.join(",") === "token.created,token.leaked", hookGot);
  const hookRotated = ok(
    "updateWebhook",
    await session.PATCH("/api/v1/webhooks/{webhook_id}", { ...hookPath, body: { rotate_secret: true, enabled: false } }),
    200,
  );
  check("a new secret", !!hookRotated.secret && hookRotated.secret !== hook.secret && !hookRotated.webhook.enabled, hookRotated);
  const hookQueued = ok("sendTestWebhook", await session.POST("/api/v1/webhooks/{webhook_id}/test", hookPath), 202);
  check("a pending test delivery", hookQueued.event_type === "webhook.test" && hookQueued.status === "pending", hookQueued);
  const hookLog = ok(
    "listWebhookDeliveries",
    await session.GET("/api/v1/webhooks/{webhook_id}/deliveries", hookPath),
    200,
  );
  check("the delivery is in the log", hookLog.items.some((d) => d.id === hookQueued.id), hookLog);
  ok("deleteWebhook", await session.DELETE("/api/v1/webhooks/{webhook_id}", hookPath), 204);

  // --- Clean-up of tokens: deleteTokens (bulk), deleteToken, deleteScopeSet.
  const bulk = ok(
    "deleteTokens",
    await session.POST("/api/v1/tokens/bulk-delete", { body: { ids: [copied.token.id, forward.token.id] } }),
    200,
  );
  check(
    "both tokens deleted",
    bulk.count === 2 && bulk.removed.map((r) => r.id).sort().join() === [copied.token.id, forward.token.id].sort().join(),
    bulk,
  );
  ok("deleteToken", await session.DELETE("/api/v1/tokens/{token_id}", byId), 204);
  refused("getCurrentUser after deleteToken", await as(regenerated.secret).GET("/api/v1/users/me"), 401, "token_unknown");
  refused("getToken after deleteToken", await session.GET("/api/v1/tokens/{token_id}", byId), 404, "not_found");
  ok(
    "deleteScopeSet",
    await session.DELETE("/api/v1/scope-sets/{set_id}", { params: { path: { set_id: setId } } }),
    204,
  );
  refused(
    "getScopeSet after deleteScopeSet",
    await session.GET("/api/v1/scope-sets/{set_id}", { params: { path: { set_id: setId } } }),
    404,
    "not_found",
  );

  // --- Two-factor sign-in (as the member): beginTotpEnrolment, confirmTotpEnrolment, a login
  // challenge, completeLogin, disableTotp, resetUserTwoFactor.
  const tfSession = as(
    sessionOf(
      ok(
        "login as the member (two-factor)",
        await anonymous.POST("/api/v1/auth/login", { body: { tenant, username: memberName, password: newPassword } }),
        200,
      ),
    ).token,
  );
  const enrolment = ok("beginTotpEnrolment", await tfSession.POST("/api/v1/users/me/two-factor/totp"), 200);
  check(
    "the enrolment carries an otpauth URI and a QR code",
    enrolment.otpauth_uri.startsWith("otpauth://totp/") && enrolment.qr_code_svg.includes("<svg"),
    enrolment.otpauth_uri,
  );
  const enabled = ok(
    "confirmTotpEnrolment",
    await tfSession.POST("/api/v1/users/me/two-factor/totp/confirm", {
      body: { code: totpCode(enrolment.secret), password: newPassword },
    }),
    200,
  );
  check("ten recovery codes", enabled.recovery_codes.length === 10, enabled.recovery_codes);
  const challenge = ok(
    "login answers a challenge",
    await anonymous.POST("/api/v1/auth/login", { body: { tenant, username: memberName, password: newPassword } }),
    202,
  );
  if (!("challenge" in challenge)) throw new Error("login answered a session despite two-factor sign-in");
  refused(
    "completeLogin with a made-up challenge",
    await anonymous.POST("/api/v1/auth/login/complete", { body: { challenge: "made-up", code: "123456" } }),
    401,
    "challenge_invalid",
  );
  const completed = sessionOf(
    ok(
      "completeLogin",
      await anonymous.POST("/api/v1/auth/login/complete", {
        body: { challenge: challenge.challenge, recovery_code: enabled.recovery_codes[0] },
      }),
      200,
    ),
  );
  const off = ok(
    "disableTotp",
    await as(completed.token).POST("/api/v1/users/me/two-factor/totp/disable", {
      body: { password: newPassword, recovery_code: enabled.recovery_codes[1] },
    }),
    200,
  );
  check("two-factor sign-in is off", !off.two_factor, off);
  const reenrol = ok("beginTotpEnrolment again", await tfSession.POST("/api/v1/users/me/two-factor/totp"), 200);
  ok(
    "confirmTotpEnrolment again",
    await tfSession.POST("/api/v1/users/me/two-factor/totp/confirm", {
      body: { code: totpCode(reenrol.secret), password: newPassword },
    }),
    200,
  );
  ok("confirmPassword before the reset", await session.POST("/api/v1/auth/confirm-password", { body: { password } }), 200);
  const reset = ok(
    "resetUserTwoFactor",
    await session.POST("/api/v1/users/{user_id}/two-factor/reset", { params: { path: { user_id: member.id } } }),
    200,
  );
  check("the reset turned it off", !reset.two_factor, reset);

  // --- Users clean-up: deactivateUser, deleteUser.
  const byUser = { params: { path: { user_id: member.id } } };
  const deactivated = ok("deactivateUser", await session.POST("/api/v1/users/{user_id}/deactivate", byUser), 200);
  check("the user is inactive", !deactivated.active, deactivated);
  ok("deleteUser", await session.DELETE("/api/v1/users/{user_id}", byUser), 204);
  refused("getUser after deleteUser", await session.GET("/api/v1/users/{user_id}", byUser), 404, "not_found");

  // --- Audit: listAuditEvents.
  const events = ok(
    "listAuditEvents",
    await session.GET("/api/v1/audit-events", {
      params: { query: { action: "scope_set.create", target_id: setId, offset: 0, limit: 1 } },
    }),
    200,
  );
  check(
    "the audit page has the envelope",
    events.total === 1 && events.offset === 0 && events.limit === 1 && events.items.length === 1,
    events,
  );

  // --- Operator: createTenant, listTenants, getTenant, updateTenant, disableTenant.
  refused("listTenants with a tenant session", await session.GET("/api/v1/tenants"), 403, "operator_only");
  const slug = `ts-${suffix}`;
  const created = ok(
    "createTenant",
    await operator.POST("/api/v1/tenants", { body: { slug, name: "TypeScript tenant" } }),
    201,
  );
  check(
    "the tenant is created with its first admin",
    created.tenant.slug === slug && created.tenant.enabled && created.admin_username.length > 0 && created.admin_password.length > 0,
    created.tenant,
  );
  const tenants = ok(
    "listTenants",
    await operator.GET("/api/v1/tenants", { params: { query: { q: slug, limit: 10 } } }),
    200,
  );
  check("listTenants finds it", tenants.items.map((t) => t.id).join() === created.tenant.id, tenants);
  const byTenant = { params: { path: { tenant_id: created.tenant.id } } };
  const gotTenant = ok("getTenant", await operator.GET("/api/v1/tenants/{tenant_id}", byTenant), 200);
  check("getTenant answers it", gotTenant.slug === slug, gotTenant);
  const renamedTenant = ok(
    "updateTenant",
    await operator.PATCH("/api/v1/tenants/{tenant_id}", { ...byTenant, body: { name: "TypeScript tenant (renamed)" } }),
    200,
  );
  check("the tenant is renamed", renamedTenant.name === "TypeScript tenant (renamed)", renamedTenant);
  const disabled = ok("disableTenant", await operator.POST("/api/v1/tenants/{tenant_id}/disable", byTenant), 200);
  check("the tenant is disabled", !disabled.enabled, disabled);
  refused(
    "login to the disabled tenant",
    await anonymous.POST("/api/v1/auth/login", {
      body: { tenant: slug, username: created.admin_username, password: created.admin_password },
    }),
    401,
    "tenant_disabled",
  );
}

function coverage(): void {
  const operationIds = [...new Set(operationOf.values())].sort();
  const notCalled = operationIds.filter((o) => !called.has(o));
  check(
    `every operationId of the spec was called (${operationIds.length - notCalled.length}/${operationIds.length})`,
    notCalled.length === 0,
    `not called: ${notCalled.join(", ")}`,
  );
}

try {
  await main();
} catch (e) {
  failed += 1;
  console.log(`FAIL  ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
}
coverage();
console.log(`typescript client: ${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
