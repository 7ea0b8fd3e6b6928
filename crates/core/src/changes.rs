//! The change feed: every change that can affect a cached verification is applied to the
//! local caches at once and, on PostgreSQL, published with NOTIFY so every other replica
//! drops the same entries. A replica that loses its listener connection clears its caches
//! when it reconnects, since it may have missed notifications.

use std::sync::Arc;
use std::time::Duration;

use crate::db::Db;
use crate::{TenantId, TokenId, UserId};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub const CHANNEL: &str = "sigil_changes";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Token {
        tenant: TenantId,
        token: TokenId,
    },
    User {
        tenant: TenantId,
        user: UserId,
    },
    Tenant {
        tenant: TenantId,
    },
    Keys {
        tenant: TenantId,
    },
    /// Plugins or scope sets changed; the registry snapshot must be rebuilt.
    Registry {
        tenant: Option<TenantId>,
    },
    /// Everything may be stale (e.g. after a lost listener connection).
    All,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: uuid::Uuid,
    change: Change,
}

type Handler = Arc<dyn Fn(&Change) + Send + Sync>;

/// Fan-out of changes to local caches (synchronously, before the change's response is
/// sent), to async subscribers, and, on PostgreSQL, to other replicas.
#[derive(Clone)]
pub struct ChangeFeed {
    db: Db,
    origin: uuid::Uuid,
    local: broadcast::Sender<Change>,
    handlers: Arc<std::sync::RwLock<Vec<Handler>>>,
}

impl ChangeFeed {
    pub fn new(db: Db) -> Self {
        let (local, _) = broadcast::channel(4096);
        Self {
            db,
            origin: uuid::Uuid::new_v4(),
            local,
            handlers: Arc::default(),
        }
    }

    /// Registers a cache that must drop entries synchronously on every change.
    pub fn on_change(&self, handler: impl Fn(&Change) + Send + Sync + 'static) {
        if let Ok(mut handlers) = self.handlers.write() {
            handlers.push(Arc::new(handler));
        }
    }

    fn deliver(&self, change: Change) {
        if let Ok(handlers) = self.handlers.read() {
            for handler in handlers.iter() {
                handler(&change);
            }
        }
        let _ = self.local.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.local.subscribe()
    }

    fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == DatabaseBackend::Postgres
    }

    /// Applies locally at once, then tells other replicas. A failed NOTIFY is logged: the
    /// cache TTL bounds how long another replica can serve a stale entry.
    pub async fn publish(&self, change: Change) {
        self.deliver(change.clone());
        if !self.is_postgres() {
            return;
        }
        let Ok(payload) = serde_json::to_string(&Envelope {
            origin: self.origin,
            change,
        }) else {
            return;
        };
        let stmt = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), payload.into()],
        );
        if let Err(e) = self.db.execute(stmt).await {
            tracing::warn!(error = %e, "could not publish a change to other replicas");
        }
    }

    /// Listens for other replicas' changes until the process ends (PostgreSQL only).
    pub fn spawn_listener(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if !self.is_postgres() {
            return None;
        }
        let feed = self.clone();
        Some(tokio::spawn(async move { feed.listen_forever().await }))
    }

    async fn listen_forever(&self) {
        let pool = self.db.get_postgres_connection_pool().clone();
        let mut first = true;
        // Engines without LISTEN (CockroachDB) fail every attempt: back off so the log is
        // not flooded; the cache TTL bounds staleness meanwhile.
        let mut delay = Duration::from_millis(500);
        loop {
            match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => match listener.listen(CHANNEL).await {
                    Ok(()) => {
                        if !first {
                            self.deliver(Change::All);
                        }
                        first = false;
                        delay = Duration::from_millis(500);
                        self.pump(&mut listener).await;
                        // Caches are cleared on reconnecting (above), not on losing the
                        // connection: while the database is away, cached verifications keep
                        // working (nothing can change meanwhile; the TTL bounds staleness).
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?delay, "cannot LISTEN for changes")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "change listener cannot connect")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }

    async fn pump(&self, listener: &mut sqlx::postgres::PgListener) {
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) => {
                    if let Ok(env) = serde_json::from_str::<Envelope>(note.payload()) {
                        if env.origin != self.origin {
                            self.deliver(env.change);
                        }
                    }
                }
                // The connection dropped; notifications may have been missed.
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "change listener failed");
                    return;
                }
            }
        }
    }
}
