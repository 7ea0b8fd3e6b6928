//! The bundle of services every handler uses, built once at start.

use std::sync::Arc;
use std::time::Duration;

use poem::Request;
use sigil_audit::{AuditLog, NewEvent};
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_scope_registry::store::{PluginStore, ScopeSetStore};
use sigil_scope_registry::{PluginManifest, RegisteredPlugin, Registry, Snapshot};
use sigil_tenant::platform::PlatformKey;
use sigil_tenant::{KeyRing, TenantService};
use sigil_token::verifier::{CacheSettings, VerifierDeps};
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
    pub platform: Arc<PlatformKey>,
    pub registry: Arc<Registry>,
    pub plugins: PluginStore,
    pub sets: ScopeSetStore,
    pub tokens: TokenService,
    pub verifier: Verifier,
    pub changes: Arc<ChangeFeed>,
    pub usage: UsageRecorder,
    pub audit: AuditLog,
    pub throttle: LoginThrottle,
    /// Second factors of people (TOTP, recovery codes) and login challenges.
    pub two_factor: sigil_user::TwoFactorService,
    pub builtin: std::sync::OnceLock<PluginManifest>,
    /// Sigil's method of each route of the API (from the spec), for the caller check.
    pub route_methods: std::sync::OnceLock<crate::api::caller::RouteMethods>,
    pub metrics: crate::metrics::Metrics,
    /// Refused verifications per client address (429 past the limit).
    pub refusals: crate::refusals::RefusalLimiter,
    /// The tenants' webhook endpoints and delivery logs.
    pub webhooks: sigil_webhook::WebhookService,
    /// Delivers the outbox's events (run by the background worker, run.rs).
    pub dispatcher: sigil_webhook::Dispatcher,
}

impl AppState {
    pub async fn build(config: Config, db: Db, master: MasterKey) -> sigil_core::Result<Arc<Self>> {
        let hasher = PasswordHasher::new(config.argon2)?;
        let tenants = TenantService::new(db.clone());
        let users = UserService::new(db.clone(), hasher);
        let keys = KeyRing::with_ttl(
            db.clone(),
            master.clone(),
            Duration::from_secs(config.cache_ttl_secs),
        );
        let platform = PlatformKey::load_or_create(&db, &master).await?;
        let two_factor = sigil_user::TwoFactorService::new(db.clone(), master.clone())?;
        let plugins = PluginStore::new(db.clone());
        let sets = ScopeSetStore::new(db.clone());
        let changes = Arc::new(ChangeFeed::new(db.clone()));
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
        let verifier = Verifier::new(
            VerifierDeps {
                db: db.clone(),
                tenants: tenants.clone(),
                keys: keys.clone(),
                platform: platform.clone(),
                registry: registry.clone(),
                sets: sets.clone(),
                usage: usage.clone(),
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
            throttle: LoginThrottle::new(),
            two_factor,
            config,
            db,
            tenants,
            users,
            keys,
            platform,
            registry,
            plugins,
            sets,
            tokens,
            verifier,
            changes,
            usage,
            builtin: std::sync::OnceLock::new(),
            route_methods: std::sync::OnceLock::new(),
            metrics: crate::metrics::Metrics::new(),
            refusals: crate::refusals::RefusalLimiter::new(config_refusal_limit),
            webhooks,
            dispatcher,
        });
        state.metrics.register_observers(Arc::downgrade(&state));
        Ok(state)
    }

    /// Installs the built-in plugin (derived from the spec) and compiles the registry.
    pub async fn start_registry(&self, builtin: PluginManifest) -> sigil_core::Result<()> {
        let _ = self.builtin.set(builtin);
        self.load_plugin_files().await?;
        self.reload_registry().await
    }

    /// Registers the manifests given with `--plugin` as global plugins (idempotent). Each
    /// must keep to the namespace rule; what a changed one widens is logged and audited.
    async fn load_plugin_files(&self) -> sigil_core::Result<()> {
        let reserved = crate::api::registry::reserved_namespaces(self.builtin.get());
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
            crate::api::registry::check_namespace(&manifest, &reserved).map_err(|e| {
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
            let unchanged = self
                .plugins
                .get(None, &manifest.id)
                .await?
                .is_some_and(|stored| {
                    serde_json::to_value(&stored.manifest).ok()
                        == serde_json::to_value(&manifest).ok()
                });
            if !unchanged {
                crate::api::registry::store_plugin_file(self, &manifest).await?;
                tracing::info!(plugin = %manifest.id, version = %manifest.version, "plugin loaded from file");
            }
        }
        Ok(())
    }

    /// Rebuilds the compiled registry from the built-in plugin and the stored ones.
    pub async fn reload_registry(&self) -> sigil_core::Result<()> {
        let (version, stored) = self.plugins.load_all().await?;
        let mut all: Vec<RegisteredPlugin> = self
            .builtin
            .get()
            .cloned()
            .map(RegisteredPlugin::global)
            .into_iter()
            .collect();
        all.extend(stored);
        let snapshot = Snapshot::build_with_version(all, version).map_err(|errors| {
            sigil_core::Error::invalid_with(
                "invalid_registry",
                "the stored plugins do not compile",
                errors
                    .into_iter()
                    .map(|message| sigil_core::FieldError::new("plugins", message))
                    .collect(),
            )
        })?;
        self.registry.publish(snapshot);
        Ok(())
    }

    /// Verifies the request's credential for `method`.
    pub async fn caller(&self, req: &Request, method: &str) -> ApiResult<Caller> {
        let ip = auth::client_ip(req, self.verifier.trusted_proxies());
        let Some((credential, transport)) = auth::credential(req, None, None)? else {
            self.verifier
                .note_outcome(sigil_token::verifier::MISSING.code);
            return Err(sigil_token::verifier::MISSING.into());
        };
        match self
            .verifier
            .verify(&credential, transport, ip, Some(method))
            .await
        {
            Ok(caller) => Ok(caller),
            Err(refusal) => {
                self.audit_reuse(&refusal, ip, auth::user_agent(req)).await;
                if let Some(e) =
                    crate::api::two_factor::enrolment_refusal(self, &credential, &refusal).await
                {
                    return Err(e);
                }
                Err(self.refusal(refusal, ip))
            }
        }
    }

    /// Records in the tenant's audit log that reuse detection revoked a token (once, by
    /// the verification that revoked it), with the address that presented the secret.
    pub async fn audit_reuse(
        &self,
        refusal: &sigil_token::Refusal,
        client_ip: Option<std::net::IpAddr>,
        user_agent: Option<String>,
    ) {
        let (Some(tenant), Some(token), true) = (
            refusal.tenant_id(),
            refusal.token_id(),
            refusal.revoked_now(),
        ) else {
            return;
        };
        let event = NewEvent {
            tenant: Some(tenant),
            actor: None,
            actor_label: "reuse detection".to_owned(),
            credential: Some(token),
            action: "token.reuse_detected".to_owned(),
            target_type: "token".to_owned(),
            target_id: Some(token.to_string()),
            before: None,
            after: Some(serde_json::json!({
                "owner_id": refusal.user_id().map(|u| u.0),
                "revoked": true,
                "reason": sigil_token::leaks::REUSE_DETECTED,
            })),
            client_ip: client_ip.map(|i| i.to_string()),
            user_agent,
        };
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(error = %e, "could not write an audit event");
        }
    }

    /// Answers a refused verification: audited and counted against the client address;
    /// past the address's limit, a bad credential (401) answers 429 instead.
    pub fn refusal(&self, refusal: sigil_token::Refusal, ip: Option<std::net::IpAddr>) -> ApiError {
        if !refusal.forbidden && !refusal.is_unavailable() {
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
            refusal.code,
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

    /// Writes an audit event for a change; a failure to audit is logged, not hidden.
    #[allow(clippy::too_many_arguments)]
    pub async fn audit(
        &self,
        req: &Request,
        caller: Option<&Principal>,
        action: &str,
        target_type: &str,
        target_id: Option<String>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) {
        let tenant = caller.map(|p| p.tenant_id);
        self.record_audit(
            req,
            caller,
            tenant,
            action,
            target_type,
            target_id,
            before,
            after,
        )
        .await;
    }

    /// Writes an audit event of the platform operator about one tenant: it is filed under
    /// that tenant, so the tenant's admins see what the operator did to it.
    #[allow(clippy::too_many_arguments)]
    pub async fn audit_operator(
        &self,
        req: &Request,
        tenant: sigil_core::TenantId,
        action: &str,
        target_type: &str,
        target_id: Option<String>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) {
        self.record_audit(
            req,
            None,
            Some(tenant),
            action,
            target_type,
            target_id,
            before,
            after,
        )
        .await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_audit(
        &self,
        req: &Request,
        caller: Option<&Principal>,
        tenant: Option<sigil_core::TenantId>,
        action: &str,
        target_type: &str,
        target_id: Option<String>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) {
        let event = NewEvent {
            tenant,
            actor: caller.map(|p| p.user_id),
            actor_label: caller.map_or_else(|| "operator".to_owned(), |p| p.username.clone()),
            credential: caller.map(|p| p.token_id),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id,
            before,
            after,
            client_ip: auth::client_ip(req, self.verifier.trusted_proxies()).map(|i| i.to_string()),
            user_agent: auth::user_agent(req),
        };
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(error = %e, action, "could not write an audit event");
        }
    }

    /// Publishes a change and applies it to this replica's caches at once.
    pub async fn changed(&self, change: sigil_token::Change) {
        self.changes.publish(change).await;
    }
}

/// Problems of a plugin file given with `--plugin`, named by the file.
fn file_errors(path: &std::path::Path, errors: Vec<String>) -> Vec<sigil_core::FieldError> {
    errors
        .into_iter()
        .map(|message| sigil_core::FieldError::new(path.display().to_string(), message))
        .collect()
}
