//! The web console: static files embedded in the binary, served at `/console/`. It calls
//! the public REST API like any other client.

use poem::endpoint::EmbeddedFilesEndpoint;
use poem::Endpoint;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "console/"]
struct Assets;

pub fn endpoint() -> impl Endpoint {
    EmbeddedFilesEndpoint::<Assets>::new()
}
