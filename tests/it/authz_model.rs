//! Model-based test of authorization: random sequences of operations by random actors run
//! against the real server, each checked against a small reference model of who may do
//! what. After every step every credential (login sessions and every secret ever issued)
//! is checked through the server: its rights (`getCurrentUser`'s `methods` and
//! `introspectToken`'s `scope`), forward auth (`authorizeRequest`) for each plugin method,
//! one allowed and one refused Sigil call, and the refusal code of dead credentials.
//!
//! Budget: 8 cases of up to 12 steps by default. A larger run:
//!
//! ```text
//! SIGIL_MODEL_CASES=200 cargo test -p sigil --test it authz_model
//! SIGIL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     SIGIL_MODEL_CASES=200 cargo test -p sigil --test it authz_model
//! ```
//!
//! Also: `SIGIL_MODEL_STEPS` (steps per case, default 12), `SIGIL_MODEL_SEED` (replay the
//! seed a failed run printed), `SIGIL_MODEL_SHRINK_ITERS` (shrinking budget, default 64),
//! `SIGIL_MODEL_VERBOSE=1` (print every step).
//!
//! The model (`Model`) is the specification; the driver (`Case`) only talks HTTP. When
//! several rules refuse one request, the rules fix no order among them: any of their codes
//! is accepted (a dead credential, the operation's own method, and another's token (404)
//! always come first).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{Resp, TestServer};

type Set = BTreeSet<String>;

const DAY: i64 = 86_400;
/// The default tenant policy: tokens live at most 365 days (plus five minutes of slack).
const MAX_LIFETIME: i64 = 365 * DAY + 300;
const GRACE_SECS: i64 = 3600;

// ---------------------------------------------------------------------------------------
// The model: who may do what.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Admin,
    TokenManager,
    Member,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TokenManager => "token_manager",
            Role::Member => "member",
        }
    }
}

/// Only the platform operator calls these.
const OPERATOR_ONLY: &[&str] = &[
    "tenants.create",
    "tenants.list",
    "tenants.get",
    "tenants.update",
    "tenants.disable",
];
/// Administration a token manager may not do.
const ADMIN_ONLY: &[&str] = &[
    "users.create",
    "users.update",
    "users.deactivate",
    "users.delete",
    "users.reset_two_factor",
    "tenant.update_policy",
    "signing_keys.rotate",
    "plugins.register",
    "plugins.delete",
    "scope_sets.create",
    "scope_sets.update",
    "scope_sets.delete",
    "tenant.webhooks.create",
    "tenant.webhooks.list",
    "tenant.webhooks.get",
    "tenant.webhooks.update",
    "tenant.webhooks.delete",
    "tenant.webhooks.test",
    "tenant.webhooks.list_deliveries",
];
/// Reading people and keys, which a member may not do.
const MANAGER_ONLY: &[&str] = &["users.list", "users.get", "signing_keys.list"];

/// The actors: one tenant's admin, token manager and two members.
const ACTORS: [(&str, Role); 4] = [
    ("ann", Role::Admin),
    ("tim", Role::TokenManager),
    ("mia", Role::Member),
    ("max", Role::Member),
];

/// The external plugin `shop`: version N has the first N+1 methods.
struct PluginMethod {
    id: &'static str,
    verb: &'static str,
    path: &'static str,
    /// A concrete request for forward auth.
    probe: &'static str,
    read: bool,
}

const SHOP: [PluginMethod; 4] = [
    PluginMethod {
        id: "shop.orders.list",
        verb: "GET",
        path: "/shop/orders",
        probe: "/shop/orders?page=2",
        read: true,
    },
    PluginMethod {
        id: "shop.orders.create",
        verb: "POST",
        path: "/shop/orders",
        probe: "/shop/orders",
        read: false,
    },
    PluginMethod {
        id: "shop.orders.delete",
        verb: "DELETE",
        path: "/shop/orders/{id}",
        probe: "/shop/orders/42",
        read: false,
    },
    PluginMethod {
        id: "shop.reports.get",
        verb: "GET",
        path: "/shop/reports",
        probe: "/shop/reports",
        read: true,
    },
];

fn shop_methods(version: u8) -> &'static [PluginMethod] {
    &SHOP[..usize::from(version) + 1]
}

/// A token's scope as given: a set id or a list of method ids and globs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    Set(&'static str),
    Methods(Vec<&'static str>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ip {
    Anywhere,
    /// Allows the test client (127.0.0.1).
    Loopback,
    /// Refuses the test client.
    Elsewhere,
}

impl Ip {
    fn filter(self) -> Vec<&'static str> {
        match self {
            Ip::Anywhere => vec![],
            Ip::Loopback => vec!["127.0.0.0/8"],
            Ip::Elsewhere => vec!["10.0.0.0/8"],
        }
    }
}

#[derive(Clone, Debug)]
struct CustomSet {
    entries: Vec<&'static str>,
    read_only: bool,
}

#[derive(Clone, Debug)]
struct User {
    role: Role,
    active: bool,
}

#[derive(Clone, Debug)]
struct Token {
    owner: usize,
    scope: Scope,
    /// The creator ceiling (concrete method ids); None: none.
    ceiling: Option<Set>,
    /// Unix seconds; expired when `<= now`.
    expires_at: i64,
    enabled: bool,
    ip: Ip,
    generation: u32,
    /// Until when the previous generation's secret still works.
    grace_until: Option<i64>,
    deleted: bool,
}

/// A credential: a user's login session, or one generation of a token's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cred {
    Session(usize),
    Secret(usize, u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Refusal {
    status: u16,
    /// Empty: any code.
    code: &'static str,
}

fn no(status: u16, code: &'static str) -> Refusal {
    Refusal { status, code }
}

/// What a successful operation changes.
#[derive(Clone, Debug)]
enum Effect {
    /// A new token (create, copy); its id and secret come from the answer.
    Mint(Token),
    /// A token's new state; `new_secret` for a regeneration.
    Token(usize, Token, bool),
    User(usize, User),
    Plugin(u8),
    ScopeSet(&'static str, CustomSet),
    Nothing,
}

type Expect = Result<Effect, Vec<Refusal>>;

#[derive(Clone, Debug)]
struct Model {
    /// Sigil's own methods: id → read access.
    builtin: BTreeMap<String, bool>,
    users: Vec<User>,
    tokens: Vec<Token>,
    sets: BTreeMap<&'static str, CustomSet>,
    /// Registered version of `shop` (0-based index into `SHOP`'s growth), if any.
    plugin: Option<u8>,
}

fn glob(pattern: &str, id: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == id,
        Some((head, tail)) => {
            id.starts_with(head) && (head.len()..=id.len()).any(|i| glob(tail, &id[i..]))
        }
    }
}

fn and(a: &Set, b: &Set) -> Set {
    a.intersection(b).cloned().collect()
}

impl Model {
    fn new(builtin: BTreeMap<String, bool>) -> Self {
        Model {
            builtin,
            users: ACTORS
                .iter()
                .map(|&(_, role)| User { role, active: true })
                .collect(),
            tokens: Vec::new(),
            sets: BTreeMap::new(),
            plugin: None,
        }
    }

    /// Every method of the tenant's registry, with its read access.
    fn methods(&self) -> BTreeMap<String, bool> {
        let mut all = self.builtin.clone();
        if let Some(v) = self.plugin {
            all.extend(shop_methods(v).iter().map(|m| (m.id.to_owned(), m.read)));
        }
        all
    }

    fn visible(&self) -> Set {
        self.methods().into_keys().collect()
    }

    fn reads(&self) -> Set {
        self.methods()
            .into_iter()
            .filter(|(_, read)| *read)
            .map(|(id, _)| id)
            .collect()
    }

    fn role_rights(&self, role: Role) -> Set {
        let mut denied: Vec<&str> = OPERATOR_ONLY.to_vec();
        if role != Role::Admin {
            denied.extend(ADMIN_ONLY);
        }
        if role == Role::Member {
            denied.extend(MANAGER_ONLY);
        }
        let mut set = self.visible();
        set.retain(|m| !denied.contains(&m.as_str()));
        set
    }

    /// Entries (ids and globs) against the registry: (methods, entries matching nothing).
    fn resolve_entries(&self, entries: &[&'static str]) -> (Set, Vec<&'static str>) {
        let visible = self.visible();
        let mut out = Set::new();
        let mut unknown = Vec::new();
        for e in entries {
            let hits: Vec<&String> = visible.iter().filter(|m| glob(e, m)).collect();
            if hits.is_empty() {
                unknown.push(*e);
            }
            out.extend(hits.into_iter().cloned());
        }
        (out, unknown)
    }

    /// A scope for a new or changed token; an unknown set or entry is refused.
    fn resolve(&self, scope: &Scope) -> Result<Set, Refusal> {
        match scope {
            Scope::Methods(entries) => match self.resolve_entries(entries) {
                (set, unknown) if unknown.is_empty() => Ok(set),
                _ => Err(no(422, "unknown_methods")),
            },
            Scope::Set(id) => self
                .resolve_set(id)
                .ok_or_else(|| no(422, "unknown_scope_set")),
        }
    }

    /// A stored token's scope now: entries matching nothing grant nothing.
    fn resolve_lenient(&self, scope: &Scope) -> Set {
        match scope {
            Scope::Methods(entries) => self.resolve_entries(entries).0,
            Scope::Set(id) => self.resolve_set(id).unwrap_or_default(),
        }
    }

    fn resolve_set(&self, id: &str) -> Option<Set> {
        match id {
            "read-only" => Some(self.reads()),
            "read-change" => Some(self.visible()),
            "shop.reader" => self.plugin.map(|v| {
                shop_methods(v)
                    .iter()
                    .filter(|m| m.read)
                    .map(|m| m.id.to_owned())
                    .collect()
            }),
            custom => self.sets.get(custom).map(|s| {
                let set = self.resolve_entries(&s.entries).0;
                if s.read_only {
                    and(&set, &self.reads())
                } else {
                    set
                }
            }),
        }
    }

    /// What the token's scope and ceiling allow (before the owner's role).
    fn token_scope(&self, t: &Token) -> Set {
        let scope = self.resolve_lenient(&t.scope);
        match &t.ceiling {
            Some(ceiling) => and(&scope, ceiling),
            None => scope,
        }
    }

    /// Effective rights of a token: scope ∩ the owner's current role ∩ ceiling.
    fn token_rights(&self, t: &Token) -> Set {
        and(
            &self.token_scope(t),
            &self.role_rights(self.users[t.owner].role),
        )
    }

    fn owner(&self, c: Cred) -> usize {
        match c {
            Cred::Session(u) => u,
            Cred::Secret(t, _) => self.tokens[t].owner,
        }
    }

    fn cred_scope(&self, c: Cred) -> Set {
        match c {
            Cred::Session(_) => self.visible(),
            Cred::Secret(t, _) => self.token_scope(&self.tokens[t]),
        }
    }

    fn rights(&self, c: Cred) -> Set {
        match c {
            Cred::Session(u) => self.role_rights(self.users[u].role),
            Cred::Secret(t, _) => self.token_rights(&self.tokens[t]),
        }
    }

    /// When a token credential stops working; sessions are not limited here.
    fn cred_expiry(&self, c: Cred) -> Option<i64> {
        match c {
            Cred::Session(_) => None,
            Cred::Secret(t, g) => {
                let t = &self.tokens[t];
                let grace = (g != t.generation).then_some(t.grace_until).flatten();
                Some(grace.map_or(t.expires_at, |g| g.min(t.expires_at)))
            }
        }
    }

    fn is_session_of(c: Cred, user: usize) -> bool {
        c == Cred::Session(user)
    }

    /// Whether the credential works, else its 401 code; `ip` checks the client address.
    fn life(&self, c: Cred, now: i64, ip: bool) -> Result<(), &'static str> {
        let (owner, token) = match c {
            Cred::Session(u) => (u, None),
            Cred::Secret(t, g) => (self.tokens[t].owner, Some((&self.tokens[t], g))),
        };
        if let Some((t, g)) = token {
            let in_grace = g + 1 == t.generation && t.grace_until.is_some_and(|u| u > now);
            if t.deleted {
                return Err("token_unknown");
            } else if g != t.generation && !in_grace {
                return Err("token_replaced");
            } else if !t.enabled {
                return Err("token_disabled");
            } else if t.expires_at <= now {
                return Err("token_expired");
            }
        }
        if !self.users[owner].active {
            return Err("user_deactivated");
        }
        if ip && token.is_some_and(|(t, _)| t.ip == Ip::Elsewhere) {
            return Err("ip_not_allowed");
        }
        Ok(())
    }

    /// How a call of `method` with the credential is refused, if it is.
    fn refusal(&self, c: Cred, method: &str, now: i64) -> Option<Refusal> {
        if let Err(code) = self.life(c, now, true) {
            return Some(no(401, code));
        }
        if self.rights(c).contains(method) {
            None
        } else if self.cred_scope(c).contains(method) {
            Some(no(403, "user_lacks_permission"))
        } else {
            Some(no(403, "method_not_in_scope"))
        }
    }

    /// Every credential ever issued, dead or alive.
    fn credentials(&self) -> Vec<Cred> {
        let sessions = (0..self.users.len()).map(Cred::Session);
        let secrets = self
            .tokens
            .iter()
            .enumerate()
            .flat_map(|(i, t)| (1..=t.generation).map(move |g| Cred::Secret(i, g)));
        sessions.chain(secrets).collect()
    }

    /// The credential an actor uses: their session, or the n-th of their working secrets.
    fn credential(&self, by: By, now: i64) -> Cred {
        let working: Vec<Cred> = self
            .credentials()
            .into_iter()
            .filter(|&c| {
                matches!(c, Cred::Secret(..))
                    && self.owner(c) == by.user
                    && self.life(c, now, true).is_ok()
            })
            .collect();
        match by.token {
            Some(n) if !working.is_empty() => working[n % working.len()],
            _ => Cred::Session(by.user),
        }
    }

    fn manages(&self, c: Cred, token: usize) -> bool {
        let actor = self.owner(c);
        self.tokens[token].owner == actor || self.users[actor].role != Role::Member
    }

    /// Rules on a new or changed expiry.
    fn expiry_rules(&self, c: Cred, expires_at: Option<i64>, now: i64, out: &mut Vec<Refusal>) {
        if expires_at.is_none() {
            out.push(no(422, "expiry_required"));
        }
        if expires_at.is_some_and(|t| t > now + MAX_LIFETIME) {
            out.push(no(422, "expiry_exceeds_policy"));
        }
        // A token cannot make a token that outlives it (sessions are not limited).
        if let Some(limit) = self.cred_expiry(c) {
            if expires_at.is_none_or(|t| t > limit) {
                out.push(no(403, "expiry_exceeds_credential"));
            }
        }
    }

    /// A scope `wanted` for `owner` must stay within the acting credential, unless the
    /// credential is the owner's own session.
    fn scope_exceeds(&self, c: Cred, owner: usize, wanted: &Set) -> bool {
        !Self::is_session_of(c, owner)
            && !and(wanted, &self.role_rights(self.users[owner].role)).is_subset(&self.rights(c))
    }

    /// Changing or regenerating a token needs its current rights within the credential.
    fn token_exceeds(&self, c: Cred, token: usize) -> bool {
        let t = &self.tokens[token];
        !Self::is_session_of(c, t.owner) && !self.token_rights(t).is_subset(&self.rights(c))
    }

    /// The ceiling a new scope gets: none from the owner's session, else what the acting
    /// credential may do.
    fn ceiling(&self, c: Cred, owner: usize, wanted: &Set) -> Option<Set> {
        (!Self::is_session_of(c, owner)).then(|| and(wanted, &self.rights(c)))
    }

    /// The outcome of an operation done with credential `c` at `now` (unix seconds).
    fn expect(&self, op: &Op, c: Cred, now: i64) -> Expect {
        let gate = |method: &str| match self.refusal(c, method, now) {
            Some(r) => Err(vec![r]),
            None => Ok(()),
        };
        // Another's (or a deleted) token is not found, whatever else is wrong.
        let found = |token: usize| {
            if self.tokens[token].deleted || !self.manages(c, token) {
                Err(vec![no(404, "not_found")])
            } else {
                Ok(())
            }
        };
        let refused = |rules: Vec<Refusal>, effect: Effect| {
            if rules.is_empty() {
                Ok(effect)
            } else {
                Err(rules)
            }
        };
        let actor = self.owner(c);
        let mut rules = Vec::new();
        match op {
            Op::Create {
                by,
                owner,
                scope,
                expiry,
                ip,
                enabled,
            } => {
                gate("tokens.create")?;
                let owner = &owner.unwrap_or(by.user);
                if *owner != actor && self.users[actor].role == Role::Member {
                    rules.push(no(403, "user_lacks_permission"));
                }
                let wanted = self.resolve(scope).map_err(|r| rules.push(r)).ok();
                if !self.users[*owner].active {
                    rules.push(no(422, "owner_deactivated"));
                }
                let expires_at = expiry.at(now);
                self.expiry_rules(c, expires_at, now, &mut rules);
                let wanted = wanted.unwrap_or_default();
                if self.scope_exceeds(c, *owner, &wanted) {
                    rules.push(no(403, "scope_exceeds_credential"));
                }
                refused(
                    rules,
                    Effect::Mint(Token {
                        owner: *owner,
                        scope: scope.clone(),
                        ceiling: self.ceiling(c, *owner, &wanted),
                        expires_at: expires_at.unwrap_or_default(),
                        enabled: *enabled,
                        ip: *ip,
                        generation: 1,
                        grace_until: None,
                        deleted: false,
                    }),
                )
            }
            Op::Copy { token, .. } => {
                gate("tokens.copy")?;
                found(*token)?;
                let source = &self.tokens[*token];
                if !self.users[source.owner].active {
                    rules.push(no(422, "owner_deactivated"));
                }
                let expires_at = Some(source.expires_at).filter(|t| *t > now);
                self.expiry_rules(c, expires_at, now, &mut rules);
                // The copy holds what the source holds: its scope within its ceiling.
                let held = self.token_scope(source);
                if self.scope_exceeds(c, source.owner, &held) {
                    rules.push(no(403, "scope_exceeds_credential"));
                }
                // The source's ceiling carries over; another's credential adds its own.
                let ceiling = match self.ceiling(c, source.owner, &held) {
                    None => source.ceiling.clone(),
                    bounded => bounded,
                };
                refused(
                    rules,
                    Effect::Mint(Token {
                        ceiling,
                        expires_at: expires_at.unwrap_or_default(),
                        generation: 1,
                        grace_until: None,
                        ..source.clone()
                    }),
                )
            }
            Op::Regenerate {
                token,
                grace,
                expiry,
                ..
            } => {
                gate("tokens.regenerate")?;
                found(*token)?;
                let t = &self.tokens[*token];
                if self.token_exceeds(c, *token) {
                    rules.push(no(403, "token_exceeds_credential"));
                }
                // The new secret gets the new expiry, or keeps the token's (which must not
                // have passed); either is checked like a new one.
                let expires_at = match expiry {
                    Some(e) => e.at(now),
                    None => Some(t.expires_at),
                };
                if expiry.is_none() && t.expires_at <= now {
                    rules.push(no(422, "expiry_required"));
                } else {
                    self.expiry_rules(c, expires_at, now, &mut rules);
                }
                refused(
                    rules,
                    Effect::Token(
                        *token,
                        Token {
                            generation: t.generation + 1,
                            grace_until: grace.then_some(now + GRACE_SECS),
                            expires_at: expires_at.unwrap_or(t.expires_at),
                            ..t.clone()
                        },
                        true,
                    ),
                )
            }
            Op::Update { token, change, .. } => {
                gate("tokens.update")?;
                found(*token)?;
                if self.token_exceeds(c, *token) {
                    rules.push(no(403, "token_exceeds_credential"));
                }
                let mut t = self.tokens[*token].clone();
                match change {
                    Change::Scope(scope) => {
                        let wanted = self.resolve(scope).map_err(|r| rules.push(r)).ok();
                        let wanted = wanted.unwrap_or_default();
                        if self.scope_exceeds(c, t.owner, &wanted) {
                            rules.push(no(403, "scope_exceeds_credential"));
                        }
                        t.ceiling = self.ceiling(c, t.owner, &wanted);
                        t.scope = scope.clone();
                    }
                    // A past time expires the token now: always allowed.
                    Change::Expiry(ExpiryChange::Now) => t.expires_at = now,
                    Change::Expiry(ExpiryChange::Set(e)) => {
                        let at = e.at(now);
                        self.expiry_rules(c, at, now, &mut rules);
                        t.expires_at = at.unwrap_or_default();
                    }
                    Change::Enabled(enabled) => t.enabled = *enabled,
                    Change::Ip(ip) => t.ip = *ip,
                }
                refused(rules, Effect::Token(*token, t, false))
            }
            Op::Delete { token, .. } => {
                gate("tokens.delete")?;
                found(*token)?;
                let t = Token {
                    deleted: true,
                    ..self.tokens[*token].clone()
                };
                Ok(Effect::Token(*token, t, false))
            }
            Op::SetRole { user, role, .. } => {
                gate("users.update")?;
                let u = User {
                    role: *role,
                    ..self.users[*user].clone()
                };
                Ok(Effect::User(*user, u))
            }
            Op::Deactivate { user, .. } => {
                gate("users.deactivate")?;
                if *user == actor {
                    return Err(vec![no(409, "cannot_deactivate_self")]);
                }
                let u = User {
                    active: false,
                    ..self.users[*user].clone()
                };
                Ok(Effect::User(*user, u))
            }
            Op::Reactivate { user, .. } => {
                gate("users.update")?;
                let u = User {
                    active: true,
                    ..self.users[*user].clone()
                };
                Ok(Effect::User(*user, u))
            }
            Op::RegisterPlugin { version, .. } => {
                gate("plugins.register")?;
                match (version, self.plugin) {
                    // A method outside the plugin's namespace (`tokens.export`).
                    (PluginVersion::OutsideNamespace, _) => Err(vec![no(422, "")]),
                    (PluginVersion::V(v), Some(current)) if *v < current => {
                        Err(vec![no(409, "version_not_newer")])
                    }
                    (PluginVersion::V(v), _) => Ok(Effect::Plugin(*v)),
                }
            }
            Op::CreateScopeSet {
                set,
                entries,
                read_only,
                ..
            } => {
                gate("scope_sets.create")?;
                if self.sets.contains_key(set) {
                    rules.push(no(409, "scope_set_exists"));
                }
                if !self.resolve_entries(entries).1.is_empty() {
                    rules.push(no(422, "unknown_methods"));
                }
                let s = CustomSet {
                    entries: entries.clone(),
                    read_only: *read_only,
                };
                refused(rules, Effect::ScopeSet(set, s))
            }
            Op::UpdateScopeSet {
                set,
                entries,
                read_only,
                ..
            } => {
                gate("scope_sets.update")?;
                let Some(before) = self.sets.get(set) else {
                    return Err(vec![no(404, "not_found")]);
                };
                if !self.resolve_entries(entries).1.is_empty() {
                    rules.push(no(422, "unknown_methods"));
                }
                let s = CustomSet {
                    entries: entries.clone(),
                    // Not sending `access` keeps the set's.
                    read_only: *read_only || before.read_only,
                };
                refused(rules, Effect::ScopeSet(set, s))
            }
            Op::RotateKey { .. } => {
                gate("signing_keys.rotate")?;
                Ok(Effect::Nothing)
            }
        }
    }

    fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::Mint(t) => self.tokens.push(t.clone()),
            Effect::Token(i, t, _) => self.tokens[*i] = t.clone(),
            Effect::User(i, u) => self.users[*i] = u.clone(),
            Effect::Plugin(v) => self.plugin = Some(*v),
            Effect::ScopeSet(id, s) => {
                self.sets.insert(id, s.clone());
            }
            Effect::Nothing => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operations and their generators.
// ---------------------------------------------------------------------------------------

/// Who acts: a user with their login session, or with the n-th of their working tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
struct By {
    user: usize,
    token: Option<usize>,
}

impl fmt::Debug for By {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.token {
            None => write!(f, "{}/session", ACTORS[self.user].0),
            Some(n) => write!(f, "{}/token{n}", ACTORS[self.user].0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    Days(i64),
    Never,
}

impl Expiry {
    fn at(self, now: i64) -> Option<i64> {
        match self {
            Expiry::Days(d) => Some(now + d * DAY),
            Expiry::Never => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExpiryChange {
    Now,
    Set(Expiry),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Scope(Scope),
    Expiry(ExpiryChange),
    Enabled(bool),
    Ip(Ip),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PluginVersion {
    /// Version `1.<n>.0` with `n + 2` methods.
    V(u8),
    /// A manifest naming a method of another namespace.
    OutsideNamespace,
}

/// Token ops name a token by its index among every token created so far (modulo).
#[derive(Clone, Debug)]
enum Op {
    Create {
        by: By,
        /// None: the actor.
        owner: Option<usize>,
        scope: Scope,
        expiry: Expiry,
        ip: Ip,
        enabled: bool,
    },
    Copy {
        by: By,
        token: usize,
    },
    Regenerate {
        by: By,
        token: usize,
        grace: bool,
        expiry: Option<Expiry>,
    },
    Update {
        by: By,
        token: usize,
        change: Change,
    },
    Delete {
        by: By,
        token: usize,
    },
    SetRole {
        by: By,
        user: usize,
        role: Role,
    },
    Deactivate {
        by: By,
        user: usize,
    },
    Reactivate {
        by: By,
        user: usize,
    },
    RegisterPlugin {
        by: By,
        version: PluginVersion,
    },
    CreateScopeSet {
        by: By,
        set: &'static str,
        entries: Vec<&'static str>,
        read_only: bool,
    },
    UpdateScopeSet {
        by: By,
        set: &'static str,
        entries: Vec<&'static str>,
        read_only: bool,
    },
    RotateKey {
        by: By,
    },
}

impl Op {
    fn by(&self) -> By {
        match self {
            Op::Create { by, .. }
            | Op::Copy { by, .. }
            | Op::Regenerate { by, .. }
            | Op::Update { by, .. }
            | Op::Delete { by, .. }
            | Op::SetRole { by, .. }
            | Op::Deactivate { by, .. }
            | Op::Reactivate { by, .. }
            | Op::RegisterPlugin { by, .. }
            | Op::CreateScopeSet { by, .. }
            | Op::UpdateScopeSet { by, .. }
            | Op::RotateKey { by } => *by,
        }
    }

    fn token_mut(&mut self) -> Option<&mut usize> {
        match self {
            Op::Copy { token, .. }
            | Op::Regenerate { token, .. }
            | Op::Update { token, .. }
            | Op::Delete { token, .. } => Some(token),
            _ => None,
        }
    }

    /// The op with its token index taken modulo the tokens created so far; None when it
    /// names a token and there is none yet.
    fn resolved(&self, count: usize) -> Option<(Op, Option<usize>)> {
        let mut op = self.clone();
        match op.token_mut() {
            Some(_) if count == 0 => None,
            Some(token) => {
                *token %= count;
                let t = *token;
                Some((op, Some(t)))
            }
            None => Some((op, None)),
        }
    }
}

const TOKEN_ENTRIES: &[&str] = &[
    "*",
    "*",
    "*",
    "tokens.*",
    "tokens.*",
    "tokens.*",
    "shop.*",
    "me.get",
    "tokens.create",
    "tokens.update",
    "tokens.regenerate",
    "users.*",
    "users.update",
    "scope_sets.*",
    "plugins.*",
    "shop.orders.delete",
    "signing_keys.*",
];
const SET_ENTRIES: &[&str] = &[
    "shop.*",
    "tokens.*",
    "me.get",
    "shop.orders.list",
    "users.*",
    "*",
    "tokens.create",
    "shop.orders.delete",
];
const SETS: &[&str] = &[
    "read-only",
    "read-only",
    "read-change",
    "read-change",
    "read-change",
    "cs1",
    "cs2",
    "shop.reader",
];

fn by() -> impl Strategy<Value = By> {
    (
        0..ACTORS.len(),
        prop_oneof![1 => Just(None), 1 => (0..8usize).prop_map(Some)],
    )
        .prop_map(|(user, token)| By { user, token })
}

/// Administration is mostly tried by the admin (others are refused at the gate).
fn by_admin() -> impl Strategy<Value = By> {
    prop_oneof![3 => by().prop_map(|b| By { user: 0, ..b }), 1 => by()]
}

fn user() -> impl Strategy<Value = usize> {
    0..ACTORS.len()
}

fn token_ref() -> impl Strategy<Value = usize> {
    0..16usize
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        2 => prop::sample::select(SETS).prop_map(Scope::Set),
        3 => prop::collection::vec(prop::sample::select(TOKEN_ENTRIES), 1..=2)
            .prop_map(Scope::Methods),
    ]
}

fn expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![
        8 => prop::sample::select(vec![2i64, 20, 40]).prop_map(Expiry::Days),
        1 => Just(Expiry::Days(400)),
        1 => Just(Expiry::Never),
    ]
}

fn ip() -> impl Strategy<Value = Ip> {
    prop_oneof![4 => Just(Ip::Anywhere), 1 => Just(Ip::Loopback), 1 => Just(Ip::Elsewhere)]
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![Role::Admin, Role::TokenManager, Role::Member])
}

fn set_entries() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(SET_ENTRIES), 1..=2)
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => scope().prop_map(Change::Scope),
        1 => Just(Change::Expiry(ExpiryChange::Now)),
        2 => expiry().prop_map(|e| Change::Expiry(ExpiryChange::Set(e))),
        2 => any::<bool>().prop_map(Change::Enabled),
        1 => ip().prop_map(Change::Ip),
    ]
}

fn op() -> BoxedStrategy<Op> {
    let weighted: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (
            12,
            (
                by(),
                prop_oneof![3 => Just(None), 2 => user().prop_map(Some)],
                scope(),
                expiry(),
                ip(),
                prop::bool::weighted(0.9),
            )
                .prop_map(|(by, owner, scope, expiry, ip, enabled)| Op::Create {
                    by,
                    owner,
                    scope,
                    expiry,
                    ip,
                    enabled,
                })
                .boxed(),
        ),
        (
            3,
            (by(), token_ref())
                .prop_map(|(by, token)| Op::Copy { by, token })
                .boxed(),
        ),
        (
            4,
            (by(), token_ref(), any::<bool>(), prop::option::of(expiry()))
                .prop_map(|(by, token, grace, expiry)| Op::Regenerate {
                    by,
                    token,
                    grace,
                    expiry,
                })
                .boxed(),
        ),
        (
            8,
            (by(), token_ref(), change())
                .prop_map(|(by, token, change)| Op::Update { by, token, change })
                .boxed(),
        ),
        (
            2,
            (by(), token_ref())
                .prop_map(|(by, token)| Op::Delete { by, token })
                .boxed(),
        ),
        (
            3,
            (by_admin(), user(), role())
                .prop_map(|(by, user, role)| Op::SetRole { by, user, role })
                .boxed(),
        ),
        (
            1,
            (by_admin(), user())
                .prop_map(|(by, user)| Op::Deactivate { by, user })
                .boxed(),
        ),
        (
            2,
            (by_admin(), user())
                .prop_map(|(by, user)| Op::Reactivate { by, user })
                .boxed(),
        ),
        (
            2,
            (
                by_admin(),
                prop_oneof![
                    6 => (0..3u8).prop_map(PluginVersion::V),
                    1 => Just(PluginVersion::OutsideNamespace),
                ],
            )
                .prop_map(|(by, version)| Op::RegisterPlugin { by, version })
                .boxed(),
        ),
        (
            2,
            (
                by_admin(),
                prop::sample::select(vec!["cs1", "cs2"]),
                set_entries(),
                any::<bool>(),
            )
                .prop_map(|(by, set, entries, read_only)| Op::CreateScopeSet {
                    by,
                    set,
                    entries,
                    read_only,
                })
                .boxed(),
        ),
        (
            1,
            (
                by_admin(),
                prop::sample::select(vec!["cs1", "cs2"]),
                set_entries(),
                prop::bool::weighted(0.3),
            )
                .prop_map(|(by, set, entries, read_only)| Op::UpdateScopeSet {
                    by,
                    set,
                    entries,
                    read_only,
                })
                .boxed(),
        ),
        (1, by_admin().prop_map(|by| Op::RotateKey { by }).boxed()),
    ];
    Union::new_weighted(weighted).boxed()
}

// ---------------------------------------------------------------------------------------
// The driver: runs one sequence against the server and compares after every step.
// ---------------------------------------------------------------------------------------

/// Safe Sigil reads used as "one allowed, one refused" probes.
const PROBES: &[(&str, &str)] = &[
    ("me.get", "/api/v1/users/me"),
    ("tokens.list", "/api/v1/tokens"),
    ("users.list", "/api/v1/users"),
    ("tokens.hygiene", "/api/v1/tokens/hygiene"),
    ("signing_keys.list", "/api/v1/tenant/signing-keys"),
    ("tenant.get", "/api/v1/tenant"),
    ("plugins.list", "/api/v1/plugins"),
    ("scope_sets.list", "/api/v1/scope-sets"),
    ("methods.list", "/api/v1/methods"),
    ("audit.list", "/api/v1/audit-events"),
];

static TENANTS: AtomicU32 = AtomicU32::new(0);

struct Case<'a> {
    s: &'a TestServer,
    /// A separate admin's session that reads tokens and introspects credentials.
    observer: String,
    m: Model,
    user_ids: Vec<String>,
    sessions: Vec<String>,
    token_ids: Vec<String>,
    /// Per token: generation → secret.
    secrets: Vec<BTreeMap<u32, String>>,
    /// What was done so far, for the failure report.
    log: Vec<String>,
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn rfc3339(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .expect("valid time")
        .to_rfc3339()
}

fn seen(r: &Resp) -> String {
    format!("{} {}", r.status.as_u16(), r.code())
}

fn matches_refusal(r: &Resp, expected: &[Refusal]) -> bool {
    expected
        .iter()
        .any(|e| r.status.as_u16() == e.status && (e.code.is_empty() || r.code() == e.code))
}

fn describe(expected: &[Refusal]) -> String {
    expected
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.status,
                if e.code.is_empty() { "*" } else { e.code }
            )
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

fn scope_json(scope: &Scope) -> Value {
    match scope {
        Scope::Set(id) => json!({ "scope_set": id }),
        Scope::Methods(m) => json!({ "methods": m }),
    }
}

fn manifest(version: PluginVersion) -> Value {
    let (v, methods): (String, Vec<Value>) = match version {
        PluginVersion::V(v) => (
            format!("1.{v}.0"),
            shop_methods(v)
                .iter()
                .map(|m| {
                    json!({"id": m.id, "http": {"method": m.verb, "path": m.path},
                           "access": if m.read { "read" } else { "change" }})
                })
                .collect(),
        ),
        PluginVersion::OutsideNamespace => (
            "9.0.0".into(),
            vec![
                json!({"id": "shop.orders.list", "http": {"method": "GET", "path": "/shop/orders"}, "access": "read"}),
                json!({"id": "tokens.export", "http": {"method": "GET", "path": "/shop/export"}, "access": "read"}),
            ],
        ),
    };
    json!({"manifest": {
        "id": "shop", "name": "Shop", "version": v, "methods": methods,
        "scope_sets": [{"id": "reader", "name": "Shop reader", "methods": ["shop.*"], "access": "read"}],
    }})
}

fn set_of(v: &Value) -> Option<Set> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect()
    })
}

fn diff(expected: &Set, got: &Set) -> String {
    let missing: Vec<&String> = expected.difference(got).collect();
    let extra: Vec<&String> = got.difference(expected).collect();
    format!("missing {missing:?}, extra {extra:?}")
}

impl<'a> Case<'a> {
    async fn start(s: &'a TestServer) -> Case<'a> {
        let slug = format!("model-{}", TENANTS.fetch_add(1, Ordering::Relaxed));
        let t = s.tenant_admin(&slug).await;
        let mut user_ids = Vec::new();
        let mut sessions = Vec::new();
        for (name, role) in ACTORS {
            let u = s.user(&t, name, role.as_str(), "person").await;
            user_ids.push(u.id);
            sessions.push(u.token);
        }
        let r = s
            .get("/api/v1/methods?plugin=sigil&limit=200", &t.admin)
            .await;
        assert_eq!(r.status, 200, "listMethods: {}", r.body);
        let builtin: BTreeMap<String, bool> = r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().expect("id").to_owned(),
                    m["access"] == "read",
                )
            })
            .collect();
        for id in ADMIN_ONLY.iter().chain(MANAGER_ONLY).chain(OPERATOR_ONLY) {
            assert!(builtin.contains_key(*id), "{id} is not a Sigil method");
        }
        Case {
            s,
            observer: t.admin,
            m: Model::new(builtin),
            user_ids,
            sessions,
            token_ids: Vec::new(),
            secrets: Vec::new(),
            log: Vec::new(),
        }
    }

    fn secret(&self, c: Cred) -> &str {
        match c {
            Cred::Session(u) => &self.sessions[u],
            Cred::Secret(t, g) => &self.secrets[t][&g],
        }
    }

    fn name(&self, c: Cred) -> String {
        match c {
            Cred::Session(u) => format!("{}/session", ACTORS[u].0),
            Cred::Secret(t, g) => {
                format!("{}'s token#{t} gen {g}", ACTORS[self.m.tokens[t].owner].0)
            }
        }
    }

    async fn send(&self, method: Method, path: &str, c: Cred, body: Option<Value>) -> Resp {
        self.s.call(method, path, Some(self.secret(c)), body).await
    }

    /// The request an operation makes.
    fn request(&self, op: &Op, now: i64) -> (Method, String, Option<Value>) {
        let token_path = |t: usize| format!("/api/v1/tokens/{}", self.token_ids[t]);
        let user_path = |u: usize| format!("/api/v1/users/{}", self.user_ids[u]);
        match op {
            Op::Create {
                by,
                owner,
                scope,
                expiry,
                ip,
                enabled,
            } => {
                let mut body = scope_json(scope);
                body["name"] = json!("model token");
                body["expires_at"] = json!(expiry.at(now).map(rfc3339));
                body["ip_filter"] = json!(ip.filter());
                body["enabled"] = json!(enabled);
                if let Some(owner) = owner.filter(|o| *o != by.user) {
                    body["owner_id"] = json!(self.user_ids[owner]);
                }
                (Method::POST, "/api/v1/tokens".into(), Some(body))
            }
            Op::Copy { token, .. } => (Method::POST, format!("{}/copy", token_path(*token)), None),
            Op::Regenerate {
                token,
                grace,
                expiry,
                ..
            } => {
                let mut body = json!({"grace_period_secs": if *grace { GRACE_SECS } else { 0 }});
                if let Some(e) = expiry {
                    body["expires_at"] = json!(e.at(now).map(rfc3339));
                }
                (
                    Method::POST,
                    format!("{}/regenerate", token_path(*token)),
                    Some(body),
                )
            }
            Op::Update { token, change, .. } => {
                let body = match change {
                    Change::Scope(scope) => scope_json(scope),
                    Change::Expiry(ExpiryChange::Now) => json!({"expires_at": rfc3339(now - 1)}),
                    Change::Expiry(ExpiryChange::Set(e)) => {
                        json!({"expires_at": e.at(now).map(rfc3339)})
                    }
                    Change::Enabled(enabled) => json!({ "enabled": enabled }),
                    Change::Ip(ip) => json!({"ip_filter": ip.filter()}),
                };
                (Method::PATCH, token_path(*token), Some(body))
            }
            Op::Delete { token, .. } => (Method::DELETE, token_path(*token), None),
            Op::SetRole { user, role, .. } => (
                Method::PATCH,
                user_path(*user),
                Some(json!({"role": role.as_str()})),
            ),
            Op::Deactivate { user, .. } => (
                Method::POST,
                format!("{}/deactivate", user_path(*user)),
                None,
            ),
            Op::Reactivate { user, .. } => (
                Method::PATCH,
                user_path(*user),
                Some(json!({"active": true})),
            ),
            Op::RegisterPlugin { version, .. } => (
                Method::POST,
                "/api/v1/plugins".into(),
                Some(manifest(*version)),
            ),
            Op::CreateScopeSet {
                set,
                entries,
                read_only,
                ..
            } => {
                let mut body = json!({"id": set, "name": set, "methods": entries});
                if *read_only {
                    body["access"] = json!("read");
                }
                (Method::POST, "/api/v1/scope-sets".into(), Some(body))
            }
            Op::UpdateScopeSet {
                set,
                entries,
                read_only,
                ..
            } => {
                let mut body = json!({ "methods": entries });
                if *read_only {
                    body["access"] = json!("read");
                }
                (
                    Method::PATCH,
                    format!("/api/v1/scope-sets/{set}"),
                    Some(body),
                )
            }
            Op::RotateKey { .. } => (
                Method::POST,
                "/api/v1/tenant/signing-keys/rotate".into(),
                Some(json!({})),
            ),
        }
    }

    fn success_status(op: &Op, effect: &Effect, first_plugin: bool) -> u16 {
        match (op, effect) {
            (Op::Create { .. } | Op::Copy { .. } | Op::CreateScopeSet { .. }, _) => 201,
            (Op::RotateKey { .. }, _) => 201,
            (Op::Delete { .. }, _) => 204,
            (Op::RegisterPlugin { .. }, _) if first_plugin => 201,
            _ => 200,
        }
    }

    /// Runs one operation; Err describes a disagreement.
    async fn step(&mut self, op: &Op) -> Result<(), String> {
        let Some((op, target)) = op.resolved(self.m.tokens.len()) else {
            return Ok(()); // no token yet
        };
        let now = now();
        let c = self.m.credential(op.by(), now);
        let expected = self.m.expect(&op, c, now);
        let (method, path, body) = self.request(&op, now);
        let r = self.send(method, &path, c, body).await;
        let mut line = format!("{op:?} with {}", self.name(c));
        if let Some(t) = target {
            line.push_str(&format!(
                " on token#{t} (owner {})",
                ACTORS[self.m.tokens[t].owner].0
            ));
        }
        match expected {
            Err(refusals) => {
                line.push_str(&format!(" → expected {}", describe(&refusals)));
                let ok = matches_refusal(&r, &refusals);
                if !ok {
                    line.push_str(&format!(", got {}: {}", seen(&r), r.body));
                }
                self.log.push(line);
                if !ok {
                    return Err("refusal differs".into());
                }
            }
            Ok(effect) => {
                let status = Self::success_status(&op, &effect, self.m.plugin.is_none());
                line.push_str(&format!(" → expected {status}"));
                if r.status.as_u16() != status {
                    line.push_str(&format!(", got {}: {}", seen(&r), r.body));
                    self.log.push(line);
                    return Err("outcome differs".into());
                }
                match &effect {
                    Effect::Mint(_) => {
                        let i = self.m.tokens.len();
                        line.push_str(&format!(" = token#{i}"));
                        self.token_ids
                            .push(r.body["token"]["id"].as_str().expect("id").to_owned());
                        let secret = r.body["secret"].as_str().expect("secret").to_owned();
                        self.secrets.push(BTreeMap::from([(1, secret)]));
                    }
                    Effect::Token(i, t, true) => {
                        let secret = r.body["secret"].as_str().expect("secret").to_owned();
                        self.secrets[*i].insert(t.generation, secret);
                    }
                    _ => {}
                }
                self.log.push(line);
                self.m.apply(&effect);
            }
        }
        Ok(())
    }

    /// Checks every credential and every token record against the model.
    async fn check(&self) -> Vec<String> {
        let now = now();
        let creds = self.m.credentials();
        let mut problems: Vec<String> = futures::stream::iter(creds.iter().enumerate())
            .map(|(i, &c)| self.check_credential(c, i, now))
            .buffer_unordered(6)
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        let records: Vec<String> = futures::stream::iter(0..self.m.tokens.len())
            .map(|t| self.check_record(t))
            .buffer_unordered(6)
            .filter_map(|p| async move { p })
            .collect()
            .await;
        problems.extend(records);
        problems.sort();
        problems
    }

    async fn introspect(&self, c: Cred) -> Resp {
        self.s
            .post(
                "/api/v1/introspect",
                &self.observer,
                json!({"token": self.secret(c)}),
            )
            .await
    }

    async fn authorize(&self, c: Cred, verb: &str, uri: &str) -> Resp {
        let r = self
            .s
            .client
            .get(self.s.url("/api/v1/authorize"))
            .bearer_auth(self.secret(c))
            .header("X-Original-Method", verb)
            .header("X-Original-URI", uri)
            .send()
            .await
            .expect("authorize sent");
        Resp::from(r).await
    }

    async fn check_credential(&self, c: Cred, salt: usize, now: i64) -> Vec<String> {
        let mut problems = Vec::new();
        let name = self.name(c);
        let rights = self.m.rights(c);
        let mut expect = |what: &str, r: &Resp, want: Option<Refusal>| {
            let ok = match &want {
                None => r.status.is_success(),
                Some(w) => matches_refusal(r, std::slice::from_ref(w)),
            };
            if !ok {
                let want = want.map_or("success".into(), |w| describe(&[w]));
                problems.push(format!("{name}: {what}: expected {want}, got {}", seen(r)));
            }
        };
        let mut notes = Vec::new();
        // Introspection checks no client address.
        let i = self.introspect(c).await;
        match self.m.life(c, now, false) {
            Err(code) => {
                if i.body["active"] != false || i.body["code"] != code {
                    notes.push(format!(
                        "{name}: introspectToken: expected inactive {code}, got {}",
                        i.body
                    ));
                }
            }
            Ok(()) => {
                let scope: Set = i.body["scope"]
                    .as_str()
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                if i.body["active"] != true {
                    notes.push(format!("{name}: introspectToken: inactive: {}", i.body));
                } else if scope != rights {
                    notes.push(format!(
                        "{name}: introspectToken scope: {}",
                        diff(&rights, &scope)
                    ));
                }
                if let Some(exp) = self.m.cred_expiry(c) {
                    // A grace period ends an hour after the server's clock read, which may
                    // be a second past the model's.
                    let slack = if exp < now + GRACE_SECS + 5 { 2 } else { 0 };
                    let got = i.body["exp"].as_i64();
                    if got.is_none_or(|got| (got - exp).abs() > slack) {
                        notes.push(format!(
                            "{name}: introspectToken exp {} != {} (the stored expiry)",
                            i.body["exp"],
                            rfc3339(exp)
                        ));
                    }
                }
            }
        }
        // Calls from this client.
        if let Err(code) = self.m.life(c, now, true) {
            let me = self.send(Method::GET, "/api/v1/users/me", c, None).await;
            expect("getCurrentUser", &me, Some(no(401, code)));
            let fwd = self.authorize(c, "GET", "/shop/orders").await;
            expect("authorizeRequest", &fwd, Some(no(401, code)));
        } else {
            let me = self.send(Method::GET, "/api/v1/users/me", c, None).await;
            let want = self.m.refusal(c, "me.get", now);
            if want.is_none() && me.status == 200 {
                let methods = set_of(&me.body["methods"]).unwrap_or_default();
                if methods != rights {
                    notes.push(format!(
                        "{name}: getCurrentUser methods: {}",
                        diff(&rights, &methods)
                    ));
                }
            } else {
                expect("getCurrentUser", &me, want);
            }
            for m in &SHOP {
                let r = self.authorize(c, m.verb, m.probe).await;
                let want = if self.m.visible().contains(m.id) {
                    self.m.refusal(c, m.id, now)
                } else {
                    Some(no(403, "route_not_registered"))
                };
                expect(&format!("authorizeRequest {}", m.id), &r, want);
            }
            // One allowed and one refused Sigil call, varying with the credential.
            let rotated = PROBES
                .iter()
                .cycle()
                .skip((salt + self.log.len()) % PROBES.len())
                .take(PROBES.len());
            let allowed = rotated.clone().find(|(m, _)| rights.contains(*m));
            let refused = rotated.clone().find(|(m, _)| !rights.contains(*m));
            for (method, path) in allowed.into_iter().chain(refused) {
                let r = self.send(Method::GET, path, c, None).await;
                expect(method, &r, self.m.refusal(c, method, now));
            }
        }
        problems.extend(notes);
        problems
    }

    /// getToken (by an admin) shows what the model holds.
    async fn check_record(&self, t: usize) -> Option<String> {
        let token = &self.m.tokens[t];
        let r = self
            .s
            .get(
                &format!("/api/v1/tokens/{}", self.token_ids[t]),
                &self.observer,
            )
            .await;
        let mut wrong = Vec::new();
        if token.deleted {
            if r.status != 404 {
                wrong.push(format!("deleted but getToken answers {}", seen(&r)));
            }
        } else if r.status != 200 {
            wrong.push(format!("getToken answers {}", seen(&r)));
        } else {
            let b = &r.body;
            if b["owner_id"] != self.user_ids[token.owner].as_str() {
                wrong.push(format!("owner_id {}", b["owner_id"]));
            }
            if b["enabled"] != token.enabled {
                wrong.push(format!("enabled {}", b["enabled"]));
            }
            if b["generation"] != token.generation {
                wrong.push(format!("generation {}", b["generation"]));
            }
            let scope_ok = match &token.scope {
                Scope::Set(id) => b["scope"]["set"] == *id,
                Scope::Methods(m) => b["scope"]["methods"] == json!(m),
            };
            if !scope_ok {
                wrong.push(format!("scope {}", b["scope"]));
            }
            if b["ip_filter"] != json!(token.ip.filter()) {
                wrong.push(format!("ip_filter {}", b["ip_filter"]));
            }
            let expires = b["expires_at"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp());
            // Expired "now" is the server's now; otherwise the model's exact value.
            if token.expires_at > now() + 60 && expires != Some(token.expires_at) {
                wrong.push(format!(
                    "expires_at {} != {}",
                    b["expires_at"],
                    rfc3339(token.expires_at)
                ));
            }
            match (&token.ceiling, b.get("ceiling")) {
                (None, Some(Value::Null)) => {}
                (Some(want), Some(got)) if set_of(got).as_ref() == Some(want) => {}
                (Some(want), Some(got)) if got.is_array() => wrong.push(format!(
                    "ceiling: {}",
                    diff(want, &set_of(got).unwrap_or_default())
                )),
                (want, got) => wrong.push(format!(
                    "ceiling {} (expected {})",
                    got.map_or("absent".into(), Value::to_string),
                    want.as_ref()
                        .map_or("null".into(), |w| format!("{} methods", w.len()))
                )),
            }
        }
        (!wrong.is_empty()).then(|| format!("token#{t} record: {}", wrong.join("; ")))
    }
}

/// Runs one sequence: Err carries the steps done and what differed.
async fn run_case(s: &TestServer, ops: &[Op]) -> Result<(), String> {
    let mut case = Case::start(s).await;
    let report = |case: &Case, what: String| {
        let steps: Vec<String> = case
            .log
            .iter()
            .enumerate()
            .map(|(i, l)| format!("  {}. {l}", i + 1))
            .collect();
        format!("{}\n{what}", steps.join("\n"))
    };
    let problems = case.check().await;
    if !problems.is_empty() {
        return Err(report(
            &case,
            format!("before any step:\n  {}", problems.join("\n  ")),
        ));
    }
    let verbose = std::env::var_os("SIGIL_MODEL_VERBOSE").is_some();
    for op in ops {
        let before = case.log.len();
        if let Err(e) = case.step(op).await {
            return Err(report(&case, e));
        }
        if case.log.len() == before {
            continue; // skipped (no token yet)
        }
        if verbose {
            eprintln!("{}", case.log[before]);
        }
        let problems = case.check().await;
        if !problems.is_empty() {
            let shown = problems[..problems.len().min(20)].join("\n  ");
            let what = format!(
                "after the last step, {} disagreements:\n  {shown}",
                problems.len()
            );
            return Err(report(&case, what));
        }
    }
    Ok(())
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn authorization_matches_the_model() {
    let cases = env_u32("SIGIL_MODEL_CASES", 8);
    let steps = env_u32("SIGIL_MODEL_STEPS", 12) as usize;
    let seed = std::env::var("SIGIL_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u128() as u64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut server = rt.block_on(TestServer::start());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: env_u32("SIGIL_MODEL_SHRINK_ITERS", 64),
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let strategy = prop::collection::vec(op(), 1..=steps.max(1));
    let result = TestRunner::new(config).run(&strategy, |ops| {
        rt.block_on(run_case(&server, &ops))
            .map_err(TestCaseError::fail)
    });
    rt.block_on(server.stop());
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => panic!(
            "the server disagrees with the model (replay: SIGIL_MODEL_SEED={seed}).\n\
             Smallest failing sequence, as run:\n{why}\nas generated: {ops:?}"
        ),
        Err(e) => panic!("SIGIL_MODEL_SEED={seed}: {e}"),
    }
}
