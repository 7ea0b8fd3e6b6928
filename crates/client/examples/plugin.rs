//! A tiny plugin service protected by Sigil: `GET /1.0/environment/control/rest/stopenv`
//! answers `{"result":0}` when the caller's token may call
//! `platform.environment.control.stopenv`.
//!
//! ```sh
//! SIGIL_URL=http://127.0.0.1:8080 SIGIL_INTROSPECT_TOKEN=<token with sigil.introspect> \
//!   cargo run -p sigil-client --example plugin
//! curl "http://127.0.0.1:9090/1.0/environment/control/rest/stopenv?envName=x&session=$TOKEN"
//! ```

use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::web::{Data, Json, Query};
use poem::{get, handler, EndpointExt, Request, Route, Server};
use serde::Deserialize;
use sigil_client::Introspector;

#[derive(Deserialize)]
struct StopEnv {
    #[serde(rename = "envName")]
    env_name: String,
    session: Option<String>,
}

#[handler]
async fn stop_env(
    req: &Request,
    Query(q): Query<StopEnv>,
    sigil: Data<&Arc<Introspector>>,
) -> poem::Result<Json<serde_json::Value>> {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = bearer
        .or(q.session)
        .ok_or_else(|| poem::Error::from_status(StatusCode::UNAUTHORIZED))?;
    let ip = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let decision = sigil
        .check(&token, "platform.environment.control.stopenv", ip)
        .await
        .map_err(|_| poem::Error::from_status(StatusCode::BAD_GATEWAY))?;
    if !decision.active {
        let status = match decision.code.as_deref() {
            Some("method_not_in_scope" | "user_lacks_permission" | "api_access_denied") => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::UNAUTHORIZED,
        };
        return Err(poem::Error::from_status(status));
    }
    Ok(Json(
        serde_json::json!({"result": 0, "env": q.env_name, "by": decision.username}),
    ))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let url = std::env::var("SIGIL_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let credential = std::env::var("SIGIL_INTROSPECT_TOKEN").unwrap_or_default();
    let sigil = Arc::new(Introspector::new(&url, &credential, Duration::from_secs(5)));
    let app = Route::new()
        .at("/1.0/environment/control/rest/stopenv", get(stop_env))
        .data(sigil);
    Server::new(poem::listener::TcpListener::bind("127.0.0.1:9090"))
        .run(app)
        .await
}
