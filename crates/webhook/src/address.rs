//! Where deliveries may go: http(s) URLs without credentials, and (unless the operator
//! allows them) never to private, loopback, link-local or otherwise internal addresses, so
//! a tenant admin cannot make the server probe its own network. The check runs on the
//! URL at registration and on every resolved address at delivery time (the server's
//! resolver calls [`is_public`]), so a name that later resolves inward is refused too.

use std::net::IpAddr;

use sigil_core::{Error, Result};

/// Checks an endpoint URL; `allow_private` lets literal internal addresses through.
pub fn check_url(text: &str, allow_private: bool) -> Result<url::Url> {
    let bad = |why: &str| Error::invalid_field("invalid_webhook_url", "url", why.to_owned());
    if text.len() > 2000 {
        return Err(bad("the URL is longer than 2000 characters"));
    }
    let url = url::Url::parse(text.trim()).map_err(|_| bad("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the URL must be http:// or https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("the URL must not carry credentials"));
    }
    let ip = match url.host() {
        None => return Err(bad("the URL has no host")),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            (d == "localhost" || d.ends_with(".localhost"))
                .then_some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
    };
    if let Some(ip) = ip {
        if !allow_private && !is_public(ip) {
            return Err(Error::invalid_field(
                "webhook_address_not_allowed",
                "url",
                "private, loopback and link-local addresses are refused (the operator can allow them with SIGIL_WEBHOOK_ALLOW_PRIVATE)",
            ));
        }
    }
    Ok(url)
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10, shared (CGN)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24, protocol
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b)) // NAT64 of anything
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1/x",
            "http://10.1.2.3/",
            "http://[::1]:8080/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:9000/",
            "http://[fd00::1]/",
            "http://[::ffff:192.168.1.1]/",
            "http://100.64.0.1/",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        assert!(check_url("https://hooks.example.com/sigil", false).is_ok());
        assert!(check_url("https://8.8.8.8/", false).is_ok());
    }

    #[test]
    fn only_http_urls_without_credentials() {
        for url in [
            "ftp://example.com/",
            "https://u:p@example.com/",
            "/relative",
            "https://",
        ] {
            assert!(check_url(url, true).is_err(), "{url}");
        }
    }
}
