//! The web console: static files embedded in the binary, served at `/console/`. It calls
//! the public REST API like any other client.

use poem::endpoint::EmbeddedFilesEndpoint;
use poem::middleware::SetHeader;
use poem::{Endpoint, EndpointExt};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "console/"]
struct Assets;

/// Everything the console loads comes from this server; nothing may frame it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

pub fn endpoint() -> impl Endpoint {
    EmbeddedFilesEndpoint::<Assets>::new().with(
        SetHeader::new()
            .overriding("content-security-policy", CSP)
            .overriding("x-content-type-options", "nosniff")
            .overriding("x-frame-options", "DENY")
            .overriding("referrer-policy", "no-referrer")
            .overriding("cache-control", "no-cache"),
    )
}
