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
use sigil_core::{Error, Result, TenantOwned};
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
            let mut endpoints = endpoint::Entity::find_in(event.tenant_id)
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
        // The worker serves every tenant: the due deliveries of all of them.
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
            let claimed = delivery::Entity::update_many_in(d.tenant_id)
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
        let target = endpoint::Entity::find_by_id_in(d.tenant_id, d.endpoint_id)
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
        delivery::Entity::update_many_in(d.tenant_id)
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
        // Retention is the same for every tenant.
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sigil_core::outbox::events;
    use sigil_core::page::PageRequest;
    use sigil_core::TenantId;

    use super::*;
    use crate::endpoints::{NewEndpoint, WebhookService};

    /// Answers every request with one status and remembers where each went.
    struct Recorder {
        status: u16,
        sent: Mutex<Vec<(String, String)>>,
    }

    #[async_trait::async_trait]
    impl Transport for Recorder {
        async fn post(
            &self,
            url: &str,
            headers: Vec<(&'static str, String)>,
            _: String,
        ) -> Attempt {
            let id = headers
                .into_iter()
                .find(|(h, _)| *h == "webhook-id")
                .map(|(_, v)| v);
            self.sent
                .lock()
                .unwrap()
                .push((url.to_owned(), id.unwrap_or_default()));
            Attempt::Status(self.status)
        }
    }

    struct Setup {
        hooks: WebhookService,
        dispatcher: Dispatcher,
        recorder: Arc<Recorder>,
        db: Db,
    }

    async fn setup(status: u16) -> Setup {
        let db = sigil_core::db::connect("sqlite::memory:", 1).await.unwrap();
        sigil_migrations::migrate(&db).await.unwrap();
        let master = MasterKey::generate();
        let recorder = Arc::new(Recorder {
            status,
            sent: Mutex::default(),
        });
        Setup {
            hooks: WebhookService::new(db.clone(), master.clone(), false),
            dispatcher: Dispatcher::new(
                db.clone(),
                master,
                RetrySchedule::parse("1m").unwrap(),
                recorder.clone(),
                Duration::from_secs(5),
            ),
            recorder,
            db,
        }
    }

    fn admin(tenant: TenantId) -> sigil_audit::Actor {
        sigil_audit::Actor::user(tenant, sigil_core::UserId::new(), "alice", None)
    }

    async fn endpoint(
        s: &Setup,
        tenant: TenantId,
        url: &str,
        types: &[&str],
        enabled: bool,
    ) -> Uuid {
        let new = NewEndpoint {
            url: url.into(),
            description: String::new(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            secret: None,
            enabled,
        };
        s.hooks
            .create(&admin(tenant), tenant, new)
            .await
            .unwrap()
            .0
            .id
    }

    #[tokio::test]
    async fn an_event_reaches_the_subscribed_enabled_endpoints_of_its_tenant_only() {
        let s = setup(204).await;
        let (acme, other) = (TenantId::new(), TenantId::new());
        let everything = endpoint(&s, acme, "https://acme.example/all", &[], true).await;
        let created = endpoint(
            &s,
            acme,
            "https://acme.example/created",
            &[events::TOKEN_CREATED],
            true,
        )
        .await;
        endpoint(
            &s,
            acme,
            "https://acme.example/revoked",
            &[events::TOKEN_REVOKED],
            true,
        )
        .await;
        endpoint(&s, acme, "https://acme.example/off", &[], false).await;
        endpoint(&s, other, "https://other.example/all", &[], true).await;
        let event = outbox::enqueue(&s.db, acme, events::TOKEN_CREATED, serde_json::json!({}))
            .await
            .unwrap();

        assert_eq!(s.dispatcher.fan_out().await.unwrap(), 2);
        assert_eq!(
            s.dispatcher.fan_out().await.unwrap(),
            0,
            "an event fans out once"
        );
        assert_eq!(s.dispatcher.deliver_due().await.unwrap(), 2);
        let mut sent = s.recorder.sent.lock().unwrap().clone();
        sent.sort();
        let id = message_id(event);
        assert_eq!(
            sent,
            [
                ("https://acme.example/all".to_owned(), id.clone()),
                ("https://acme.example/created".to_owned(), id),
            ]
        );
        for hook in [everything, created] {
            let log = s
                .hooks
                .deliveries(acme, hook, None, PageRequest::default())
                .await
                .unwrap();
            assert_eq!(log.items.len(), 1);
            let d = &log.items[0];
            assert_eq!(
                (d.status, d.attempts, d.last_status_code),
                (DeliveryStatus::Succeeded, 1, Some(204))
            );
            assert_eq!(d.next_attempt_at, None);
        }
        assert_eq!(
            s.dispatcher.deliver_due().await.unwrap(),
            0,
            "nothing is sent twice"
        );
    }

    #[tokio::test]
    async fn a_refused_attempt_is_retried_per_the_schedule_then_fails() {
        let s = setup(500).await;
        let acme = TenantId::new();
        let hook = endpoint(&s, acme, "https://acme.example/all", &[], true).await;
        s.hooks.send_test(&admin(acme), acme, hook).await.unwrap();
        assert_eq!(s.dispatcher.run_once().await.unwrap(), 1);
        let log = s
            .hooks
            .deliveries(acme, hook, None, PageRequest::default())
            .await
            .unwrap();
        let d = &log.items[0];
        assert_eq!(
            (d.status, d.attempts, d.last_status_code),
            (DeliveryStatus::Pending, 1, Some(500))
        );
        assert_eq!(d.last_error.as_deref(), Some("the endpoint answered 500"));
        let wait = d.next_attempt_at.unwrap() - d.last_attempt_at.unwrap();
        assert_eq!(wait, chrono::Duration::minutes(1));
        // Not due yet.
        assert_eq!(s.dispatcher.deliver_due().await.unwrap(), 0);
        // Due now: the schedule has one retry, so the second refusal is final.
        delivery::Entity::update_many_in(acme)
            .col_expr(
                delivery::Column::NextAttemptAt,
                Expr::value(Some(sigil_core::now())),
            )
            .exec(&s.db)
            .await
            .unwrap();
        assert_eq!(s.dispatcher.deliver_due().await.unwrap(), 1);
        let log = s
            .hooks
            .deliveries(acme, hook, None, PageRequest::default())
            .await
            .unwrap();
        let d = &log.items[0];
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at),
            (DeliveryStatus::Failed, 2, None)
        );
    }

    #[tokio::test]
    async fn a_delivery_to_a_disabled_endpoint_gives_up_without_sending() {
        let s = setup(204).await;
        let acme = TenantId::new();
        let hook = endpoint(&s, acme, "https://acme.example/all", &[], true).await;
        outbox::enqueue(&s.db, acme, events::TOKEN_CREATED, serde_json::json!({}))
            .await
            .unwrap();
        s.dispatcher.fan_out().await.unwrap();
        let off = crate::endpoints::EndpointPatch {
            enabled: Some(false),
            ..Default::default()
        };
        s.hooks.update(&admin(acme), acme, hook, off).await.unwrap();
        s.dispatcher.deliver_due().await.unwrap();
        assert!(s.recorder.sent.lock().unwrap().is_empty());
        let log = s
            .hooks
            .deliveries(acme, hook, None, PageRequest::default())
            .await
            .unwrap();
        let d = &log.items[0];
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 0));
        assert_eq!(d.last_error.as_deref(), Some("the endpoint is disabled"));
    }
}
