//! The delivery worker. Each round it (1) fans new outbox events out into one delivery per
//! subscribed, enabled endpoint of the event's tenant, and (2) sends the deliveries that
//! are due. Both steps claim their rows with one guarded UPDATE each (an event's
//! `dispatched_at`, a delivery's lease), so several replicas share the work without
//! sending an attempt twice; a replica that dies mid-attempt leaves a lease that expires,
//! and another replica retries: delivery is at least once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use sigil_core::crypto::MasterKey;
use sigil_core::db::Db;
use sigil_core::outbox;
use sigil_core::{Error, Result};
use uuid::Uuid;

use crate::endpoints::{message_id, new_delivery, seal_context, DeliveryStatus, Endpoint};
use crate::entity::{delivery, endpoint};
use crate::schedule::RetrySchedule;
use crate::signing::WebhookSecret;

/// The outcome of one HTTP attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered with this status.
    Status(u16),
    /// No answer: refused address, connection error, timeout. The text is for the log
    /// and names no secret.
    Error(String),
}

/// Sends one signed request. The server implements it over HTTP with a timeout, no
/// redirects, and addresses checked by [`crate::address::is_public`].
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn post(&self, url: &str, headers: Vec<(&'static str, String)>, body: String) -> Attempt;
}

/// Deliveries claimed per round.
const BATCH: u64 = 50;

#[derive(Clone)]
pub struct Dispatcher {
    db: Db,
    master: MasterKey,
    schedule: RetrySchedule,
    transport: Arc<dyn Transport>,
    /// How long a claimed delivery stays with this worker: the HTTP timeout and a margin.
    lease: Duration,
}

impl Dispatcher {
    pub fn new(
        db: Db,
        master: MasterKey,
        schedule: RetrySchedule,
        transport: Arc<dyn Transport>,
        timeout: Duration,
    ) -> Self {
        Self {
            db,
            master,
            schedule,
            transport,
            lease: timeout + Duration::from_secs(30),
        }
    }

    /// One round: fan out new events, then send what is due. Returns the attempts made.
    pub async fn run_once(&self) -> Result<usize> {
        self.fan_out().await?;
        self.deliver_due().await
    }

    /// Turns undispatched events into deliveries, each event in one transaction that
    /// first marks it dispatched (only one replica wins that UPDATE).
    pub async fn fan_out(&self) -> Result<usize> {
        let waiting = outbox::entity::Entity::find()
            .filter(outbox::entity::Column::DispatchedAt.is_null())
            .order_by_asc(outbox::entity::Column::Id)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        let mut created = 0;
        for event in waiting {
            let txn = self.db.begin().await?;
            let now = sigil_core::now();
            let claimed = outbox::entity::Entity::update_many()
                .col_expr(outbox::entity::Column::DispatchedAt, Expr::value(Some(now)))
                .filter(outbox::entity::Column::Id.eq(event.id))
                .filter(outbox::entity::Column::DispatchedAt.is_null())
                .exec(&txn)
                .await?;
            if claimed.rows_affected != 1 {
                txn.rollback().await?;
                continue;
            }
            let mut endpoints = endpoint::Entity::find()
                .filter(endpoint::Column::TenantId.eq(event.tenant_id))
                .filter(endpoint::Column::Enabled.eq(true));
            if let Some(only) = event.endpoint_id {
                endpoints = endpoints.filter(endpoint::Column::Id.eq(only));
            }
            for e in endpoints.all(&txn).await? {
                let wanted = event.endpoint_id.is_some()
                    || Endpoint::from_model_ref(&e).wants(&event.event_type);
                if wanted {
                    new_delivery(event.tenant_id, e.id, event.id, &event.event_type, now)
                        .insert(&txn)
                        .await?;
                    created += 1;
                }
            }
            txn.commit().await?;
        }
        Ok(created)
    }

    /// Claims the due deliveries (a lease each) and sends them concurrently.
    pub async fn deliver_due(&self) -> Result<usize> {
        let now = sigil_core::now();
        let free = || {
            Condition::any()
                .add(delivery::Column::LeaseUntil.is_null())
                .add(delivery::Column::LeaseUntil.lt(now))
        };
        let due = delivery::Entity::find()
            .filter(delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .filter(delivery::Column::NextAttemptAt.lte(now))
            .filter(free())
            .order_by_asc(delivery::Column::NextAttemptAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        let lease_until = now + chrono::Duration::from_std(self.lease).map_err(Error::internal)?;
        let mut tasks = tokio::task::JoinSet::new();
        for d in due {
            let claimed = delivery::Entity::update_many()
                .col_expr(delivery::Column::LeaseUntil, Expr::value(Some(lease_until)))
                .filter(delivery::Column::Id.eq(d.id))
                .filter(delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
                .filter(delivery::Column::Attempts.eq(d.attempts))
                .filter(free())
                .exec(&self.db)
                .await?;
            if claimed.rows_affected == 1 {
                let this = self.clone();
                tasks.spawn(async move { this.attempt(d).await });
            }
        }
        let mut sent = 0;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "a webhook delivery could not be recorded")
                }
                Err(e) => tracing::error!(error = %e, "a webhook delivery task failed"),
            }
        }
        Ok(sent)
    }

    /// Makes one attempt of a claimed delivery and records its outcome.
    async fn attempt(&self, d: delivery::Model) -> Result<()> {
        let target = endpoint::Entity::find()
            .filter(endpoint::Column::TenantId.eq(d.tenant_id))
            .filter(endpoint::Column::Id.eq(d.endpoint_id))
            .one(&self.db)
            .await?;
        let event = outbox::entity::Entity::find()
            .filter(outbox::entity::Column::TenantId.eq(d.tenant_id))
            .filter(outbox::entity::Column::Id.eq(d.event_id))
            .one(&self.db)
            .await?;
        let outcome = match (target, event) {
            (None, _) => Outcome::Give("the endpoint was deleted".into()),
            (_, None) => Outcome::Give("the event is no longer stored".into()),
            (Some(t), Some(_)) if !t.enabled && d.event_type != outbox::events::WEBHOOK_TEST => {
                Outcome::Give("the endpoint is disabled".into())
            }
            (Some(t), Some(e)) => {
                let secret = WebhookSecret::from_bytes(
                    self.master.open(&t.secret_sealed, &seal_context(t.id))?,
                );
                let msg_id = message_id(e.id);
                let timestamp = Utc::now().timestamp();
                let headers = vec![
                    ("content-type", "application/json".to_owned()),
                    (
                        "user-agent",
                        format!("Sigil-Webhooks/{}", env!("CARGO_PKG_VERSION")),
                    ),
                    (
                        "webhook-signature",
                        secret.sign(&msg_id, timestamp, &e.payload),
                    ),
                    ("webhook-id", msg_id),
                    ("webhook-timestamp", timestamp.to_string()),
                ];
                Outcome::Sent(self.transport.post(&t.url, headers, e.payload).await)
            }
        };
        self.record(&d, outcome).await
    }

    /// Writes the outcome: success, the next attempt per the schedule, or failure.
    async fn record(&self, d: &delivery::Model, outcome: Outcome) -> Result<()> {
        let now = sigil_core::now();
        let attempts = d.attempts + 1;
        let (status, code, error) = match &outcome {
            Outcome::Sent(Attempt::Status(s)) if (200..300).contains(s) => {
                (DeliveryStatus::Succeeded, Some(i32::from(*s)), None)
            }
            Outcome::Sent(Attempt::Status(s)) => (
                DeliveryStatus::Pending,
                Some(i32::from(*s)),
                Some(format!("the endpoint answered {s}")),
            ),
            Outcome::Sent(Attempt::Error(e)) => (DeliveryStatus::Pending, None, Some(e.clone())),
            Outcome::Give(why) => (DeliveryStatus::Failed, None, Some(why.clone())),
        };
        let (status, next): (DeliveryStatus, Option<DateTime<Utc>>) = match status {
            DeliveryStatus::Pending => match self.schedule.wait_after(attempts) {
                Some(wait) => (
                    DeliveryStatus::Pending,
                    Some(now + chrono::Duration::from_std(wait).map_err(Error::internal)?),
                ),
                None => (DeliveryStatus::Failed, None),
            },
            other => (other, None),
        };
        let made_attempt = matches!(outcome, Outcome::Sent(_));
        delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                delivery::Column::Attempts,
                Expr::value(if made_attempt { attempts } else { d.attempts }),
            )
            .col_expr(delivery::Column::NextAttemptAt, Expr::value(next))
            .col_expr(
                delivery::Column::LastAttemptAt,
                Expr::value(if made_attempt {
                    Some(now)
                } else {
                    d.last_attempt_at
                }),
            )
            .col_expr(
                delivery::Column::LastStatusCode,
                Expr::value(code.or(if made_attempt {
                    None
                } else {
                    d.last_status_code
                })),
            )
            .col_expr(
                delivery::Column::LastError,
                Expr::value(error.map(|e| e.chars().take(500).collect::<String>())),
            )
            .col_expr(
                delivery::Column::LeaseUntil,
                Expr::value(None::<DateTime<Utc>>),
            )
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
            .filter(delivery::Column::Id.eq(d.id))
            .filter(delivery::Column::Attempts.eq(d.attempts))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes finished deliveries, and events, older than `days`.
    pub async fn prune(&self, days: u32) -> Result<u64> {
        let cutoff = sigil_core::now() - chrono::Duration::days(i64::from(days));
        let d = delivery::Entity::delete_many()
            .filter(delivery::Column::Status.ne(DeliveryStatus::Pending.as_str()))
            .filter(delivery::Column::CreatedAt.lt(cutoff))
            .exec(&self.db)
            .await?;
        let pending: Vec<Uuid> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::EventId)
            .filter(delivery::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .filter(delivery::Column::CreatedAt.lt(cutoff))
            .into_tuple()
            .all(&self.db)
            .await?;
        let e = outbox::entity::Entity::delete_many()
            .filter(outbox::entity::Column::DispatchedAt.is_not_null())
            .filter(outbox::entity::Column::CreatedAt.lt(cutoff))
            .filter(outbox::entity::Column::Id.is_not_in(pending))
            .exec(&self.db)
            .await?;
        Ok(d.rows_affected + e.rows_affected)
    }
}

enum Outcome {
    Sent(Attempt),
    /// Not attempted, and never will be.
    Give(String),
}

impl Endpoint {
    pub(crate) fn from_model_ref(m: &endpoint::Model) -> Self {
        Endpoint {
            id: m.id,
            tenant: m.tenant_id,
            url: m.url.clone(),
            description: m.description.clone(),
            event_types: serde_json::from_str(&m.event_types).unwrap_or_default(),
            enabled: m.enabled,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}
