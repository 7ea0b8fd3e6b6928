//! TOTP (RFC 6238) as authenticator apps expect it: HMAC-SHA1, six digits, 30-second
//! steps, one step of clock skew either way. The secret is 160 random bits (RFC 4226's
//! recommendation). A code is matched to its time step, so the caller can refuse a step
//! that was already used.

use sigil_core::{crypto, Error, Result};
use totp_rs::{Algorithm, TOTP};

pub const DIGITS: usize = 6;
pub const STEP_SECS: u64 = 30;
const SKEW: u8 = 1;
/// What authenticator apps show above the account.
pub const ISSUER: &str = "Sigil";

/// A new random secret.
pub fn generate_secret() -> Vec<u8> {
    crypto::random_bytes::<20>().to_vec()
}

fn totp(secret: &[u8], account: &str) -> Result<TOTP> {
    // `:` separates issuer and account in the otpauth label.
    let account = account.replace(':', "_");
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        SKEW,
        STEP_SECS,
        secret.to_vec(),
        Some(ISSUER.to_owned()),
        account,
    )
    .map_err(|e| Error::internal(format!("TOTP parameters refused: {e}")))
}

/// The `otpauth://totp/...` URI that authenticator apps read from the QR code.
pub fn otpauth_uri(secret: &[u8], account: &str) -> Result<String> {
    Ok(totp(secret, account)?.get_url())
}

/// The secret in base32, for typing it into an app by hand.
pub fn secret_base32(secret: &[u8]) -> Result<String> {
    Ok(totp(secret, "")?.get_secret_base32())
}

/// The time step of `unix_secs`.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The time step (current, previous or next) whose code is `code`, if any. Every
/// candidate is compared in constant time, without stopping at the first match.
pub fn matching_step(secret: &[u8], code: &str, unix_secs: u64) -> Result<Option<u64>> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = totp(secret, "")?;
    let current = step_of(unix_secs);
    let mut found = None;
    for step in current.saturating_sub(u64::from(SKEW))..=current + u64::from(SKEW) {
        let expected = totp.generate(step * STEP_SECS);
        if crypto::ct_eq(expected.as_bytes(), code.as_bytes()) {
            found = Some(step);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8 digits there; the last six are what a 6-digit
    /// authenticator shows).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, code8) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            let six = &code8[2..];
            assert_eq!(
                matching_step(secret, six, time).unwrap(),
                Some(step_of(time))
            );
        }
    }

    #[test]
    fn neighbouring_steps_match_and_far_ones_do_not() {
        let secret = generate_secret();
        let t = totp(&secret, "x").unwrap();
        let now = 1_700_000_000u64;
        let step = step_of(now);
        let prev = t.generate((step - 1) * STEP_SECS);
        let next = t.generate((step + 1) * STEP_SECS);
        let far = t.generate((step + 2) * STEP_SECS);
        assert_eq!(matching_step(&secret, &prev, now).unwrap(), Some(step - 1));
        assert_eq!(matching_step(&secret, &next, now).unwrap(), Some(step + 1));
        if far != prev && far != next && far != t.generate(now) {
            assert_eq!(matching_step(&secret, &far, now).unwrap(), None);
        }
        assert_eq!(matching_step(&secret, "12345", now).unwrap(), None);
        assert_eq!(matching_step(&secret, "abcdef", now).unwrap(), None);
    }

    #[test]
    fn the_uri_names_issuer_account_and_secret() {
        let secret = generate_secret();
        let uri = otpauth_uri(&secret, "bob (acme)").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Sigil:bob%20%28acme%29?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={}", secret_base32(&secret).unwrap())));
        assert!(uri.contains("issuer=Sigil"));
    }
}
