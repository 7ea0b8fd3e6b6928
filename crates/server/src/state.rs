//! The bundle of services every handler uses, built once at start.

use std::sync::Arc;
use std::time::Duration;

use poem::Request;
use sigil_audit::{Actor, AuditLog};
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_scope_registry::store::{PluginStore, ScopeSetStore};
use sigil_scope_registry::{PluginManifest, Registry, RegistryService, Snapshot};
use sigil_tenant::platform::PlatformKey;
use sigil_tenant::{KeyRing, SigningKeyService, TenantService};
use sigil_token::verifier::{
    Attempt, CacheSettings, Client, Denied, RefusalKind, RefusalStatus, Target, VerifierDeps,
};
use sigil_token::{Caller, ChangeFeed, Principal, TokenService, UsageRecorder, Verifier};
use sigil_user::{LoginThrottle, PasswordHasher, UserService};

use crate::auth;
use crate::config::Config;
use crate::problem::{ApiError, ApiResult};

pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub tenants: TenantService,
    pub users: UserService,
    pub keys: KeyRing,
    /// The signing-key use cases (rotation publishes on the change feed).
    pub signing_keys: SigningKeyService,
    pub platform: Arc<PlatformKey>,
    pub registry: Arc<Registry>,
    pub plugins: PluginStore,
    pub sets: ScopeSetStore,
    /// The registry's use cases: plugins, methods and scope sets.
    pub scope_registry: RegistryService,
    pub tokens: TokenService,
    /// Shared: the change feed holds it only weakly (the feed is reachable from the
    /// verifier's own services, and a strong hold would keep both alive forever).
    pub verifier: Arc<Verifier>,
    pub changes: Arc<ChangeFeed>,
    pub usage: UsageRecorder,
    pub audit: AuditLog,
    pub throttle: LoginThrottle,
    /// Signing in, and passwords asked again (under the throttle above).
    pub logins: sigil_user::LoginService,
    /// Second factors of people (TOTP, recovery codes) and login challenges.
    pub two_factor: sigil_user::TwoFactorService,
    /// Users as they see themselves (getCurrentUser), cached until they change.
    pub profiles: sigil_user::Profiles,
    /// What a tenant policy change does besides the policy (requiring two-factor sign-in
    /// ends the sessions of people without it), in the change's transaction.
    pub policy_effects: sigil_user::TwoFactorRequirement,
    /// The method ids of each distinct set of rights, as introspection lists them.
    pub scope_texts: crate::scope_text::ScopeTexts,
    /// Sigil's method of each route of the API (from the spec), for the caller check.
    pub route_methods: std::sync::OnceLock<crate::api::caller::RouteMethods>,
    pub metrics: crate::metrics::Metrics,
    /// Refused verifications per client address (429 past the limit).
    pub refusals: crate::refusals::RefusalLimiter,
    /// The tenants' webhook endpoints and delivery logs.
    pub webhooks: sigil_webhook::WebhookService,
    /// Delivers the outbox's events (run by the background worker, run.rs).
    pub dispatcher: sigil_webhook::Dispatcher,
    /// Usage limits: rate-limit counters and credit balances, in the process or shared
    /// through Redis (`SIGIL_REDIS_URL`).
    pub limiter: sigil_limits::Limiter,
    /// One flush at a time: a flush asked for (at shutdown, by a test) returns only once
    /// the one running has written too.
    flush_lock: tokio::sync::Mutex<()>,
}

impl AppState {
    pub async fn build(config: Config, db: Db, master: MasterKey) -> sigil_core::Result<Arc<Self>> {
        let hasher = PasswordHasher::new(config.argon2)?;
        let changes = Arc::new(ChangeFeed::new(db.clone()));
        let tenants = TenantService::new(db.clone(), changes.clone());
        // A new password ends the user's sessions in the transaction that stores it; so
        // does requiring two-factor sign-in for the people without it.
        let sessions: Arc<dyn sigil_user::SessionEnder> =
            Arc::new(sigil_token::service::sessions::SessionRevoker);
        let users = UserService::new(db.clone(), hasher, changes.clone(), sessions.clone());
        let policy_effects = sigil_user::TwoFactorRequirement::new(sessions);
        let keys = KeyRing::with_ttl(
            db.clone(),
            master.clone(),
            Duration::from_secs(config.cache_ttl_secs),
        );
        let signing_keys = SigningKeyService::new(keys.clone(), changes.clone());
        let platform = PlatformKey::load_or_create(&db, &master).await?;
        let two_factor =
            sigil_user::TwoFactorService::new(db.clone(), master.clone(), changes.clone())?;
        let profiles = sigil_user::Profiles::new(
            users.clone(),
            two_factor.clone(),
            &changes,
            config.cache_max_entries,
            Duration::from_secs(config.cache_ttl_secs),
        );
        let throttle = LoginThrottle::new();
        let logins = sigil_user::LoginService::new(
            users.clone(),
            tenants.clone(),
            two_factor.clone(),
            throttle.clone(),
        );
        let plugins = PluginStore::new(db.clone());
        let sets = ScopeSetStore::new(db.clone());
        let usage = UsageRecorder::new();
        let registry = Arc::new(Registry::new(Snapshot::empty()));
        let tokens = TokenService::new(
            db.clone(),
            keys.clone(),
            users.clone(),
            registry.clone(),
            sets.clone(),
            changes.clone(),
        );
        let scope_registry = RegistryService::new(
            db.clone(),
            registry.clone(),
            changes.clone(),
            Arc::new(crate::api::registry::TokenScopesOfTokens::new(
                tokens.clone(),
            )),
        );
        let limiter = limiter(&config.redis_url, &config.redis_prefix).await?;
        let verifier = Verifier::new(
            VerifierDeps {
                db: db.clone(),
                tenants: tenants.clone(),
                keys: keys.clone(),
                platform: platform.clone(),
                registry: registry.clone(),
                sets: sets.clone(),
                usage: usage.clone(),
                limiter: limiter.clone(),
            },
            CacheSettings {
                max_entries: config.cache_max_entries,
                ttl: Duration::from_secs(config.cache_ttl_secs),
                ..CacheSettings::default()
            },
            config.trusted_proxy_nets(),
        )
        .with_change_feed(&changes);
        let config_refusal_limit = config.refusal_limit_per_minute;
        let webhooks = sigil_webhook::WebhookService::new(
            db.clone(),
            master.clone(),
            config.webhook_allow_private,
        );
        let webhook_timeout = Duration::from_secs(config.webhook_timeout_secs);
        let dispatcher = sigil_webhook::Dispatcher::new(
            db.clone(),
            master.clone(),
            sigil_webhook::RetrySchedule::parse(&config.webhook_retry_schedule)
                .map_err(|e| sigil_core::Error::invalid("webhook_retry_schedule", e))?,
            Arc::new(crate::webhook_sender::HttpTransport::new(
                webhook_timeout,
                config.webhook_allow_private,
            )?),
            webhook_timeout,
        );
        let state = Arc::new(Self {
            audit: AuditLog::new(db.clone()),
            throttle,
            logins,
            two_factor,
            profiles,
            policy_effects,
            scope_texts: crate::scope_text::ScopeTexts::default(),
            config,
            db,
            tenants,
            users,
            keys,
            signing_keys,
            platform,
            registry,
            plugins,
            sets,
            scope_registry,
            tokens,
            verifier: Arc::new(verifier),
            changes,
            usage,
            route_methods: std::sync::OnceLock::new(),
            metrics: crate::metrics::Metrics::new(),
            refusals: crate::refusals::RefusalLimiter::new(config_refusal_limit),
            webhooks,
            dispatcher,
            limiter,
            flush_lock: tokio::sync::Mutex::new(()),
        });
        state.metrics.register_observers(Arc::downgrade(&state));
        Ok(state)
    }

    /// Installs the built-in plugin (derived from the spec) and compiles the registry.
    pub async fn start_registry(&self, builtin: PluginManifest) -> sigil_core::Result<()> {
        self.scope_registry.set_builtin(builtin);
        self.load_plugin_files().await?;
        self.reload_registry().await
    }

    /// Registers the manifests given with `--plugin` as global plugins (idempotent). Each
    /// must keep to the namespace rule; what a changed one widens is logged and audited.
    async fn load_plugin_files(&self) -> sigil_core::Result<()> {
        for path in &self.config.plugins {
            let text = std::fs::read_to_string(path).map_err(|e| {
                sigil_core::Error::invalid(
                    "plugin_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let manifest = PluginManifest::from_json_str(&text).map_err(|errors| {
                sigil_core::Error::invalid_with(
                    "invalid_manifest",
                    format!("{} is not a valid plugin manifest", path.display()),
                    file_errors(path, errors),
                )
            })?;
            self.scope_registry
                .check_file_namespace(&manifest)
                .map_err(|e| {
                    sigil_core::Error::invalid_with(
                        "invalid_manifest",
                        format!("{} breaks the plugin namespace rule", path.display()),
                        file_errors(
                            path,
                            std::iter::once(e.to_string())
                                .chain(manifest.namespace_errors())
                                .collect(),
                        ),
                    )
                })?;
            if self
                .scope_registry
                .store_plugin_file(&Actor::operator(), &manifest)
                .await?
            {
                tracing::info!(plugin = %manifest.id, version = %manifest.version, "plugin loaded from file");
            }
        }
        Ok(())
    }

    /// Rebuilds the compiled registry from the built-in plugin and the stored ones.
    pub async fn reload_registry(&self) -> sigil_core::Result<()> {
        self.scope_registry.reload().await
    }

    /// Verifies the request's credential for `method`.
    pub async fn caller(&self, req: &Request, method: &str) -> ApiResult<Caller> {
        let ip = auth::client_ip(req, self.verifier.trusted_proxies());
        let found = auth::credential(req, None, None)?;
        let credential = found.as_ref().map(|(c, t)| (c.as_str(), *t));
        let attempt = Attempt {
            credential,
            client: Client::At(ip),
            user_agent: auth::user_agent_text(req),
            target: Target::Call(method),
        };
        let refusal = match self.verifier.verify(attempt).await {
            Ok(verified) => {
                if let (Some(limits), Some(slot)) = (
                    verified.limits.as_deref(),
                    req.extensions().get::<crate::usage_headers::LimitHeaders>(),
                ) {
                    slot.set(limits);
                }
                return Ok(verified.caller);
            }
            Err(Denied::Refused(refusal)) => refusal,
            Err(Denied::Unforwardable(u)) => return Err(sigil_core::Error::from(u).into()),
        };
        if let Some((credential, _)) = credential {
            // Boxed: a refusal's database reads stay out of every request's future.
            if let Some(e) = Box::pin(crate::api::two_factor::enrolment_refusal(
                self, credential, &refusal,
            ))
            .await
            {
                return Err(e);
            }
        }
        Err(self.refusal(refusal, ip))
    }

    /// Answers a refused verification: audited and counted against the client address;
    /// past the address's limit, a bad credential (401) answers 429 instead.
    pub fn refusal(&self, refusal: sigil_token::Refusal, ip: Option<std::net::IpAddr>) -> ApiError {
        // A request without a credential is not a refused credential: neither limited nor
        // audited.
        if refusal.kind() == RefusalKind::CredentialMissing {
            return refusal.into();
        }
        if refusal.status() == RefusalStatus::Unauthorized {
            if let Some(retry_after_secs) = self.refusals.refused(ip) {
                return sigil_core::Error::TooMany {
                    code: "too_many_refusals",
                    detail: "too many refused credentials from this address; retry later".into(),
                    retry_after_secs,
                }
                .into();
            }
        }
        self.audit.note_refusal(
            refusal.tenant_id(),
            refusal.token_id(),
            refusal.code(),
            ip.map(|i| i.to_string()),
        );
        refusal.into()
    }

    /// A tenant user's principal allowed to call `method`.
    pub async fn principal(&self, req: &Request, method: &str) -> ApiResult<Arc<Principal>> {
        match self.caller(req, method).await? {
            Caller::Tenant(p) => Ok(p),
            Caller::Operator => Err(sigil_core::Error::forbidden(
                "tenant_only",
                "this method needs a tenant user's token",
            )
            .into()),
        }
    }

    /// The platform operator, for tenant administration.
    pub async fn operator(&self, req: &Request, method: &str) -> ApiResult<()> {
        match self.caller(req, method).await? {
            Caller::Operator => Ok(()),
            Caller::Tenant(_) => Err(sigil_core::Error::forbidden(
                "operator_only",
                "only the platform operator may call this method",
            )
            .into()),
        }
    }

    /// Writes the use counts and the credits spent since the last flush; what could not
    /// be written is kept for the next one.
    pub async fn flush_usage(&self) -> sigil_core::Result<()> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let uses = self.usage.flush(&self.db).await;
        let credits = self.limiter.credits().drain();
        if !credits.is_empty() {
            if let Err(e) = sigil_token::credits::flush(&self.db, &credits).await {
                self.limiter.credits().restore(credits);
                return Err(e);
            }
        }
        self.limiter.sweep(chrono::Utc::now());
        uses.map(|_| ())
    }

    /// Who makes this request (the tenant user of `caller`, or the platform operator when
    /// there is none) and from where: what a use case needs to file its audit event.
    pub fn actor(&self, req: &Request, caller: Option<&Principal>) -> Actor {
        let who = match caller {
            Some(p) => Actor::user(p.tenant_id, p.user_id, &p.username, Some(p.token_id)),
            None => Actor::operator(),
        };
        let ip = auth::client_ip(req, self.verifier.trusted_proxies()).map(|i| i.to_string());
        who.from_client(ip, auth::user_agent(req))
    }
}

/// The usage limiter: in the process, or shared through Redis when a URL is set (it
/// starts even while Redis is unreachable, counting on its own share until it is back).
async fn limiter(redis_url: &str, prefix: &str) -> sigil_core::Result<sigil_limits::Limiter> {
    if redis_url.is_empty() {
        return Ok(sigil_limits::Limiter::local());
    }
    let settings = sigil_limits::SharedSettings {
        key_prefix: prefix.to_owned(),
        ..sigil_limits::SharedSettings::default()
    };
    sigil_limits::Limiter::with_redis(redis_url, settings)
        .await
        // The error may quote the URL, and with it a password: it is not repeated.
        .map_err(|_| {
            sigil_core::Error::invalid("redis_url", "SIGIL_REDIS_URL is not a usable Redis URL")
        })
}

/// Problems of a plugin file given with `--plugin`, named by the file.
fn file_errors(path: &std::path::Path, errors: Vec<String>) -> Vec<sigil_core::FieldError> {
    errors
        .into_iter()
        .map(|message| sigil_core::FieldError::new(path.display().to_string(), message))
        .collect()
}
