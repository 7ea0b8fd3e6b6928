//! The one ceiling: every path that creates or changes a credential (create, copy,
//! regenerate, update of scope / expiry / IP filter / enabled, login) asks [`decide`] what
//! the credential may hold and until when. A credential's effective rights at every use
//! are its scope ∩ its owner's current rights ∩ its stored ceiling, and the ceiling is
//! what the acting credential held when it made or re-scoped the token, so a token never
//! grows past the people and credentials behind it.

use chrono::{DateTime, Duration, Utc};
use sigil_core::{Error, Result, TenantId};
use sigil_scope_registry::{MethodSet, Snapshot};
use sigil_tenant::TenantPolicy;
use sigil_user::User;

use crate::verifier::Principal;

/// The token being changed, as it stands.
pub struct Existing<'a> {
    /// Its scope, resolved against the current registry.
    pub scope: &'a MethodSet,
    pub ceiling: Option<&'a MethodSet>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What happens to the expiry.
#[derive(Clone, Copy, Debug)]
pub enum Expiry {
    /// A new expiry (`None`: never expires).
    Set(Option<DateTime<Utc>>),
    /// The expiry stays; it is checked only when a new secret is minted for it.
    Keep,
}

/// One creation or change of a credential.
pub enum Request<'a> {
    /// createToken: a new token with `scope`.
    Create {
        scope: &'a MethodSet,
        expires_at: Option<DateTime<Utc>>,
    },
    /// copyToken: a new token like `source` (its ceiling is carried over).
    Copy {
        source: Existing<'a>,
        expires_at: Option<DateTime<Utc>>,
    },
    /// updateToken: `scope` when the scope changes.
    Update {
        token: Existing<'a>,
        scope: Option<&'a MethodSet>,
        expiry: Expiry,
    },
    /// regenerateToken: a new secret, with an optional new expiry.
    Regenerate { token: Existing<'a>, expiry: Expiry },
}

/// What the credential will hold.
#[derive(Debug)]
pub struct Decision {
    /// The stored ceiling (`None`: bounded by the owner's current rights alone).
    pub ceiling: Option<MethodSet>,
    /// The expiry to store (and to put in a newly minted secret).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Decides the ceiling and expiry of a credential that `actor` creates or changes for
/// `owner`, or refuses. `owner_rights` is what the owner's role allows now.
pub fn decide(
    actor: &Principal,
    owner: &User,
    owner_rights: &MethodSet,
    request: Request<'_>,
) -> Result<Decision> {
    // The owner's own login session holds everything the owner may do: whatever it makes
    // is bounded by the owner's current rights already, and needs no ceiling of its own.
    let full = actor.is_session() && actor.user_id == owner.id;
    let bound = |set: &MethodSet| -> MethodSet {
        let mut bounded = set.intersect(&actor.rights);
        if full {
            bounded = set.clone();
        }
        bounded
    };
    match request {
        Request::Create { scope, expires_at } => {
            within(
                actor,
                full,
                scope,
                None,
                owner_rights,
                "scope_exceeds_credential",
            )?;
            Ok(Decision {
                ceiling: (!full).then(|| bound(scope)),
                expires_at: checked_expiry(actor, expires_at)?,
            })
        }
        Request::Copy { source, expires_at } => {
            let ceiling = source.ceiling;
            within(
                actor,
                full,
                source.scope,
                ceiling,
                owner_rights,
                "scope_exceeds_credential",
            )?;
            let carried = match (ceiling, full) {
                (Some(c), true) => Some(c.clone()),
                (Some(c), false) => Some(bound(&source.scope.intersect(c))),
                (None, true) => None,
                (None, false) => Some(bound(source.scope)),
            };
            Ok(Decision {
                ceiling: carried,
                expires_at: checked_expiry(actor, expires_at)?,
            })
        }
        Request::Update {
            token,
            scope,
            expiry,
        } => {
            holds(actor, full, &token, owner_rights)?;
            let ceiling = match scope {
                Some(scope) => {
                    within(
                        actor,
                        full,
                        scope,
                        None,
                        owner_rights,
                        "scope_exceeds_credential",
                    )?;
                    (!full).then(|| bound(scope))
                }
                None => token.ceiling.cloned(),
            };
            let expires_at = match expiry {
                Expiry::Set(t) => checked_expiry(actor, t)?,
                Expiry::Keep => token.expires_at,
            };
            Ok(Decision {
                ceiling,
                expires_at,
            })
        }
        Request::Regenerate { token, expiry } => {
            holds(actor, full, &token, owner_rights)?;
            let expires_at = match expiry {
                Expiry::Set(t) => t,
                Expiry::Keep if token.expires_at.is_some_and(|t| t <= Utc::now()) => {
                    return Err(Error::invalid_field(
                        "expiry_required",
                        "expires_at",
                        "the token has expired: give a new expires_at to regenerate it",
                    ))
                }
                Expiry::Keep => token.expires_at,
            };
            Ok(Decision {
                ceiling: token.ceiling.cloned(),
                expires_at: checked_expiry(actor, expires_at)?,
            })
        }
    }
}

/// A login session, minted once the user proved their password: everything the user may
/// do now (its rights follow the user's current role, so it needs no ceiling), for the
/// tenant's session lifetime.
pub fn login(session_lifetime_secs: u32) -> Decision {
    Decision {
        ceiling: None,
        expires_at: Some(sigil_core::now() + Duration::seconds(i64::from(session_lifetime_secs))),
    }
}

/// Refuses a scope that would give the owner more than the acting credential holds.
fn within(
    actor: &Principal,
    full: bool,
    scope: &MethodSet,
    ceiling: Option<&MethodSet>,
    owner_rights: &MethodSet,
    code: &'static str,
) -> Result<()> {
    if full {
        return Ok(());
    }
    let mut granted = scope.intersect(owner_rights);
    if let Some(c) = ceiling {
        granted.intersect_with(c);
    }
    if granted.is_subset(&actor.rights) {
        Ok(())
    } else {
        Err(Error::forbidden(
            code,
            "the token would grant more than the credential used to create it",
        ))
    }
}

/// Refuses changing (or regenerating) a token that can do more than the acting credential.
fn holds(
    actor: &Principal,
    full: bool,
    token: &Existing<'_>,
    owner_rights: &MethodSet,
) -> Result<()> {
    if full {
        return Ok(());
    }
    let mut effective = token.scope.intersect(owner_rights);
    if let Some(c) = token.ceiling {
        effective.intersect_with(c);
    }
    if effective.is_subset(&actor.rights) {
        Ok(())
    } else {
        Err(Error::forbidden(
            "token_exceeds_credential",
            "the token can do more than the credential you are using; only someone holding all of its rights may change or regenerate it",
        ))
    }
}

/// An expiry that is in the future, within the tenant's maximum, present when the tenant
/// requires one, and (for a token acting, not a login session) no later than the acting
/// token's own expiry.
fn checked_expiry(
    actor: &Principal,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>> {
    check_policy_expiry(&actor.policy, expires_at)?;
    if !actor.is_session() {
        if let Some(limit) = actor.expires_at {
            // Whole seconds: a JWT `exp` carries no fraction.
            if expires_at.is_none_or(|t| t.timestamp() > limit.timestamp()) {
                return Err(Error::forbidden(
                    "expiry_exceeds_credential",
                    "a token cannot expire later than the token used to create or change it",
                ));
            }
        }
    }
    Ok(expires_at)
}

/// The tenant's rules for an expiry: in the future, required unless non-expiring tokens
/// are allowed, and within the maximum lifetime.
pub fn check_policy_expiry(policy: &TenantPolicy, expires_at: Option<DateTime<Utc>>) -> Result<()> {
    let now = Utc::now();
    match expires_at {
        Some(t) if t <= now => {
            return Err(Error::invalid_field(
                "expiry_in_past",
                "expires_at",
                "expires_at must be in the future",
            ))
        }
        None if !policy.allow_non_expiring_tokens => {
            return Err(Error::invalid_field(
                "expiry_required",
                "expires_at",
                "the tenant policy requires an expiry date (expires_at)",
            ))
        }
        _ => {}
    }
    if let (Some(days), Some(t)) = (policy.max_token_lifetime_days, expires_at) {
        if t > now + Duration::days(i64::from(days)) + Duration::minutes(5) {
            return Err(Error::invalid_field(
                "expiry_exceeds_policy",
                "expires_at",
                format!("the tenant policy limits token lifetime to {days} days"),
            ));
        }
    }
    Ok(())
}

/// The stored form of a ceiling: its method ids.
pub fn to_stored(snapshot: &Snapshot, ceiling: Option<&MethodSet>) -> Result<Option<String>> {
    ceiling
        .map(|c| {
            let ids: Vec<&str> = snapshot.method_ids(c).collect();
            serde_json::to_string(&ids).map_err(Error::internal)
        })
        .transpose()
}

/// A stored ceiling, resolved against the current registry. Ids that no longer exist
/// are dropped (a ceiling only narrows); text that does not parse is an empty ceiling.
pub fn from_stored(
    snapshot: &Snapshot,
    tenant: TenantId,
    stored: Option<&str>,
) -> Option<MethodSet> {
    let text = stored?;
    let ids: Vec<String> = serde_json::from_str(text).unwrap_or_default();
    let mut set = MethodSet::with_capacity(snapshot.method_count());
    for id in &ids {
        if let Some(idx) = snapshot.lookup(Some(tenant.0), id) {
            set.insert(idx);
        }
    }
    Some(set)
}

/// The stored ceiling as method ids, for display.
pub fn stored_ids(stored: Option<&str>) -> Option<Vec<String>> {
    stored.map(|text| serde_json::from_str(text).unwrap_or_default())
}
