//! Every way verification says no: one kind per stable code, each with its HTTP status
//! class and explanation, and the refusal value that carries a kind with what it is about.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sigil_core::{TenantId, TokenId, UserId};
use sigil_limits::LimitState;

use crate::principal::Principal;

/// The HTTP status class of a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalStatus {
    /// 401: the credential is missing or not accepted.
    Unauthorized,
    /// 403: the credential is good but may not do this.
    Forbidden,
    /// 429: a usage limit of the token or its owner refuses this use for now.
    TooMany,
    /// 503: verification could not run (storage unreachable); not the credential's fault.
    Unavailable,
}

impl RefusalStatus {
    pub const fn http(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::TooMany => 429,
            Self::Unavailable => 503,
        }
    }
}

macro_rules! refusal_kinds {
    ($($kind:ident => $code:literal, $status:ident, $message:literal;)*) => {
        /// Why a verification refused, one kind per stable code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum RefusalKind { $($kind,)* }

        impl RefusalKind {
            /// Every kind, in the order the metrics list them.
            pub const ALL: [RefusalKind; [$(RefusalKind::$kind,)*].len()] =
                [$(RefusalKind::$kind,)*];

            /// The stable, machine-readable code answered.
            pub const fn code(self) -> &'static str {
                match self { $(Self::$kind => $code,)* }
            }

            pub const fn status(self) -> RefusalStatus {
                match self { $(Self::$kind => RefusalStatus::$status,)* }
            }

            /// What the refusal means, for the answer's detail.
            pub const fn message(self) -> &'static str {
                match self { $(Self::$kind => $message,)* }
            }
        }
    };
}

refusal_kinds! {
    CredentialMissing => "credential_missing", Unauthorized,
        "no credential was given";
    TokenMalformed => "token_malformed", Unauthorized,
        "the credential is not a well-formed Sigil token";
    TokenInvalidSignature => "token_invalid_signature", Unauthorized,
        "the token's signature does not verify with a key of its tenant";
    TokenUnknown => "token_unknown", Unauthorized,
        "the token does not exist (deleted)";
    TokenReplaced => "token_replaced", Unauthorized,
        "the token was regenerated; use the newest secret";
    TokenExpired => "token_expired", Unauthorized,
        "the token has expired";
    TokenNotYetValid => "token_not_yet_valid", Unauthorized,
        "the token is not valid yet";
    TokenDisabled => "token_disabled", Unauthorized,
        "the token is disabled";
    TokenRevoked => "token_revoked", Unauthorized,
        "the token was revoked";
    TokenLeaked => "token_leaked", Unauthorized,
        "the token was revoked because its secret was reported exposed; make a new one";
    TokenReuseDetected => "token_reuse_detected", Unauthorized,
        "the token was revoked: a secret its rotation replaced was presented again after its grace period (a stolen copy); make a new token";
    TenantDisabled => "tenant_disabled", Unauthorized,
        "the token's tenant is disabled";
    UserDeactivated => "user_deactivated", Unauthorized,
        "the token's user is deactivated";
    ApiAccessDenied => "api_access_denied", Forbidden,
        "the user lacks the api_access permission";
    IpNotAllowed => "ip_not_allowed", Unauthorized,
        "the client address is not in the token's IP filter";
    TransportNotAllowed => "transport_not_allowed", Unauthorized,
        "the tenant does not accept credentials in the query string or form body";
    MethodNotInScope => "method_not_in_scope", Forbidden,
        "the token's scope does not include this method";
    UserLacksPermission => "user_lacks_permission", Forbidden,
        "the token's user is not allowed to call this method";
    OperatorOnly => "operator_only", Forbidden,
        "only the platform operator may call this method";
    TenantOnly => "tenant_only", Forbidden,
        "this method needs a tenant user's token";
    RateLimited => "rate_limited", TooMany,
        "a rate limit of the token or its owner is reached";
    UsageExceeded => "usage_exceeded", TooMany,
        "the token has no credits left";
    ServiceUnavailable => "service_unavailable", Unavailable,
        "verification is unavailable; retry shortly";
}

impl RefusalKind {
    /// Whether the refusal is about one method the token may not call (it is otherwise
    /// valid, and its principal is known).
    pub const fn is_about_method(self) -> bool {
        matches!(self, Self::MethodNotInScope | Self::UserLacksPermission)
    }
}

/// Whom a refusal is about, as far as verification got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct About {
    pub tenant: Option<TenantId>,
    pub user: Option<UserId>,
    pub token: Option<TokenId>,
    /// Whether `tenant` is known (signature verified) rather than merely claimed.
    pub verified: bool,
}

/// A refusal: its kind, and what it is about.
#[derive(Clone, Debug)]
pub struct Refusal {
    kind: RefusalKind,
    about: About,
    /// The method refused, for a refusal about one method: the answer names it.
    method: Option<Box<str>>,
    /// When to retry, for a refusal that passes with time.
    retry_after_secs: Option<u64>,
    /// The principal, for a refusal of a request made with a valid credential.
    principal: Option<Arc<Principal>>,
    /// For a usage-limit refusal: the limits as the check left them.
    limits: Option<Box<LimitRefusal>>,
}

/// What a usage-limit refusal reports: the state of every limit checked (for the
/// `RateLimit` headers), the limit that refused, and the next refill of spent credits.
#[derive(Clone, Debug)]
pub struct LimitRefusal {
    pub state: LimitState,
    /// The refusing rate limit's name in the headers (`burst`, `owner:hourly`).
    pub refused_by: Option<String>,
    pub next_refill: Option<DateTime<Utc>>,
}

impl From<RefusalKind> for Refusal {
    fn from(kind: RefusalKind) -> Self {
        Self::new(kind)
    }
}

impl Refusal {
    pub const fn new(kind: RefusalKind) -> Self {
        Self {
            kind,
            about: About {
                tenant: None,
                user: None,
                token: None,
                verified: false,
            },
            method: None,
            retry_after_secs: None,
            principal: None,
            limits: None,
        }
    }

    pub fn kind(&self) -> RefusalKind {
        self.kind
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn status(&self) -> RefusalStatus {
        self.kind.status()
    }

    /// The refusal's explanation, naming the method or the limit when it is about one.
    pub fn explanation(&self) -> String {
        if let Some(limit) = self.limits.as_ref().and_then(|l| l.refused_by.as_deref()) {
            return format!("{}: {limit}", self.kind.message());
        }
        match &self.method {
            Some(m) => format!("{}: {m}", self.kind.message()),
            None => self.kind.message().to_owned(),
        }
    }

    /// For a usage-limit refusal: the limits' state and the next refill.
    pub fn limits(&self) -> Option<&LimitRefusal> {
        self.limits.as_deref()
    }

    /// The tenant concerned, once the credential's signature verified: a forged token's
    /// claim never files a refusal under a tenant.
    pub fn tenant_id(&self) -> Option<TenantId> {
        self.about.tenant.filter(|_| self.about.verified)
    }

    /// The token concerned, once its credential verified.
    pub fn token_id(&self) -> Option<TokenId> {
        self.about.token.filter(|_| self.about.verified)
    }

    /// The token's owner, once the credential verified.
    pub fn user_id(&self) -> Option<UserId> {
        self.about.user.filter(|_| self.about.verified)
    }

    /// Seconds after which the same request may pass (an answer's `Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    /// The valid credential's principal, when the refusal is about the request rather than
    /// the credential (its transport, client address or method).
    pub fn principal(&self) -> Option<&Arc<Principal>> {
        self.principal.as_ref()
    }

    /// Whom the refusal is about, verified or not (for cache invalidation).
    pub(super) fn concerns(&self) -> About {
        self.about
    }

    pub(super) fn about(
        mut self,
        tenant: Option<TenantId>,
        user: Option<UserId>,
        token: Option<TokenId>,
    ) -> Self {
        self.about.tenant = tenant.or(self.about.tenant);
        self.about.user = user.or(self.about.user);
        self.about.token = token.or(self.about.token);
        self
    }

    /// Names the tenant a credential claims, before its signature is checked.
    pub(super) fn claimed_by(mut self, tenant: TenantId) -> Self {
        self.about.tenant = Some(tenant);
        self.about.verified = false;
        self
    }

    pub(super) fn verified(mut self) -> Self {
        self.about.verified = true;
        self
    }

    /// A refusal about a verified principal.
    pub(super) fn on(self, p: &Principal) -> Self {
        self.about(Some(p.tenant_id), Some(p.user_id), Some(p.token_id))
            .verified()
    }

    pub(super) fn for_method(mut self, method: &str) -> Self {
        self.method = Some(method.into());
        self
    }

    pub(super) fn with_limits(mut self, limits: LimitRefusal) -> Self {
        self.limits = Some(Box::new(limits));
        self
    }

    pub(super) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub(super) fn with_principal(mut self, p: &Arc<Principal>) -> Self {
        self.principal = Some(Arc::clone(p));
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_unique_and_snake_case() {
        let codes: HashSet<_> = RefusalKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), RefusalKind::ALL.len());
        for code in codes {
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
    }

    #[test]
    fn all_lists_every_kind_once_in_declaration_order() {
        for (i, kind) in RefusalKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?}");
        }
    }

    #[test]
    fn statuses_are_as_documented() {
        use RefusalKind::*;
        let forbidden = [
            ApiAccessDenied,
            MethodNotInScope,
            UserLacksPermission,
            OperatorOnly,
            TenantOnly,
        ];
        for kind in RefusalKind::ALL {
            let expected = if kind == ServiceUnavailable {
                503
            } else if matches!(kind, RateLimited | UsageExceeded) {
                429
            } else if forbidden.contains(&kind) {
                403
            } else {
                401
            };
            assert_eq!(kind.status().http(), expected, "{kind:?}");
            assert!(!kind.message().is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn context_counts_only_once_the_signature_verified() {
        let tenant = TenantId::new();
        let token = TokenId::new();
        let claimed = Refusal::new(RefusalKind::TokenInvalidSignature)
            .claimed_by(tenant)
            .about(None, None, Some(token));
        assert_eq!(claimed.tenant_id(), None);
        assert_eq!(claimed.token_id(), None);
        assert_eq!(claimed.concerns().tenant, Some(tenant));
        let verified = claimed.verified();
        assert_eq!(verified.tenant_id(), Some(tenant));
        assert_eq!(verified.token_id(), Some(token));
    }

    #[test]
    fn explanation_names_the_method() {
        let r = Refusal::new(RefusalKind::MethodNotInScope).for_method("tokens.list");
        assert_eq!(
            r.explanation(),
            "the token's scope does not include this method: tokens.list"
        );
        assert_eq!(
            Refusal::new(RefusalKind::TokenExpired).explanation(),
            "the token has expired"
        );
    }
}
