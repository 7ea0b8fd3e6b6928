//! Issue 15: the authorization matrix. Every operation of the published spec
//! (`openapi/sigil.json`) is called by every kind of caller, and the answer is compared
//! with a declarative table: one row per operationId, one expected outcome per caller.
//!
//! The table follows the rules of the rights model:
//! - operator methods (`tenants.*`) answer `operator_only` to every tenant credential; the
//!   operator token may also call the plugin, method-list and audit operations, and gets
//!   `tenant_only` everywhere else;
//! - a method outside a credential's scope is `method_not_in_scope`, one inside the scope
//!   but outside the owner's role (admin-only, manager-only) is `user_lacks_permission`;
//! - token changes need a password-confirmed login session (every session here is
//!   confirmed); only a login session can be confirmed (`not_a_session`);
//! - someone else's object named in the path answers 404 (another tenant's objects, and
//!   other users' tokens to a member); an object named in a request body answers as an
//!   unknown one does (`unknown_owner`, `unknown_tokens`), so nothing tells the two apart;
//! - a deactivated owner answers 401 `user_deactivated`, an owner without `api_access`
//!   403 `api_access_denied`, no credential 401 `credential_missing`; public operations
//!   ignore the credential;
//! - a token never carries more than the credential that creates, copies, changes or
//!   regenerates it: a token manager may read and delete an admin's token but not mint,
//!   copy, change or regenerate one (`scope_exceeds_credential`,
//!   `token_exceeds_credential`); deleting is no escalation.
//!
//! Every call is meaningful: objects acted on belong to someone else than the caller
//! (a second admin of tenant A owns the tokens; another tenant's admin acts on tenant A's
//! objects), and destructive calls get a fresh victim each. A few extra checks cover what
//! one cell per operation cannot: the system user, a token manager's reach over a
//! member's tokens, and token changes from a session that has not confirmed its password.
//! On failure, one report lists every disagreeing cell.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Resp, Tenant, TestServer};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/sigil.json");

/// The kinds of caller, in the column order of [`TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    /// The platform operator's token.
    Operator,
    /// Tenant A's admin, login session, password confirmed.
    Admin,
    /// A personal token of tenant A's admin with the `read-only` scope set.
    ReadOnly,
    /// A token manager of tenant A, login session, confirmed.
    TokenManager,
    /// A member of tenant A, login session, confirmed.
    Member,
    /// An application token (`methods: ["*"]`) of an api user (role member) of tenant A.
    Api,
    /// A personal token of a member of tenant A, minted before the member was deactivated.
    Deactivated,
    /// A personal token of a member of tenant A, minted before api_access was removed.
    NoApiAccess,
    /// Tenant B's admin (login session, confirmed) acting on tenant A's objects.
    OtherTenant,
    /// No credential at all.
    Anonymous,
    /// The system user of tenant A: it can neither log in nor own a token, so its column
    /// uses an impossible credential (a session written for it behind the API's back).
    System,
}

const CALLERS: [Caller; 11] = [
    Caller::Operator,
    Caller::Admin,
    Caller::ReadOnly,
    Caller::TokenManager,
    Caller::Member,
    Caller::Api,
    Caller::Deactivated,
    Caller::NoApiAccess,
    Caller::OtherTenant,
    Caller::Anonymous,
    Caller::System,
];

impl Caller {
    fn label(self) -> &'static str {
        match self {
            Caller::Operator => "operator",
            Caller::Admin => "admin",
            Caller::ReadOnly => "read-only",
            Caller::TokenManager => "token-manager",
            Caller::Member => "member",
            Caller::Api => "api",
            Caller::Deactivated => "deactivated",
            Caller::NoApiAccess => "no-api-access",
            Caller::OtherTenant => "other-tenant",
            Caller::Anonymous => "anonymous",
            Caller::System => "system",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Caller::Operator => "Opr",
            Caller::Admin => "Adm",
            Caller::ReadOnly => "RO",
            Caller::TokenManager => "TM",
            Caller::Member => "Mem",
            Caller::Api => "Api",
            Caller::Deactivated => "Dea",
            Caller::NoApiAccess => "NoA",
            Caller::OtherTenant => "Oth",
            Caller::Anonymous => "Non",
            Caller::System => "Sys",
        }
    }

    /// Whose password the caller's credential stands for (the read-only token is the
    /// admin's).
    fn user(self) -> Caller {
        match self {
            Caller::ReadOnly => Caller::Admin,
            c => c,
        }
    }
}

/// What a cell expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Any 2xx.
    Allow,
    /// introspectToken: 200 with `active: true`.
    Active,
    /// introspectToken: 200 with `active: false` and this code.
    Inactive(&'static str),
    /// This status with this problem code.
    Deny(u16, &'static str),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Allow => write!(f, "2xx"),
            Expect::Active => write!(f, "200 active"),
            Expect::Inactive(code) => write!(f, "200 inactive {code}"),
            Expect::Deny(status, code) => write!(f, "{status} {code}"),
        }
    }
}

const OK: Expect = Expect::Allow;
const ACTIVE: Expect = Expect::Active;
const NF: Expect = Expect::Deny(404, "not_found");
const MISS: Expect = Expect::Deny(401, "credential_missing");
const DEAD: Expect = Expect::Deny(401, "user_deactivated");
const NOAPI: Expect = Expect::Deny(403, "api_access_denied");
const SCOPE: Expect = Expect::Deny(403, "method_not_in_scope");
const ROLE: Expect = Expect::Deny(403, "user_lacks_permission");
const OPER: Expect = Expect::Deny(403, "operator_only");
const TNT: Expect = Expect::Deny(403, "tenant_only");
/// A token of the system user is refused like one of a deactivated user.
const SYS: Expect = Expect::Deny(401, "user_deactivated");
/// confirmPassword with a token that is not a login session.
const NOSESS: Expect = Expect::Deny(403, "not_a_session");
/// A body naming another tenant's user as owner: as for an unknown user.
const NOOWNER: Expect = Expect::Deny(422, "unknown_owner");
/// A token manager minting or copying a token of an admin.
const XSCOPE: Expect = Expect::Deny(403, "scope_exceeds_credential");
/// A token manager changing or regenerating a token of an admin.
const XTOKEN: Expect = Expect::Deny(403, "token_exceeds_credential");
/// A bulk delete naming tokens the caller may not manage: as for unknown tokens.
const NOTOK: Expect = Expect::Deny(422, "unknown_tokens");
/// Forward auth of a route only tenant A's private plugin has.
const NOROUTE: Expect = Expect::Deny(403, "route_not_registered");
const INACT: Expect = Expect::Inactive("token_unknown");
/// rotateCurrentToken with a login session.
const NOROT: Expect = Expect::Deny(403, "session_not_rotatable");
/// Two-factor enrolment of an api user.
const NOTOTP: Expect = Expect::Deny(409, "two_factor_not_for_api_users");

struct Row {
    op: &'static str,
    expect: [Expect; 11],
}

/// One row per operationId; columns in [`CALLERS`] order.
/// Requests (see [`World::call_for`]): objects in paths are tenant A's and not the
/// caller's (the operator's plugin calls use global plugins); the tokens acted on, and the
/// owner of createToken, are a second admin's (`methods: ["*"]`); listTokens filters on
/// that admin's tokens; listAuditEvents of the other tenant's admin names tenant A;
/// authorizeRequest asks for `GET /api/v1/users` (listUsers), and for the other tenant's
/// admin for a route of tenant A's private plugin.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    //                                       Opr     Adm     RO      TM      Mem     Api     Dea     NoA     Oth     Non     Sys
    Row { op: "login",              expect: [OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK] },
    Row { op: "confirmPassword",    expect: [TNT,    OK,     SCOPE,  OK,     OK,     NOSESS, DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "getCurrentUser",     expect: [TNT,    OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "updateCurrentUser",  expect: [TNT,    OK,     SCOPE,  OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "changePassword",     expect: [TNT,    OK,     SCOPE,  OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    // Public: a TOTP user's challenge and one of their recovery codes each time.
    Row { op: "completeLogin",      expect: [OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK] },
    // Each caller enrols, confirms with a computed code, then turns it off with a recovery code.
    Row { op: "beginTotpEnrolment", expect: [TNT,    OK,     SCOPE,  OK,     OK,     NOTOTP, DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "confirmTotpEnrolment", expect: [TNT,  OK,     SCOPE,  OK,     OK,     NOTOTP, DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "disableTotp",        expect: [TNT,    OK,     SCOPE,  OK,     OK,     NOTOTP, DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "createTenant",       expect: [OK,     OPER,   OPER,   OPER,   OPER,   OPER,   DEAD,   NOAPI,  OPER,   MISS,   SYS] },
    Row { op: "listTenants",        expect: [OK,     OPER,   OPER,   OPER,   OPER,   OPER,   DEAD,   NOAPI,  OPER,   MISS,   SYS] },
    Row { op: "getTenant",          expect: [OK,     OPER,   OPER,   OPER,   OPER,   OPER,   DEAD,   NOAPI,  OPER,   MISS,   SYS] },
    Row { op: "updateTenant",       expect: [OK,     OPER,   OPER,   OPER,   OPER,   OPER,   DEAD,   NOAPI,  OPER,   MISS,   SYS] },
    Row { op: "disableTenant",      expect: [OK,     OPER,   OPER,   OPER,   OPER,   OPER,   DEAD,   NOAPI,  OPER,   MISS,   SYS] },
    Row { op: "getMyTenant",        expect: [TNT,    OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "updateTenantPolicy", expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "listSigningKeys",    expect: [TNT,    OK,     OK,     OK,     ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "rotateSigningKey",   expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "getJwks",            expect: [OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK] },
    Row { op: "createUser",         expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "listUsers",          expect: [TNT,    OK,     OK,     OK,     ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "getUser",            expect: [TNT,    OK,     OK,     OK,     ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "updateUser",         expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "deactivateUser",     expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "deleteUser",         expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "resetUserTwoFactor", expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "listPlugins",        expect: [OK,     OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "registerPlugin",     expect: [OK,     OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "getPlugin",          expect: [OK,     OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "deletePlugin",       expect: [OK,     OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "listMethods",        expect: [OK,     OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "listScopeSets",      expect: [TNT,    OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "createScopeSet",     expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "getScopeSet",        expect: [TNT,    OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "updateScopeSet",     expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "deleteScopeSet",     expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "createToken",        expect: [TNT,    OK,     SCOPE,  XSCOPE, ROLE,   ROLE,   DEAD,   NOAPI,  NOOWNER,MISS,   SYS] },
    Row { op: "listTokens",         expect: [TNT,    OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "getToken",           expect: [TNT,    OK,     OK,     OK,     NF,     NF,     DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "updateToken",        expect: [TNT,    OK,     SCOPE,  XTOKEN, NF,     NF,     DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "regenerateToken",    expect: [TNT,    OK,     SCOPE,  XTOKEN, NF,     NF,     DEAD,   NOAPI,  NF,     MISS,   SYS] },
    // A credential rotates itself: login sessions do not rotate.
    Row { op: "rotateCurrentToken", expect: [TNT,    NOROT,  SCOPE,  NOROT,  NOROT,  OK,     DEAD,   NOAPI,  NOROT,  MISS,   SYS] },
    Row { op: "copyToken",          expect: [TNT,    OK,     SCOPE,  XSCOPE, NF,     NF,     DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "deleteToken",        expect: [TNT,    OK,     SCOPE,  OK,     NF,     NF,     DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "deleteTokens",       expect: [TNT,    OK,     SCOPE,  OK,     NOTOK,  NOTOK,  DEAD,   NOAPI,  NOTOK,  MISS,   SYS] },
    Row { op: "getTokenHygiene",    expect: [TNT,    OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "reportLeakedTokens", expect: [TNT,    OK,     SCOPE,  OK,     OK,     OK,     DEAD,   NOAPI,  OK,     MISS,   SYS] },
    // Public (signature-checked); this server configures no partner keys.
    Row { op: "reportSecretScanningMatches", expect: [Expect::Deny(403, "leak_reports_not_configured"); 11] },
    Row { op: "introspectToken",    expect: [TNT,    ACTIVE, ACTIVE, ACTIVE, ACTIVE, ACTIVE, DEAD,   NOAPI,  INACT,  MISS,   SYS] },
    Row { op: "authorizeRequest",   expect: [TNT,    OK,     OK,     OK,     ROLE,   ROLE,   DEAD,   NOAPI,  NOROUTE,MISS,   SYS] },
    Row { op: "listAuditEvents",    expect: [OK,     OK,     OK,     OK,     OK,     OK,     DEAD,   NOAPI,  OPER,   MISS,   SYS] },
    // Webhooks are the tenant admins'; another tenant's endpoint is not found.
    Row { op: "createWebhook",      expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "listWebhooks",       expect: [TNT,    OK,     OK,     ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  OK,     MISS,   SYS] },
    Row { op: "getWebhook",         expect: [TNT,    OK,     OK,     ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "updateWebhook",      expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "deleteWebhook",      expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "sendTestWebhook",    expect: [TNT,    OK,     SCOPE,  ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "listWebhookDeliveries", expect: [TNT, OK,     OK,     ROLE,   ROLE,   ROLE,   DEAD,   NOAPI,  NF,     MISS,   SYS] },
    Row { op: "getHealth",          expect: [OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK] },
    Row { op: "getReadiness",       expect: [OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK,     OK] },
];

/// Operations that check the credential of the request they authorize, whether or not
/// the spec lists a security scheme for them.
const FORWARD_AUTH: &[&str] = &["authorizeRequest"];

/// One operation of the published spec.
struct SpecOp {
    method: Method,
    path: String,
    /// The registry method (`x-sigil-method`).
    registry_method: String,
    /// Whether the operation ignores credentials (no `security` in the spec, no forward
    /// auth).
    public: bool,
}

/// Every operation of the checked-in spec; duplicated operationIds are reported.
fn spec_operations(problems: &mut Vec<String>) -> BTreeMap<String, SpecOp> {
    let text = std::fs::read_to_string(SPEC).expect("read openapi/sigil.json");
    let doc: Value = serde_json::from_str(&text).expect("openapi/sigil.json is JSON");
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (verb, op) in item.as_object().expect("path item") {
            let Some(id) = op["operationId"].as_str() else {
                continue;
            };
            let method =
                Method::from_bytes(verb.to_ascii_uppercase().as_bytes()).expect("an HTTP method");
            let found = SpecOp {
                method,
                path: path.clone(),
                registry_method: op["x-sigil-method"].as_str().unwrap_or_default().to_owned(),
                public: op.get("security").is_none() && !FORWARD_AUTH.contains(&id),
            };
            if ops.insert(id.to_owned(), found).is_some() {
                problems.push(format!("the spec names operationId {id} twice"));
            }
        }
    }
    ops
}

/// The spec and the table name the same operations, each once.
fn compare_with_table(ops: &BTreeMap<String, SpecOp>, problems: &mut Vec<String>) {
    for (id, op) in ops {
        if !TABLE.iter().any(|r| r.op == id) {
            problems.push(format!(
                "operation {id} ({} {}) has no row in the matrix",
                op.method, op.path
            ));
        }
    }
    for (i, row) in TABLE.iter().enumerate() {
        if !ops.contains_key(row.op) {
            problems.push(format!(
                "the matrix has a row for {}, which the spec lacks",
                row.op
            ));
        }
        if TABLE[..i].iter().any(|r| r.op == row.op) {
            problems.push(format!("the matrix has two rows for {}", row.op));
        }
        // The anonymous column agrees with the spec's security requirement.
        let anonymous = row.expect[CALLERS
            .iter()
            .position(|c| *c == Caller::Anonymous)
            .expect("anonymous column")];
        match ops.get(row.op) {
            Some(op) if op.public && anonymous == MISS => problems.push(format!(
                "{} needs no credential in the spec, yet the matrix expects credential_missing",
                row.op
            )),
            Some(op) if !op.public && anonymous != MISS => problems.push(format!(
                "{} needs a credential in the spec, yet the matrix expects {anonymous} without one",
                row.op
            )),
            _ => {}
        }
    }
}

/// A request, before the operation's path and the caller's credential are applied.
#[derive(Default)]
struct Call {
    params: Vec<(&'static str, String)>,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Call {
    fn none() -> Self {
        Self::default()
    }
    fn body(body: Value) -> Self {
        Self {
            body: Some(body),
            ..Self::default()
        }
    }
    fn param(name: &'static str, value: impl Into<String>) -> Self {
        Self {
            params: vec![(name, value.into())],
            ..Self::default()
        }
    }
    fn with_body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    fn query(name: &'static str, value: impl Into<String>) -> Self {
        Self {
            query: vec![(name, value.into())],
            ..Self::default()
        }
    }
}

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

/// A plugin manifest with one read method `{id}.items.list` at `GET /{id}/items`.
fn manifest(id: &str) -> Value {
    json!({
        "id": id,
        "name": format!("{id} plugin"),
        "version": "1.0.0",
        "methods": [{
            "id": format!("{id}.items.list"),
            "http": {"method": "GET", "path": format!("/{id}/items")},
            "access": "read",
            "description": "List the items",
        }],
    })
}

fn failed(what: &str, r: &Resp) -> String {
    format!("setup: {what} answered {} {}", r.status.as_u16(), r.body)
}

/// The fixture: two tenants, a credential per caller, and the objects the calls act on.
struct World<'s> {
    s: &'s TestServer,
    ops: BTreeMap<String, SpecOp>,
    a: Tenant,
    /// Credential per caller (none for the anonymous caller).
    creds: BTreeMap<Caller, String>,
    /// Current password per user (see [`Caller::user`]).
    passwords: BTreeMap<Caller, String>,
    /// A member of tenant A whose password the login row uses.
    greeter: (String, String),
    /// The member caller's user id.
    member_id: String,
    /// A member of tenant A that getUser reads.
    victim: String,
    /// A second admin of tenant A who owns the tokens others act on.
    token_owner: String,
    /// A member of tenant A that updateUser changes.
    target_user: String,
    /// A token of the token owner, never regenerated or deleted, and its secret.
    shared_token: String,
    shared_secret: String,
    /// Tenant A's private plugin, a global plugin, tenant A's custom scope set.
    plugin_a: String,
    plugin_global: String,
    set_a: String,
    system_id: String,
    /// Tenant A's policy (with a long password confirmation window).
    policy: Value,
    seq: u32,
    /// Recovery codes of the users who turned two-factor sign-in on (see [`Caller::user`]).
    recovery: BTreeMap<Caller, Vec<String>>,
    /// A two-factor user of tenant A (username, password) and their unused recovery codes,
    /// for completeLogin.
    totp_login: Option<(String, String)>,
    login_codes: Vec<String>,
}

impl<'s> World<'s> {
    async fn new(s: &'s TestServer, ops: BTreeMap<String, SpecOp>) -> World<'s> {
        let a = s.tenant_admin("alpha").await;
        let b = s.tenant_admin("bravo").await;
        // Confirmations last the whole run, however slow the machine.
        let policy = long_confirmation(s, &a).await;
        long_confirmation(s, &b).await;
        for t in [&a, &b] {
            let r = s
                .post(
                    "/api/v1/auth/confirm-password",
                    &t.admin,
                    json!({"password": t.admin_password}),
                )
                .await;
            assert_eq!(r.status, 200, "confirmPassword: {}", r.body);
        }
        let tm = s.user(&a, "tess", "token_manager", "person").await;
        let member = s.user(&a, "mona", "member", "person").await;
        let robot = s.user(&a, "robot", "member", "api").await;
        let dean = s.user(&a, "dean", "member", "person").await;
        let nora = s.user(&a, "nora", "member", "person").await;
        let greeter = s.user(&a, "greeter", "member", "person").await;

        let create = |username: &'static str, role: &'static str| {
            let admin = a.admin.clone();
            async move {
                let r = s
                    .post(
                        "/api/v1/users",
                        &admin,
                        json!({"username": username, "role": role}),
                    )
                    .await;
                assert_eq!(r.status, 201, "createUser: {}", r.body);
                r.body["id"].as_str().expect("id").to_owned()
            }
        };
        let victim = create("victor", "member").await;
        let target_user = create("tara", "member").await;
        let token_owner = create("ada", "admin").await;

        let (_, read_only) = s
            .mint(
                &a.admin,
                json!({"name": "read-only admin token", "scope_set": "read-only"}),
            )
            .await;
        let (_, api) = s
            .mint(
                &a.admin,
                json!({"kind": "application", "owner_id": robot.id, "methods": ["*"]}),
            )
            .await;
        let (_, deactivated) = s.mint(&dean.token, json!({"methods": ["*"]})).await;
        let r = s
            .call(
                Method::POST,
                &format!("/api/v1/users/{}/deactivate", dean.id),
                Some(&a.admin),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "deactivateUser: {}", r.body);
        let (_, no_api) = s.mint(&nora.token, json!({"methods": ["*"]})).await;
        let r = s
            .patch(
                &format!("/api/v1/users/{}", nora.id),
                &a.admin,
                json!({"api_access": false}),
            )
            .await;
        assert_eq!(r.status, 200, "updateUser api_access: {}", r.body);
        let (shared, shared_secret) = s
            .mint(
                &a.admin,
                json!({"name": "ada's token", "owner_id": token_owner, "methods": ["*"]}),
            )
            .await;

        let plugin_a = "alpha-widgets".to_owned();
        let r = s
            .post(
                "/api/v1/plugins",
                &a.admin,
                json!({"manifest": manifest(&plugin_a)}),
            )
            .await;
        assert_eq!(r.status, 201, "registerPlugin (tenant): {}", r.body);
        let plugin_global = "global-gadgets".to_owned();
        let r = s
            .post(
                "/api/v1/plugins",
                &s.operator_token(),
                json!({"manifest": manifest(&plugin_global)}),
            )
            .await;
        assert_eq!(r.status, 201, "registerPlugin (global): {}", r.body);

        let list_tokens = ops
            .get("listTokens")
            .map(|o| o.registry_method.clone())
            .expect("listTokens in the spec");
        let set_a = "alpha-team".to_owned();
        let r = s
            .post(
                "/api/v1/scope-sets",
                &a.admin,
                json!({"id": set_a, "name": "Alpha team", "methods": [list_tokens]}),
            )
            .await;
        assert_eq!(r.status, 201, "createScopeSet: {}", r.body);

        let r = s.get("/api/v1/users?q=system", &a.admin).await;
        assert_eq!(r.status, 200, "listUsers: {}", r.body);
        let system_id = r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|u| u["is_system"] == true)
            .and_then(|u| u["id"].as_str())
            .expect("the system user is listed")
            .to_owned();
        let system = system_session(s, &a.id, &system_id).await;

        let creds = BTreeMap::from([
            (Caller::Operator, s.operator_token()),
            (Caller::Admin, a.admin.clone()),
            (Caller::ReadOnly, read_only),
            (Caller::TokenManager, tm.token.clone()),
            (Caller::Member, member.token.clone()),
            (Caller::Api, api),
            (Caller::Deactivated, deactivated),
            (Caller::NoApiAccess, no_api),
            (Caller::OtherTenant, b.admin.clone()),
            (Caller::System, system),
        ]);
        let passwords = BTreeMap::from([
            (Caller::Admin, a.admin_password.clone()),
            (Caller::TokenManager, tm.password.clone()),
            (Caller::Member, member.password.clone()),
            (Caller::Api, robot.password.clone()),
            (Caller::Deactivated, dean.password.clone()),
            (Caller::NoApiAccess, nora.password.clone()),
            (Caller::OtherTenant, b.admin_password.clone()),
        ]);
        World {
            s,
            ops,
            a,
            creds,
            passwords,
            greeter: ("greeter".to_owned(), greeter.password),
            member_id: member.id.clone(),
            victim,
            token_owner,
            target_user,
            shared_token: shared["id"].as_str().expect("id").to_owned(),
            shared_secret,
            plugin_a,
            plugin_global,
            set_a,
            system_id,
            policy,
            seq: 0,
            recovery: BTreeMap::new(),
            totp_login: None,
            login_codes: Vec::new(),
        }
    }

    fn tag(&mut self, caller: Caller) -> String {
        self.seq += 1;
        format!("mx-{}-{}", caller.label(), self.seq)
    }

    fn password(&self, caller: Caller) -> String {
        self.passwords
            .get(&caller.user())
            .cloned()
            .unwrap_or_else(|| "Not-a-password-000".to_owned())
    }

    /// A POST by tenant A's admin (or the operator) that must succeed; its body.
    async fn setup_post(&self, token: &str, path: &str, body: Value) -> Result<Value, String> {
        let r = self.s.post(path, token, body).await;
        if r.status.is_success() {
            Ok(r.body)
        } else {
            Err(failed(&format!("POST {path}"), &r))
        }
    }

    fn id_of(v: &Value, pointer: &str) -> Result<String, String> {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("setup: no {pointer} in {v}"))
    }

    /// A fresh member of tenant A.
    async fn victim_user(&mut self) -> Result<String, String> {
        self.seq += 1;
        let body = json!({"username": format!("victim-{}", self.seq), "role": "member"});
        let v = self
            .setup_post(&self.a.admin, "/api/v1/users", body)
            .await?;
        Self::id_of(&v, "/id")
    }

    /// A fresh token of `owner`.
    async fn victim_token(&mut self, owner: &str) -> Result<String, String> {
        self.seq += 1;
        let body = json!({
            "name": format!("victim token {}", self.seq),
            "owner_id": owner,
            "methods": ["*"],
            "expires_at": in_days(30),
        });
        let v = self
            .setup_post(&self.a.admin, "/api/v1/tokens", body)
            .await?;
        Self::id_of(&v, "/token/id")
    }

    /// A fresh custom scope set of tenant A.
    async fn victim_set(&mut self) -> Result<String, String> {
        self.seq += 1;
        let id = format!("alpha-v-{}", self.seq);
        let body = json!({"id": id, "name": "Victim set", "methods": [self.registry_method("listTokens")]});
        self.setup_post(&self.a.admin, "/api/v1/scope-sets", body)
            .await?;
        Ok(id)
    }

    /// A fresh plugin: global (registered by the operator) or tenant A's own.
    async fn victim_plugin(&mut self, global: bool) -> Result<String, String> {
        self.seq += 1;
        let (id, token) = if global {
            (format!("global-v-{}", self.seq), self.s.operator_token())
        } else {
            (format!("alpha-v-{}", self.seq), self.a.admin.clone())
        };
        self.setup_post(
            &token,
            "/api/v1/plugins",
            json!({"manifest": manifest(&id)}),
        )
        .await?;
        Ok(id)
    }

    /// A fresh webhook endpoint of tenant A (`.invalid` never resolves: nothing is sent).
    async fn victim_webhook(&mut self) -> Result<String, String> {
        self.seq += 1;
        let body = json!({"url": format!("https://hooks-{}.invalid/sigil", self.seq)});
        let v = self
            .setup_post(&self.a.admin, "/api/v1/webhooks", body)
            .await?;
        Self::id_of(&v, "/webhook/id")
    }

    /// Tenant A's shared webhook endpoint (made on first use).
    async fn shared_webhook(&mut self) -> Result<String, String> {
        let r = self.s.get("/api/v1/webhooks", &self.a.admin).await;
        let shared = r.body["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|w| w["description"] == "shared")
                .and_then(|w| w["id"].as_str())
                .map(str::to_owned)
        });
        if let Some(id) = shared {
            return Ok(id);
        }
        let body = json!({"url": "https://hooks.invalid/shared", "description": "shared"});
        let v = self
            .setup_post(&self.a.admin, "/api/v1/webhooks", body)
            .await?;
        Self::id_of(&v, "/webhook/id")
    }

    /// Enrols TOTP for the user of `session`; their recovery codes.
    async fn enrol(&self, session: &str, password: &str) -> Result<Vec<String>, String> {
        let begun = self
            .setup_post(session, "/api/v1/users/me/two-factor/totp", json!({}))
            .await?;
        let secret = Self::id_of(&begun, "/secret")?;
        let body = json!({"code": crate::two_factor::code_at(&secret, 0), "password": password});
        let done = self
            .setup_post(session, "/api/v1/users/me/two-factor/totp/confirm", body)
            .await?;
        Ok(done["recovery_codes"]
            .as_array()
            .ok_or("no recovery codes")?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect())
    }

    /// A fresh member of tenant A with two-factor sign-in on.
    async fn totp_user(&mut self) -> Result<(String, String, Vec<String>), String> {
        self.seq += 1;
        let name = format!("totp-{}", self.seq);
        let user = self.s.user(&self.a, &name, "member", "person").await;
        let codes = self.enrol(&user.token, &user.password).await?;
        Ok((user.id, format!("{name}\n{}", user.password), codes))
    }

    /// A login challenge of a two-factor user and an unused recovery code of theirs.
    async fn login_challenge(&mut self) -> Result<(String, String), String> {
        if self.login_codes.is_empty() {
            let (_, login, codes) = self.totp_user().await?;
            let (name, password) = login.split_once('\n').ok_or("login")?;
            self.totp_login = Some((name.to_owned(), password.to_owned()));
            self.login_codes = codes;
        }
        let (name, password) = self.totp_login.clone().ok_or("no two-factor user")?;
        let r = self
            .s
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"tenant": self.a.slug, "username": name, "password": password})),
            )
            .await;
        if r.status != 202 {
            return Err(failed("login with a second factor", &r));
        }
        let challenge = Self::id_of(&r.body, "/challenge")?;
        let code = self.login_codes.pop().ok_or("no recovery code left")?;
        Ok((challenge, code))
    }

    /// A fresh tenant.
    async fn victim_tenant(&mut self) -> Result<String, String> {
        self.seq += 1;
        let body = json!({"slug": format!("victim-{}", self.seq)});
        let v = self
            .setup_post(&self.s.operator_token(), "/api/v1/tenants", body)
            .await?;
        Self::id_of(&v, "/tenant/id")
    }

    fn registry_method(&self, op: &str) -> String {
        self.ops
            .get(op)
            .map(|o| o.registry_method.clone())
            .unwrap_or_default()
    }

    /// The request `caller` makes for `op`.
    async fn call_for(&mut self, op: &str, caller: Caller) -> Result<Call, String> {
        let tag = self.tag(caller);
        let operator = caller == Caller::Operator;
        let other = caller == Caller::OtherTenant;
        Ok(match op {
            "login" => Call::body(json!({
                "tenant": self.a.slug, "username": self.greeter.0, "password": self.greeter.1,
            })),
            "confirmPassword" => Call::body(json!({"password": self.password(caller)})),
            "getCurrentUser" => Call::none(),
            "completeLogin" => {
                let (challenge, code) = self.login_challenge().await?;
                Call::body(json!({"challenge": challenge, "recovery_code": code}))
            }
            "beginTotpEnrolment" => Call::none(),
            "confirmTotpEnrolment" => {
                // A code of the caller's own pending enrolment when they can start one.
                let credential = self.creds.get(&caller).cloned();
                let begun = self
                    .send("beginTotpEnrolment", credential.as_deref(), &Call::none())
                    .await?;
                let code = match begun.body["secret"].as_str() {
                    Some(secret) if begun.status == 200 => crate::two_factor::code_at(secret, 0),
                    _ => "000000".to_owned(),
                };
                Call::body(json!({"code": code, "password": self.password(caller)}))
            }
            "disableTotp" => {
                let code = self
                    .recovery
                    .get_mut(&caller.user())
                    .and_then(Vec::pop)
                    .unwrap_or_else(|| "00000-00000".to_owned());
                Call::body(json!({"password": self.password(caller), "recovery_code": code}))
            }
            "updateCurrentUser" => Call::body(json!({"display_name": format!("Me {tag}")})),
            "changePassword" => Call::body(json!({
                "current_password": self.password(caller),
                "new_password": format!("Nw-{}-{}", uuid::Uuid::new_v4().simple(), self.seq),
            })),
            "createTenant" => Call::body(json!({"slug": tag})),
            "listTenants" => Call::none(),
            "getTenant" => Call::param("tenant_id", &self.a.id),
            "updateTenant" => Call::param("tenant_id", &self.a.id)
                .with_body(json!({"name": format!("Alpha {tag}")})),
            "disableTenant" => Call::param("tenant_id", self.victim_tenant().await?),
            "getMyTenant" => Call::none(),
            "updateTenantPolicy" => Call::body(self.policy.clone()),
            "listSigningKeys" => Call::none(),
            "rotateSigningKey" => Call::body(json!({})),
            "getJwks" => Call::param("tenant", &self.a.slug),
            "createUser" => Call::body(json!({"username": tag, "role": "member"})),
            "listUsers" => Call::none(),
            "getUser" => Call::param("user_id", &self.victim),
            "updateUser" => Call::param("user_id", &self.target_user)
                .with_body(json!({"display_name": format!("Tara {tag}")})),
            "deactivateUser" | "deleteUser" => Call::param("user_id", self.victim_user().await?),
            "resetUserTwoFactor" => Call::param("user_id", self.totp_user().await?.0),
            "listPlugins" | "listMethods" => Call::none(),
            "registerPlugin" => Call::body(json!({"manifest": manifest(&tag)})),
            "getPlugin" => Call::param(
                "plugin_id",
                if operator {
                    &self.plugin_global
                } else {
                    &self.plugin_a
                },
            ),
            "deletePlugin" => Call::param("plugin_id", self.victim_plugin(operator).await?),
            "listScopeSets" => Call::none(),
            "createScopeSet" => Call::body(json!({
                "id": tag, "name": "Matrix set", "methods": [self.registry_method("listTokens")],
            })),
            "getScopeSet" => Call::param("set_id", &self.set_a),
            "updateScopeSet" => Call::param("set_id", &self.set_a)
                .with_body(json!({"name": format!("Alpha team {tag}")})),
            "deleteScopeSet" => Call::param("set_id", self.victim_set().await?),
            "createToken" => Call::body(json!({
                "name": tag,
                "owner_id": self.token_owner,
                "methods": ["*"],
                "expires_at": in_days(1),
            })),
            "listTokens" => Call::query("owner_id", &self.token_owner),
            "getToken" => Call::param("token_id", &self.shared_token),
            "updateToken" => Call::param("token_id", &self.shared_token)
                .with_body(json!({"description": format!("changed by {tag}")})),
            "copyToken" => Call::param("token_id", &self.shared_token),
            "regenerateToken" | "deleteToken" => {
                let owner = self.token_owner.clone();
                Call::param("token_id", self.victim_token(&owner).await?)
            }
            "deleteTokens" => {
                let owner = self.token_owner.clone();
                Call::body(json!({"ids": [self.victim_token(&owner).await?]}))
            }
            // The caller's own credential: its old secret keeps working for the rest of the run.
            "rotateCurrentToken" => Call::body(json!({"grace_period_secs": 86_400})),
            "getTokenHygiene" => Call::none(),
            // Not a secret: nothing is revoked, and the answer is the same.
            "reportLeakedTokens" => Call::body(json!({"secrets": [format!("not-a-secret-{tag}")]})),
            "reportSecretScanningMatches" => Call::body(json!([])),
            "introspectToken" => Call::body(json!({"token": self.shared_secret})),
            "authorizeRequest" => {
                let uri = if other {
                    format!("/{}/items", self.plugin_a)
                } else {
                    self.ops
                        .get("listUsers")
                        .map(|o| o.path.clone())
                        .ok_or("listUsers is not in the spec")?
                };
                Call {
                    headers: vec![
                        ("X-Original-Method", "GET".to_owned()),
                        ("X-Original-URI", uri),
                    ],
                    ..Call::default()
                }
            }
            "listAuditEvents" if other => Call::query("tenant_id", &self.a.id),
            "listAuditEvents" => Call::none(),
            "createWebhook" => Call::body(json!({"url": format!("https://{tag}.invalid/hook")})),
            "listWebhooks" => Call::none(),
            "getWebhook" | "sendTestWebhook" | "listWebhookDeliveries" => {
                Call::param("webhook_id", self.shared_webhook().await?)
            }
            "updateWebhook" => Call::param("webhook_id", self.shared_webhook().await?)
                .with_body(json!({"enabled": true})),
            "deleteWebhook" => Call::param("webhook_id", self.victim_webhook().await?),
            "getHealth" | "getReadiness" => Call::none(),
            _ => return Err(format!("no request is built for {op}")),
        })
    }

    /// Makes `caller`'s call of `op`.
    async fn run(&mut self, op: &str, caller: Caller) -> Result<Resp, String> {
        let call = self.call_for(op, caller).await?;
        let credential = self.creds.get(&caller).cloned();
        let resp = self.send(op, credential.as_deref(), &call).await?;
        if op == "confirmTotpEnrolment" && resp.status.is_success() {
            let codes = resp.body["recovery_codes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect();
            self.recovery.insert(caller.user(), codes);
        }
        if op == "changePassword" && resp.status.is_success() {
            if let Some(new) = call.body.as_ref().and_then(|b| b["new_password"].as_str()) {
                self.passwords.insert(caller.user(), new.to_owned());
            }
        }
        Ok(resp)
    }

    /// Sends `call` as the request for `op`.
    async fn send(&self, op: &str, credential: Option<&str>, call: &Call) -> Result<Resp, String> {
        let spec = self.ops.get(op).ok_or("not in the spec")?;
        let mut path = spec.path.clone();
        for (name, value) in &call.params {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        if path.contains('{') {
            return Err(format!("a path parameter is missing: {path}"));
        }
        let mut req = self
            .s
            .client
            .request(spec.method.clone(), self.s.url(&path));
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(credential) = credential {
            req = req.bearer_auth(credential);
        }
        for (name, value) in &call.headers {
            req = req.header(*name, value);
        }
        if let Some(body) = &call.body {
            req = req.json(body);
        }
        Ok(Resp::from(req.send().await.map_err(|e| e.to_string())?).await)
    }

    /// Strings a successful answer to `caller` must not contain: tenant A's objects for
    /// the other tenant's admin, other users' for a member.
    fn secrets(&self, op: &str, caller: Caller) -> Vec<String> {
        let public = self.ops.get(op).is_none_or(|o| o.public);
        if public || op == "introspectToken" {
            return Vec::new();
        }
        match caller {
            Caller::OtherTenant => vec![
                self.a.id.clone(),
                self.victim.clone(),
                self.token_owner.clone(),
                self.target_user.clone(),
                self.shared_token.clone(),
                self.plugin_a.clone(),
                self.set_a.clone(),
                "alpha-v-".to_owned(),
            ],
            Caller::Member | Caller::Api => {
                vec![
                    self.victim.clone(),
                    self.token_owner.clone(),
                    self.shared_token.clone(),
                ]
            }
            _ => Vec::new(),
        }
    }

    /// Checks a token manager's reach over a member's token: minting, changing,
    /// regenerating and copying it never exceed the manager's rights.
    async fn manager_checks(&mut self, mismatches: &mut Vec<Mismatch>) {
        let tm = Caller::TokenManager;
        let member = self.victim.clone();
        let create = Call::body(json!({
            "name": "for a member",
            "owner_id": member,
            "methods": ["*"],
            "expires_at": in_days(1),
        }));
        let token = match self.victim_token(&member).await {
            Ok(token) => token,
            Err(e) => {
                mismatches.push(Mismatch {
                    op: "token manager on a member's token".into(),
                    caller: tm,
                    expected: OK,
                    got: e,
                });
                return;
            }
        };
        let checks = [
            ("createToken", create),
            (
                "updateToken",
                Call::param("token_id", &token).with_body(json!({"description": "by the manager"})),
            ),
            ("regenerateToken", Call::param("token_id", &token)),
            ("copyToken", Call::param("token_id", &token)),
        ];
        let credential = self.creds.get(&tm).cloned();
        for (op, call) in checks {
            let what = format!("{op} (member's token)");
            match self.send(op, credential.as_deref(), &call).await {
                Ok(r) => check_extra(mismatches, &what, tm, OK, &r),
                Err(got) => mismatches.push(Mismatch {
                    op: what,
                    caller: tm,
                    expected: OK,
                    got,
                }),
            }
        }
    }

    /// Checks that token changes from a login session that has not confirmed its password
    /// are refused, even on the member's own token.
    async fn unconfirmed_checks(&mut self, mismatches: &mut Vec<Mismatch>) {
        let member = self.member_id.clone();
        let password = self.password(Caller::Member);
        let session = self.s.login(&self.a.slug, "mona", &password).await;
        let mut calls = vec![(
            "createToken",
            Ok(Call::body(json!({
                "name": "unconfirmed",
                "methods": ["*"],
                "expires_at": in_days(1),
            }))),
        )];
        for op in [
            "updateToken",
            "regenerateToken",
            "copyToken",
            "deleteToken",
            "deleteTokens",
        ] {
            let call = self.victim_token(&member).await.map(|token| match op {
                "updateToken" => {
                    Call::param("token_id", token).with_body(json!({"description": "unconfirmed"}))
                }
                "deleteTokens" => Call::body(json!({"ids": [token]})),
                _ => Call::param("token_id", token),
            });
            calls.push((op, call));
        }
        let expected = Expect::Deny(403, "password_confirmation_required");
        for (op, call) in calls {
            let what = format!("{op} (unconfirmed session)");
            let got = match call {
                Ok(call) => self.send(op, Some(&session), &call).await,
                Err(e) => Err(e),
            };
            match got {
                Ok(r) => check_extra(mismatches, &what, Caller::Member, expected, &r),
                Err(got) => mismatches.push(Mismatch {
                    op: what,
                    caller: Caller::Member,
                    expected,
                    got,
                }),
            }
        }
    }

    /// Checks what the system user can never do: log in, or own a token.
    async fn system_checks(&self, mismatches: &mut Vec<Mismatch>) {
        let s = self.s;
        let login = s
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"tenant": self.a.slug, "username": "system", "password": "Anything-at-all-123"})),
            )
            .await;
        check_extra(
            mismatches,
            "login as system",
            Caller::Anonymous,
            Expect::Deny(401, "invalid_credentials"),
            &login,
        );
        for caller in [Caller::Admin, Caller::TokenManager] {
            let body = json!({
                "name": "for the system user",
                "owner_id": self.system_id,
                "methods": ["*"],
                "expires_at": in_days(1),
            });
            let r = s.post("/api/v1/tokens", &self.creds[&caller], body).await;
            check_extra(
                mismatches,
                "createToken for system",
                caller,
                Expect::Deny(422, "system_user"),
                &r,
            );
        }
    }
}

/// Sets the tenant's password confirmation window to its maximum; the policy after.
async fn long_confirmation(s: &TestServer, t: &Tenant) -> Value {
    let r = s.get("/api/v1/tenant", &t.admin).await;
    assert_eq!(r.status, 200, "getMyTenant: {}", r.body);
    let mut policy = r.body["policy"].clone();
    policy["password_confirmation_secs"] = json!(3600);
    let r = s
        .call(
            Method::PUT,
            "/api/v1/tenant/policy",
            Some(&t.admin),
            Some(policy),
        )
        .await;
    assert_eq!(r.status, 200, "updateTenantPolicy: {}", r.body);
    r.body["policy"].clone()
}

/// A login session of the system user, written by the token service directly: no API
/// call can make one, so it stands for any credential that claims to be the system user.
async fn system_session(s: &TestServer, tenant: &str, user: &str) -> String {
    let tenant = sigil_core::TenantId(tenant.parse().expect("tenant id"));
    let user = sigil_core::UserId(user.parse().expect("user id"));
    let state = s.state();
    let system = state.users.get(tenant, user).await.expect("system user");
    assert!(system.is_system);
    state
        .tokens
        .create_session(&system, 3600)
        .await
        .expect("session row")
        .secret
}

struct Mismatch {
    op: String,
    caller: Caller,
    expected: Expect,
    got: String,
}

/// Whether the answer is what the cell expects.
fn matches(expected: Expect, r: &Resp) -> bool {
    let status = r.status.as_u16();
    match expected {
        Expect::Allow => r.status.is_success(),
        Expect::Active => status == 200 && r.body["active"] == true,
        Expect::Inactive(code) => {
            status == 200 && r.body["active"] == false && r.body["code"] == code
        }
        Expect::Deny(s, code) => status == s && r.code() == code,
    }
}

/// The answer in a few words; an introspection's `active` flag too.
fn describe(op: &str, r: &Resp) -> String {
    let status = r.status.as_u16();
    let introspection = op.starts_with("introspectToken");
    if let Some(active) = r
        .body
        .get("active")
        .and_then(Value::as_bool)
        .filter(|_| introspection)
    {
        let code = r.body["code"].as_str().unwrap_or_default();
        return format!(
            "{status} {} {code}",
            if active { "active" } else { "inactive" }
        )
        .trim_end()
        .to_owned();
    }
    match r.code() {
        "" => status.to_string(),
        code => format!("{status} {code}"),
    }
}

fn check_extra(
    mismatches: &mut Vec<Mismatch>,
    what: &str,
    caller: Caller,
    expected: Expect,
    r: &Resp,
) {
    if !matches(expected, r) {
        mismatches.push(Mismatch {
            op: what.to_owned(),
            caller,
            expected,
            got: describe(what, r),
        });
    }
}

#[tokio::test]
async fn every_operation_answers_every_kind_of_caller_as_the_rules_say() {
    // Hundreds of refused credentials from one address on purpose: no refusal limit.
    let s = TestServer::start_with(|c| c.refusal_limit_per_minute = 0).await;
    let mut problems = Vec::new();
    let ops = spec_operations(&mut problems);
    compare_with_table(&ops, &mut problems);
    let mut w = World::new(&s, ops).await;

    let mut mismatches = Vec::new();
    let mut grid: Vec<(&str, String)> = Vec::new();
    let mut cells = 0;
    for row in TABLE {
        if !w.ops.contains_key(row.op) {
            continue;
        }
        let mut marks = String::new();
        for (caller, expected) in CALLERS.iter().zip(row.expect) {
            cells += 1;
            let got = match w.run(row.op, *caller).await {
                Ok(r) => {
                    let leaked = if r.status.is_success() {
                        w.secrets(row.op, *caller)
                            .into_iter()
                            .find(|secret| r.body.to_string().contains(secret.as_str()))
                    } else {
                        None
                    };
                    match leaked {
                        Some(secret) => {
                            Some(format!("{} but shows {secret}", describe(row.op, &r)))
                        }
                        None if matches(expected, &r) => None,
                        None => Some(describe(row.op, &r)),
                    }
                }
                Err(e) => Some(e),
            };
            match got {
                None => marks.push_str(&format!("{:>4}", ".")),
                Some(got) => {
                    marks.push_str(&format!("{:>4}", "x"));
                    mismatches.push(Mismatch {
                        op: row.op.to_owned(),
                        caller: *caller,
                        expected,
                        got,
                    });
                }
            }
        }
        grid.push((row.op, marks));
    }
    w.system_checks(&mut mismatches).await;
    w.manager_checks(&mut mismatches).await;
    w.unconfirmed_checks(&mut mismatches).await;

    if problems.is_empty() && mismatches.is_empty() {
        return;
    }
    let mut report = String::new();
    for p in &problems {
        report.push_str(&format!("spec/table: {p}\n"));
    }
    if !mismatches.is_empty() {
        report.push_str(&format!(
            "\n{} of {cells} cells (and extra checks) disagree; x marks the cells:\n{:<20}",
            mismatches.len(),
            "operation"
        ));
        for c in CALLERS {
            report.push_str(&format!("{:>4}", c.short()));
        }
        report.push('\n');
        for (op, marks) in &grid {
            if marks.contains('x') {
                report.push_str(&format!("{op:<20}{marks}\n"));
            }
        }
        report.push('\n');
        for m in &mismatches {
            report.push_str(&format!(
                "{:<24} {:<14} expected {:<32} got {}\n",
                m.op,
                m.caller.label(),
                m.expected.to_string(),
                m.got
            ));
        }
    }
    panic!("authorization matrix:\n{report}");
}
