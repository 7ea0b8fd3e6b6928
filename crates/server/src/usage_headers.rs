//! The usage-limit headers of an allowed call: the caller check leaves the state of the
//! token's limits in a slot of the request, and this layer writes it on the answer
//! (IETF httpapi draft `RateLimit-Policy` / `RateLimit`). Refusals carry their own.

use std::sync::{Arc, OnceLock};

use poem::{Endpoint, IntoResponse, Request, Response};
use sigil_limits::LimitState;

/// The slot a request's caller check fills when the token has usage limits.
#[derive(Clone, Default)]
pub struct LimitHeaders(Arc<OnceLock<(String, String)>>);

impl LimitHeaders {
    /// Keeps the header values of `state` (the first check of a request wins).
    pub fn set(&self, state: &LimitState) {
        if let (Some(policy), Some(now)) = (state.policy_header(), state.ratelimit_header()) {
            let _ = self.0.set((policy, now));
        }
    }
}

/// Gives every request a slot and writes what its caller check left in it.
pub async fn write<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let slot = LimitHeaders::default();
    req.extensions_mut().insert(slot.clone());
    let mut resp = Box::pin(next.call(req)).await?.into_response();
    if let Some((policy, now)) = slot.0.get() {
        let headers = resp.headers_mut();
        if !headers.contains_key("ratelimit") {
            if let (Ok(policy), Ok(now)) = (policy.parse(), now.parse()) {
                headers.insert("ratelimit-policy", policy);
                headers.insert("ratelimit", now);
            }
        }
    }
    Ok(resp)
}
