//! The JWT form of a Sigil token: EdDSA only, signed with the tenant's active key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sigil_core::{Error, Result, TenantId, TokenId};
use sigil_tenant::TenantKey;

/// Credentials longer than this are refused before any parsing.
pub const MAX_CREDENTIAL_LEN: usize = 4096;
pub const LEEWAY_SECS: u64 = 5;

pub fn issuer(tenant: TenantId) -> String {
    format!("sigil:tenant:{tenant}")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub tid: TenantId,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub typ: String,
}

pub fn jti(token: TokenId, generation: i32) -> String {
    format!("{token}.{generation}")
}

pub fn parse_jti(jti: &str) -> Option<(TokenId, i32)> {
    let (id, generation) = jti.split_once('.')?;
    Some((id.parse().ok()?, generation.parse().ok()?))
}

pub fn sign(key: &TenantKey, claims: &Claims) -> Result<String> {
    let encoding = key
        .encoding
        .as_ref()
        .ok_or_else(|| Error::internal("key cannot sign"))?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, encoding).map_err(Error::internal)
}

/// The unverified parts needed to pick the key: kid from the header and tenant from the
/// claims. Refuses anything but a plain EdDSA header with a kid.
pub struct Unverified {
    pub kid: String,
    /// Absent in operator tokens.
    pub tenant: Option<TenantId>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Malformed,
}

#[derive(Deserialize)]
struct TenantOnly {
    #[serde(default)]
    tid: Option<TenantId>,
}

pub fn inspect(token: &str) -> std::result::Result<Unverified, ParseError> {
    if token.len() > MAX_CREDENTIAL_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(ParseError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| ParseError::Malformed)?;
    let pinned = header.alg == Algorithm::EdDSA
        && header.jku.is_none()
        && header.x5u.is_none()
        && header.jwk.is_none()
        && header.x5c.is_none()
        && header.crit.is_none();
    let kid = header
        .kid
        .filter(|k| pinned && !k.is_empty() && k.len() <= 64);
    let kid = kid.ok_or(ParseError::Malformed)?;
    let payload = token.split('.').nth(1).ok_or(ParseError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| ParseError::Malformed)?;
    let claims: TenantOnly = serde_json::from_slice(&bytes).map_err(|_| ParseError::Malformed)?;
    Ok(Unverified {
        kid,
        tenant: claims.tid,
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    Signature,
    Expired,
    NotYetValid,
    Malformed,
}

pub fn verify(
    token: &str,
    key: &TenantKey,
    tenant: TenantId,
) -> std::result::Result<Claims, VerifyError> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.validate_exp = true;
    validation.set_issuer(&[issuer(tenant)]);
    validation.set_required_spec_claims(&["iss", "sub", "jti"]);
    use jsonwebtoken::errors::ErrorKind;
    match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
        Ok(data) if data.claims.tid == tenant => Ok(data.claims),
        Ok(_) => Err(VerifyError::Malformed),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature => VerifyError::Signature,
            ErrorKind::ExpiredSignature => VerifyError::Expired,
            ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
            _ => VerifyError::Malformed,
        }),
    }
}
