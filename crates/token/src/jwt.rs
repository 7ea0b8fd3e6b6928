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

/// The JWT `typ` of every token Sigil mints (explicit typing, RFC 8725 §3.11). Placed
/// first in the header, it gives every secret the fixed prefix [`SECRET_PREFIX`]. Tokens
/// minted earlier carry `typ: JWT` and keep verifying.
pub const TOKEN_TYP: &str = "sigil+jwt";

/// base64url of `{"typ":"sigil+jwt","alg":"EdDSA","kid":` (39 bytes, so the encoding of
/// this part never depends on what follows): every secret starts with it.
pub const SECRET_PREFIX: &str = "eyJ0eXAiOiJzaWdpbCtqd3QiLCJhbGciOiJFZERTQSIsImtpZCI6";

/// base64url of `{"iss":"sigil:tenant:` (21 bytes): every secret's payload starts with it.
pub const PAYLOAD_PREFIX: &str = "eyJpc3MiOiJzaWdpbDp0ZW5hbnQ6";

/// The regular expression that matches a Sigil secret (and, in practice, nothing else):
/// the fixed header prefix, the kid, the payload with its fixed issuer prefix, and an
/// Ed25519 signature (64 bytes: 86 base64url characters, the last one of `A`, `Q`, `g`,
/// `w`). Documented in the README; scanners bound it with non-base64url characters.
pub const SECRET_PATTERN: &str = concat!(
    "eyJ0eXAiOiJzaWdpbCtqd3QiLCJhbGciOiJFZERTQSIsImtpZCI6",
    "[A-Za-z0-9_-]{4,100}",
    "\\.eyJpc3MiOiJzaWdpbDp0ZW5hbnQ6",
    "[A-Za-z0-9_-]{20,1000}",
    "\\.[A-Za-z0-9_-]{85}[AQgw]"
);

/// Whether `text` has the shape of a Sigil secret (exactly what [`SECRET_PATTERN`]
/// matches when it spans the whole text). Says nothing about whether the secret is real.
pub fn has_secret_shape(text: &str) -> bool {
    fn b64url(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
    let mut parts = text.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let ranged = |part: &str, prefix: &str, min: usize, max: usize| {
        part.strip_prefix(prefix)
            .is_some_and(|rest| (min..=max).contains(&rest.len()) && b64url(rest))
    };
    ranged(header, SECRET_PREFIX, 4, 100)
        && ranged(payload, PAYLOAD_PREFIX, 20, 1000)
        && signature.len() == 86
        && b64url(signature)
        && signature.ends_with(['A', 'Q', 'g', 'w'])
}

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
    header.typ = Some(TOKEN_TYP.into());
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
    // `sigil+jwt` since secrets got their recognisable shape; `JWT` before (and for the
    // operator token).
    let typed = matches!(header.typ.as_deref(), None | Some("JWT") | Some(TOKEN_TYP));
    let pinned = typed
        && header.alg == Algorithm::EdDSA
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
    // Online verification enforces the stored expiry (the stored token is the truth: an
    // expiry changed after minting applies at once); `exp` is for offline verifiers.
    validation.validate_exp = false;
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
