use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct ServiceApi(pub Arc<AppState>);

#[derive(Object)]
pub struct HealthStatus {
    /// `ok`, or what is wrong.
    pub status: String,
    pub version: String,
    /// Readiness: where usage limits are counted: `in process` (one replica), `shared`
    /// (through Redis), or `per replica` (Redis is configured but unreachable: each
    /// replica enforces its share of every limit until it is back).
    pub limits: Option<String>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The process is up.
    #[oai(status = 200)]
    Ok(Json<HealthStatus>),
}

#[derive(ApiResponse)]
pub enum ReadinessResponse {
    /// The database is reachable and migrated.
    #[oai(status = 200)]
    Ready(Json<HealthStatus>),
    /// Not ready: the database is unreachable or not migrated.
    #[oai(status = 503)]
    NotReady(Json<HealthStatus>, #[oai(header = "Retry-After")] u64),
}

fn status(text: &str) -> Json<HealthStatus> {
    Json(HealthStatus {
        status: text.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        limits: None,
    })
}

/// Where usage limits are counted now.
pub fn limits_mode(health: sigil_limits::LimiterHealth) -> &'static str {
    match (health.redis_configured, health.shared) {
        (false, _) => "in process",
        (true, true) => "shared",
        (true, false) => "per replica",
    }
}

#[OpenApi(tag = "ApiTags::Service")]
impl ServiceApi {
    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get", operation_id = "getHealth")]
    async fn health(&self) -> ApiResult<HealthResponse> {
        Ok(HealthResponse::Ok(status("ok")))
    }

    /// Readiness: the database answers and every migration is applied.
    #[oai(path = "/readyz", method = "get", operation_id = "getReadiness")]
    async fn readiness(&self) -> ApiResult<ReadinessResponse> {
        if !sigil_core::db::ping(&self.0.db).await {
            return Ok(ReadinessResponse::NotReady(
                status("database unreachable"),
                2,
            ));
        }
        match sigil_migrations::is_up_to_date(&self.0.db).await {
            Ok(true) => {
                let mut ready = status("ok");
                ready.0.limits = Some(limits_mode(self.0.limiter.health()).to_owned());
                Ok(ReadinessResponse::Ready(ready))
            }
            Ok(false) => Ok(ReadinessResponse::NotReady(status("migrations pending"), 5)),
            Err(_) => Ok(ReadinessResponse::NotReady(
                status("database unreachable"),
                2,
            )),
        }
    }
}
