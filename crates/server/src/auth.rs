//! Reading the credential and the client address from a request. Every transport the seed
//! products use is accepted: `Authorization: Bearer`, `Authorization: authToken`, the
//! `Auth-Token` header, and the `auth_token` / `session` query (or form) parameters.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::Request;
use sigil_token::verifier::Transport;

use crate::problem::ApiError;

/// An `auth_token` found in a form body (set by the app's form middleware).
#[derive(Clone)]
pub struct FormCredential(pub String);

/// The credential of a request, or `None` when none was given. Two different credentials
/// in one request are refused (400) rather than guessing which one the caller meant.
pub fn credential(
    req: &Request,
    query: Option<&str>,
    form: Option<&str>,
) -> Result<Option<(String, Transport)>, ApiError> {
    // The hot path: header values are read in place and the credential is copied once.
    let mut found: Vec<(String, Transport)> = Vec::new();
    for value in req.headers().get_all(poem::http::header::AUTHORIZATION) {
        let text = header_text(value.as_bytes())?;
        let (scheme, value) = text.split_once(' ').unwrap_or((text, ""));
        if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("authtoken") {
            found.push((value.trim().to_owned(), Transport::Header));
        }
    }
    for value in req.headers().get_all(&AUTH_TOKEN) {
        found.push((
            header_text(value.as_bytes())?.trim().to_owned(),
            Transport::Header,
        ));
    }
    // The request's own query, and the forwarded request's (forward auth) when given.
    let own = req.uri().query().filter(|own| Some(*own) != query);
    for source in [query, own, form].into_iter().flatten() {
        for pair in source.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if is_credential_key(key) {
                found.push((percent_decode(value), Transport::QueryOrForm));
            }
        }
    }
    if let Some(FormCredential(token)) = req.extensions().get::<FormCredential>() {
        found.push((token.clone(), Transport::QueryOrForm));
    }
    found.retain(|(v, _)| !v.is_empty());
    let Some(first) = found.first() else {
        return Ok(None);
    };
    if found.iter().any(|(v, _)| v != &first.0) {
        return Err(ApiError::bad_request(
            "multiple_credentials",
            "the request carries more than one different credential",
        ));
    }
    // Prefer reporting a header transport when the same credential came both ways.
    let transport = if found.iter().any(|(_, t)| *t == Transport::Header) {
        Transport::Header
    } else {
        Transport::QueryOrForm
    };
    let (credential, _) = found.swap_remove(0);
    Ok(Some((credential, transport)))
}

/// Whether a (still encoded) query or form key names a credential: `auth_token` or
/// `session`. Keys without escapes are compared as they are, without decoding.
fn is_credential_key(raw: &str) -> bool {
    let matches = |k: &str| k == "auth_token" || k == "session";
    if raw.contains(['%', '+']) {
        matches(&percent_decode(raw))
    } else {
        matches(raw)
    }
}

const AUTH_TOKEN: poem::http::HeaderName = poem::http::HeaderName::from_static("auth-token");

/// The header value as text; refused when it is not UTF-8 or holds a control character.
fn header_text(raw: &[u8]) -> Result<&str, ApiError> {
    let text = std::str::from_utf8(raw).map_err(|_| malformed())?;
    let control = if text.is_ascii() {
        // Without an early exit, so that it runs over whole vectors (a token is ~700 bytes).
        raw.iter()
            .fold(false, |found, &b| found | (b < 0x20) | (b == 0x7f))
    } else {
        text.chars().any(char::is_control)
    };
    if control {
        Err(malformed())
    } else {
        Ok(text)
    }
}

fn malformed() -> ApiError {
    sigil_core::Error::unauthorized(
        "token_malformed",
        "the credential contains invalid characters",
    )
    .into()
}

/// The first value of `key` in a form or query string, decoded; only that value is
/// decoded (a body may carry a long token under another name).
pub fn form_value(text: &str, key: &str) -> Option<String> {
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k.len() <= 3 * key.len() && percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The client address: the socket peer, or what a trusted proxy says it forwarded for.
pub fn client_ip(req: &Request, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip())?;
    let peer = canonical(peer);
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return Some(peer);
    }
    // Walk X-Forwarded-For from the right, skipping our own proxies.
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        if let Ok(text) = value.to_str() {
            hops.extend(
                text.split(',')
                    .filter_map(|h| h.trim().parse::<IpAddr>().ok()),
            );
        }
    }
    if hops.is_empty() {
        for value in req.headers().get_all("forwarded") {
            if let Ok(text) = value.to_str() {
                hops.extend(text.split([',', ';']).filter_map(|part| {
                    let (k, v) = part.trim().split_once('=')?;
                    if !k.eq_ignore_ascii_case("for") {
                        return None;
                    }
                    let v = v.trim_matches('"').trim_start_matches('[');
                    let v = v.split(']').next().unwrap_or(v);
                    v.parse::<IpAddr>()
                        .ok()
                        .or_else(|| v.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
                }));
            }
        }
    }
    if hops.is_empty() {
        if let Some(real) = req.headers().get("x-real-ip").and_then(|v| v.to_str().ok()) {
            hops.extend(real.trim().parse::<IpAddr>().ok());
        }
    }
    let found = hops
        .iter()
        .rev()
        .map(|ip| canonical(*ip))
        .find(|ip| !trusted.iter().any(|n| n.contains(ip)));
    Some(found.or_else(|| hops.first().copied()).unwrap_or(peer))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The request's user agent as sent (read in place, for the hot path).
pub fn user_agent_text(req: &Request) -> Option<&str> {
    req.headers()
        .get(poem::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

pub fn user_agent(req: &Request) -> Option<String> {
    req.headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(400).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_value_is_found_by_its_decoded_name() {
        let body = "token=eyJ0eXAi.abc&auth%5Ftoken=s%2Bcret+x&auth_token=second";
        assert_eq!(form_value(body, "auth_token").as_deref(), Some("s+cret x"));
        assert_eq!(form_value(body, "token").as_deref(), Some("eyJ0eXAi.abc"));
        assert_eq!(form_value("flag&other=1", "flag").as_deref(), Some(""));
        assert_eq!(form_value("token=x", "auth_token"), None);
        assert_eq!(form_value("", "auth_token"), None);
    }
}
