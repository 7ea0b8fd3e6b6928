//! The login challenge: what `login` answers a person with TOTP once the password is
//! right, and what the second call (`completeLogin`) presents with a code. It is sealed
//! with the master key (tenant, user and expiry inside, authenticated), so every replica
//! can open it and nothing about it is stored; a code still works once, which is what
//! makes a replayed challenge useless.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sigil_core::crypto::MasterKey;
use sigil_core::{Result, TenantId, UserId};
use uuid::Uuid;

/// How long a challenge can be completed.
pub const LIFETIME_SECS: i64 = 300;
const CONTEXT: &str = "sigil:login-challenge:v1";

#[derive(Serialize, Deserialize)]
struct Sealed {
    t: Uuid,
    u: Uuid,
    e: i64,
}

/// An opened challenge.
#[derive(Clone, Copy, Debug)]
pub struct Challenge {
    pub tenant: TenantId,
    pub user: UserId,
    pub expires_at: DateTime<Utc>,
}

/// Why a challenge cannot be completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeError {
    /// Not one Sigil issued (or issued under another master key).
    Invalid,
    Expired,
}

/// A new challenge for `user`; the text and when it expires.
pub fn issue(
    master: &MasterKey,
    tenant: TenantId,
    user: UserId,
) -> Result<(String, DateTime<Utc>)> {
    let expires_at = sigil_core::now() + Duration::seconds(LIFETIME_SECS);
    let plain = serde_json::to_vec(&Sealed {
        t: tenant.0,
        u: user.0,
        e: expires_at.timestamp(),
    })
    .map_err(sigil_core::Error::internal)?;
    Ok((master.seal(&plain, CONTEXT)?, expires_at))
}

pub fn open(master: &MasterKey, text: &str) -> std::result::Result<Challenge, ChallengeError> {
    let plain = master
        .open(text.trim(), CONTEXT)
        .map_err(|_| ChallengeError::Invalid)?;
    let sealed: Sealed = serde_json::from_slice(&plain).map_err(|_| ChallengeError::Invalid)?;
    let expires_at = Utc
        .timestamp_opt(sealed.e, 0)
        .single()
        .ok_or(ChallengeError::Invalid)?;
    if expires_at <= Utc::now() {
        return Err(ChallengeError::Expired);
    }
    Ok(Challenge {
        tenant: TenantId(sealed.t),
        user: UserId(sealed.u),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_opens_only_with_its_key() {
        let key = MasterKey::generate();
        let (tenant, user) = (TenantId::new(), UserId::new());
        let (text, expires) = issue(&key, tenant, user).unwrap();
        let c = open(&key, &text).unwrap();
        assert_eq!((c.tenant, c.user), (tenant, user));
        assert_eq!(c.expires_at.timestamp(), expires.timestamp());
        assert_eq!(
            open(&MasterKey::generate(), &text).unwrap_err(),
            ChallengeError::Invalid
        );
        assert_eq!(open(&key, "garbage").unwrap_err(), ChallengeError::Invalid);
        let mut tampered = text.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(open(&key, &String::from_utf8(tampered).unwrap()).is_err());
    }
}
