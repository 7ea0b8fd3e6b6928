//! Outbound webhook requests (the [`sigil_webhook::Transport`] of the delivery worker):
//! POST with a timeout, no redirects, no proxy from the environment, and a resolver that
//! drops internal addresses (unless the operator allows them), checked at connect time so
//! a name cannot be re-pointed inward after registration. Nothing of the request or the
//! answer is logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sigil_webhook::{address, Attempt, Transport};

/// Resolves names to their public addresses only.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| address::is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err("the name resolves to no public address".into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

pub struct HttpTransport {
    client: reqwest::Client,
    allow_private: bool,
}

impl HttpTransport {
    pub fn new(timeout: Duration, allow_private: bool) -> sigil_core::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder.build().map_err(sigil_core::Error::internal)?;
        Ok(Self {
            client,
            allow_private,
        })
    }
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn post(&self, url: &str, headers: Vec<(&'static str, String)>, body: String) -> Attempt {
        // Literal addresses skip the resolver: they are checked here.
        if let Err(e) = address::check_url(url, self.allow_private) {
            return Attempt::Error(e.to_string());
        }
        let mut request = self.client.post(url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) => Attempt::Status(response.status().as_u16()),
            Err(e) if e.is_timeout() => Attempt::Error("no answer within the timeout".into()),
            Err(e) if e.is_connect() => Attempt::Error("could not connect to the endpoint".into()),
            Err(_) => Attempt::Error("the request failed".into()),
        }
    }
}
