//! Untrusted input on the hot path: the JWT pre-parser (`jwt::inspect`), the form/query
//! decoder (`auth::form_urlencoded_pairs`) and credential extraction from headers, query
//! and form body (`auth::credential`). None may panic; extraction either finds nothing,
//! one credential, or refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poem::http::{HeaderValue, Uri};
use poem::Request;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = sigil_token::jwt::inspect(&text);

    let pairs = sigil_server::auth::form_urlencoded_pairs(&text);
    // Plain text (no escapes, separators or `+`) decodes to itself.
    if !text.contains(['%', '+', '&', '=']) && !text.is_empty() {
        assert_eq!(pairs, vec![(text.to_string(), String::new())]);
    }

    // The same bytes as every transport a credential may use.
    let mut builder = Request::builder();
    if let Ok(uri) = format!("/api/v1/users/me?{text}").parse::<Uri>() {
        builder = builder.uri(uri);
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        builder = builder
            .header("authorization", value.clone())
            .header("auth-token", value);
    }
    if let Ok(value) = HeaderValue::from_bytes(&[b"Bearer ", data].concat()) {
        builder = builder.header("authorization", value);
    }
    let req = builder.finish();
    if let Ok(Some((credential, _))) = sigil_server::auth::credential(&req, None, Some(&text)) {
        assert!(!credential.is_empty());
    }
});
