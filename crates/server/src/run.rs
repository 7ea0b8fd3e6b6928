//! Start-up and shutdown: database, migrations, master key, state, background work, and
//! a listener that drains in-flight requests on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::page::PageRequest;
use sigil_core::Error;
use sigil_token::Change;

use crate::app;
use crate::config::Config;
use crate::state::AppState;

pub struct Prepared {
    pub state: Arc<AppState>,
    pub app: app::Built,
}

/// Opens the database named by the configuration, creating the data directory for the
/// SQLite default.
pub async fn open_database(config: &Config) -> sigil_core::Result<Db> {
    let url = config.effective_database_url();
    if url.starts_with("sqlite:") && !url.contains(":memory:") {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::invalid(
                "data_dir",
                format!("cannot create {}: {e}", config.data_dir.display()),
            )
        })?;
    }
    sigil_core::db::connect(&url, config.db_max_connections).await
}

/// The first page of one tenant: enough to tell whether any exists.
const ONE_TENANT: PageRequest = PageRequest {
    offset: 0,
    limit: 1,
};

/// The SQLite file a URL names (`sqlite://path?...` or `sqlite:path`); `None` for
/// in-memory databases and other backends.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path.contains(":memory:") || query.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// A path as the user should read it: absolute, so a relative data directory shows where
/// it resolved from the current directory.
fn shown(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// Checks, creating nothing, that the configuration leads to the data a server made: an
/// existing, migrated Sigil database and the master key. Administration commands run this
/// first so that, run from the wrong directory or with other settings, they stop with a
/// message instead of creating a new database and key that no server uses. `create_hint`
/// ends the message: how to create the data on purpose.
pub async fn require_existing_data(config: &Config, create_hint: &str) -> Result<(), String> {
    let settings = "run it with the settings `sigil serve` uses (the same working directory, \
                    SIGIL_DATA_DIR, SIGIL_DATABASE_URL, SIGIL_MASTER_KEY or --config)";
    let relative = if config.data_dir.is_relative() {
        format!(
            " (the data directory {} is relative to the current directory)",
            config.data_dir.display()
        )
    } else {
        String::new()
    };
    let url = config.effective_database_url();
    if let Some(file) = sqlite_file(&url) {
        if !file.exists() {
            let relative = if config.database_url.is_empty() {
                relative.as_str()
            } else {
                ""
            };
            return Err(format!(
                "no Sigil database at {}{relative}; {settings}, or {create_hint}",
                shown(&file)
            ));
        }
    }
    let db = sigil_core::db::connect(&url, 1)
        .await
        .map_err(|e| format!("{e}; {settings}"))?;
    let changes = Arc::new(sigil_core::ChangeFeed::new(db.clone()));
    let migrated = sigil_tenant::TenantService::new(db.clone(), changes)
        .list(None, ONE_TENANT)
        .await
        .is_ok();
    let _ = db.close().await;
    if !migrated {
        let which = sqlite_file(&url).map_or_else(|| "the database".to_owned(), |f| shown(&f));
        return Err(format!(
            "{which} holds no Sigil data (not migrated); {settings}, or {create_hint}"
        ));
    }
    if config.master_key.is_empty() {
        let key = config.data_dir.join("master.key");
        if !key.exists() {
            return Err(format!(
                "no master key: SIGIL_MASTER_KEY is not set and {} does not exist{relative}; \
                 {settings}, or {create_hint}",
                shown(&key)
            ));
        }
    }
    Ok(())
}

pub async fn migrate(db: &Db) -> sigil_core::Result<()> {
    sigil_migrations::migrate(db).await.map_err(Error::from)
}

/// The master key: from configuration, or a key file in the data directory created once
/// with owner-only permissions.
pub fn master_key(config: &Config) -> sigil_core::Result<MasterKey> {
    if !config.master_key.is_empty() {
        return MasterKey::from_base64(&config.master_key);
    }
    let path = config.data_dir.join("master.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return MasterKey::from_base64(&text);
    }
    std::fs::create_dir_all(&config.data_dir).map_err(Error::internal)?;
    let key = MasterKey::generate();
    write_private(&path, key.to_base64().as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "generated a new master key; back it up (or set SIGIL_MASTER_KEY): without it the signing keys cannot be read"
    );
    Ok(key)
}

fn write_private(path: &Path, data: &[u8]) -> sigil_core::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(data).map_err(Error::internal)
}

/// Everything but the listener: database, migrations, state, registry and the app.
pub async fn prepare(config: Config) -> sigil_core::Result<Prepared> {
    let db = open_database(&config).await?;
    migrate(&db).await?;
    let master = master_key(&config)?;
    let state = AppState::build(config, db, master).await?;
    let app = app::build(state.clone()).await?;
    wire_changes(&state);
    Ok(Prepared { state, app })
}

/// Connects cache invalidation and registry reloads to the change feed.
fn wire_changes(state: &Arc<AppState>) {
    let verifier = Arc::downgrade(&state.verifier);
    state.changes.on_change(move |change| {
        if let Some(verifier) = verifier.upgrade() {
            verifier.apply(change);
        }
    });
    let mut rx = state.changes.subscribe();
    let reloader = state.clone();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(Change::Registry { .. } | Change::All) => {
                    if let Err(e) = reloader.reload_registry().await {
                        tracing::warn!(error = %e, "could not reload the registry");
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let _ = reloader.reload_registry().await;
                }
                Err(_) => return,
            }
        }
    });
    state.changes.spawn_listener();
}

/// Periodic work: usage flushes, refused-verification aggregates, registry version
/// checks (in case a notification was lost), audit retention.
fn spawn_background(
    state: Arc<AppState>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = stop;
        let mut tick = tokio::time::interval(Duration::from_secs(state.config.usage_flush_secs));
        let mut rounds: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            rounds += 1;
            if let Err(e) = state.flush_usage().await {
                tracing::warn!(error = %e, "usage flush failed; will retry");
            }
            if let Err(e) = state.audit.flush_refusals().await {
                tracing::warn!(error = %e, "audit flush failed");
            }
            if rounds % 5 == 0 {
                if let Ok(version) = state.plugins.version().await {
                    if version != state.registry.version() {
                        let _ = state.reload_registry().await;
                        state.verifier.apply(&Change::Registry { tenant: None });
                    }
                }
            }
            if rounds % 1800 == 0 {
                let _ = state.audit.prune(state.config.audit_retention_days).await;
            }
        }
    })
}

/// The webhook worker: fans out outbox events and sends due deliveries every
/// `webhook_poll_millis`, sweeps token expiries every `webhook_sweep_secs`, and prunes
/// the delivery log and stale address rows now and then. An attempt under way when the
/// server stops finishes first; an interrupted one is retried after its lease.
fn spawn_webhook_worker(
    state: Arc<AppState>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stop = stop;
        let mut tick =
            tokio::time::interval(Duration::from_millis(state.config.webhook_poll_millis));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sweep_every = Duration::from_secs(state.config.webhook_sweep_secs);
        let mut last_sweep: Option<std::time::Instant> = None;
        let mut last_prune = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                last_sweep = Some(std::time::Instant::now());
                let days = &state.config.webhook_expiring_days;
                if let Err(e) = sigil_token::notices::sweep(&state.db, days).await {
                    tracing::warn!(error = %e, "token expiry sweep failed");
                }
            }
            if let Err(e) = state.dispatcher.run_once().await {
                tracing::warn!(error = %e, "webhook delivery round failed; will retry");
            }
            if last_prune.elapsed() >= Duration::from_secs(3600) {
                last_prune = std::time::Instant::now();
                let days = state.config.webhook_retention_days;
                if let Err(e) = state.dispatcher.prune(days).await {
                    tracing::warn!(error = %e, "webhook log pruning failed");
                }
                let _ = sigil_token::addresses::prune(&state.db).await;
            }
        }
    })
}

/// Prints what a newcomer needs after the server is up; how to create a first tenant only
/// while there is none.
fn banner(state: &AppState, bound: &str, has_tenants: bool) {
    let base = if state.config.public_url.is_empty() {
        format!("http://{bound}")
    } else {
        state.config.public_url.trim_end_matches('/').to_owned()
    };
    println!("Sigil {} listening on {bound}", env!("CARGO_PKG_VERSION"));
    println!("  console:  {base}/console/");
    println!("  API docs: {base}/docs   (spec: {base}/openapi.json)");
    println!("  health:   {base}/healthz  {base}/readyz");
    if has_tenants {
        return;
    }
    println!("First steps (no tenant yet):");
    println!("  sigil tenant create acme         # prints the first admin's password");
    if state.config.database_url.is_empty() && state.config.master_key.is_empty() {
        println!(
            "    (run it in this directory, or with SIGIL_DATA_DIR={})",
            shown(&state.config.data_dir)
        );
    } else {
        println!("    (run it with this server's settings: SIGIL_* variables, --config)");
    }
    println!("  then sign in at {base}/console/ with tenant 'acme', user 'admin'");
}

/// Whether the database holds a tenant; `true` when it cannot tell (no misleading hint).
async fn has_tenants(state: &AppState) -> bool {
    let first = state.tenants.list(None, ONE_TENANT).await;
    !matches!(first, Ok(page) if page.total == 0)
}

/// Serves until SIGINT/SIGTERM, then drains requests and flushes background work.
pub async fn serve(prepared: Prepared) -> sigil_core::Result<()> {
    let has_tenants = has_tenants(&prepared.state).await;
    serve_with(prepared, shutdown_signal(), move |state, bound| {
        banner(state, bound, has_tenants)
    })
    .await
}

/// A server running in this process (tests, embedding): its address and a stop switch.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<sigil_core::Result<()>>,
}

impl Running {
    /// Graceful stop: drains requests and flushes usage, as on SIGTERM.
    pub async fn stop(mut self) -> sigil_core::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(Error::internal)?
    }
}

/// Starts serving in the background and returns once the listener is bound.
pub async fn spawn(prepared: Prepared) -> sigil_core::Result<Running> {
    let state = prepared.state.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel::<String>();
    let task = tokio::spawn(async move {
        let mut bound_tx = Some(bound_tx);
        serve_with(
            prepared,
            async {
                let _ = stop_rx.await;
            },
            move |_, bound| {
                if let Some(tx) = bound_tx.take() {
                    let _ = tx.send(bound.to_owned());
                }
            },
        )
        .await
    });
    let bound = bound_rx
        .await
        .map_err(|_| Error::internal("server did not start"))?;
    let addr = bound.parse().map_err(Error::internal)?;
    Ok(Running {
        addr,
        state,
        stop: Some(stop_tx),
        task,
    })
}

async fn serve_with(
    prepared: Prepared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(&AppState, &str) + Send,
) -> sigil_core::Result<()> {
    let Prepared { state, app } = prepared;
    let addr = state
        .config
        .listen_addr()
        .map_err(|e| Error::invalid("listen", e.to_string()))?;
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .map_err(|e| Error::invalid("listen", format!("cannot listen on {addr}: {e}")))?;
    let acceptor = crate::conn::HeadDeadline::new(
        acceptor,
        Duration::from_secs(state.config.header_read_timeout_secs),
    );
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().map(|s| s.to_string()))
        .unwrap_or_else(|| addr.to_string());
    on_bound(&state, &bound);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = spawn_background(state.clone(), stop_rx.clone());
    let webhooks = spawn_webhook_worker(state.clone(), stop_rx);
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    // Connections silent for this long are closed (idle keep-alives); a request head that
    // does not arrive in time is cut by `HeadDeadline` (see conn.rs and SECURITY.md).
    let idle = Duration::from_secs(state.config.idle_timeout_secs);
    let result = poem::Server::new_with_acceptor(acceptor)
        .idle_timeout(idle)
        .run_with_graceful_shutdown(app.endpoint, shutdown, Some(grace))
        .await;
    tracing::info!("shutting down: flushing usage and audit");
    let _ = stop_tx.send(true);
    let _ = background.await;
    let _ = webhooks.await;
    // Unspent credit leases go back to the shared balance first, then every spend is
    // written.
    state.limiter.close().await;
    if let Err(e) = state.flush_usage().await {
        tracing::error!(error = %e, "final usage flush failed");
    }
    let _ = state.audit.flush_refusals().await;
    result.map_err(|e| Error::internal(format!("server error: {e}")))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
