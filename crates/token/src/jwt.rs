//! The JWT form of a Sigil token: EdDSA only, signed with the tenant's active key.
//!
//! Signing and verifying use the tenant key as [`TenantKey`] holds it, decoded once (no
//! PKCS#8 parsing or point decompression per token), on the compact form itself: the
//! signature covers the bytes of `header.payload` as they are in the token, and the
//! payload is decoded once, into a buffer on the stack. The result is byte for byte what
//! `jsonwebtoken` signs, and every token it accepted here is accepted (see [`verify`]).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine};
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Deserializer, Serialize};
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

/// The header of every token Sigil mints, up to its kid (what [`SECRET_PREFIX`] encodes).
const HEADER_START: &str = r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"#;

/// The same for tokens minted before [`TOKEN_TYP`] (and operator tokens): `typ: JWT`.
const LEGACY_HEADER_START: &str = r#"{"typ":"JWT","alg":"EdDSA","kid":"#;

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
    let mut iss = String::with_capacity(49);
    let _ = write_issuer(&mut iss, tenant);
    iss
}

fn write_issuer(w: &mut impl fmt::Write, tenant: TenantId) -> fmt::Result {
    write!(w, "sigil:tenant:{tenant}")
}

/// Whether `iss` is [`issuer`]`(tenant)`, without building the latter.
fn is_issuer(iss: &str, tenant: TenantId) -> bool {
    /// What is left of the text once each written piece is stripped from its start.
    struct Rest<'a>(Option<&'a str>);
    impl fmt::Write for Rest<'_> {
        fn write_str(&mut self, piece: &str) -> fmt::Result {
            self.0 = self.0.and_then(|rest| rest.strip_prefix(piece));
            Ok(())
        }
    }
    let mut rest = Rest(Some(iss));
    let _ = write_issuer(&mut rest, tenant);
    rest.0 == Some("")
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

/// Signs `claims` with the tenant's active key: the header is
/// `{"typ":"sigil+jwt","alg":"EdDSA","kid":"<kid>"}` (in that order), the payload the JSON
/// of `claims`, the signature Ed25519 over `header.payload` (all base64url, no padding).
pub fn sign(key: &TenantKey, claims: &Claims) -> Result<String> {
    let signing = key
        .signing
        .as_ref()
        .ok_or_else(|| Error::internal("key cannot sign"))?;
    // Header and payload JSON side by side in one buffer; serde_json writes the kid as
    // `jsonwebtoken` did (both serialize the header with serde_json).
    let mut json = Vec::with_capacity(320);
    json.extend_from_slice(HEADER_START.as_bytes());
    serde_json::to_writer(&mut json, &key.kid).map_err(Error::internal)?;
    json.push(b'}');
    let header_len = json.len();
    serde_json::to_writer(&mut json, claims).map_err(Error::internal)?;
    let (header, payload) = json.split_at(header_len);
    let b64_len = |n: usize| (n * 4).div_ceil(3);
    let mut token = String::with_capacity(b64_len(header.len()) + b64_len(payload.len()) + 88);
    URL_SAFE_NO_PAD.encode_string(header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = signing.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    Ok(token)
}

/// The three parts of a compact JWS, or `None` unless there are exactly two dots.
fn parts(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Some((header, payload, signature)),
        _ => None,
    }
}

/// Decodes base64url (no padding) into `stack`, or into `heap` when it does not fit;
/// `None` when `input` is not base64url.
fn b64_decode<'b>(input: &str, stack: &'b mut [u8], heap: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    match URL_SAFE_NO_PAD.decode_slice(input, stack) {
        Ok(len) => stack.get(..len),
        Err(DecodeSliceError::OutputSliceTooSmall) => {
            URL_SAFE_NO_PAD.decode_vec(input, heap).ok()?;
            Some(heap)
        }
        Err(DecodeSliceError::DecodeError(_)) => None,
    }
}

/// `found(kid)` for a header exactly as Sigil writes it (either `typ`, a kid of 1 to 64
/// base64url characters, nothing else); `None` for any other header, which is then
/// parsed in full. A header of this form passes every header check.
fn plain_header<R>(header_b64: &str, found: impl FnOnce(&str) -> R) -> Option<R> {
    // 256 bytes hold the longest such header (a 64-character kid) and then some.
    let mut buf = [0u8; 256];
    let len = URL_SAFE_NO_PAD.decode_slice(header_b64, &mut buf).ok()?;
    let json = buf.get(..len)?;
    let rest = json
        .strip_prefix(HEADER_START.as_bytes())
        .or_else(|| json.strip_prefix(LEGACY_HEADER_START.as_bytes()))?;
    let kid = rest.strip_prefix(b"\"")?.strip_suffix(b"\"}")?;
    let plain = (1..=64).contains(&kid.len())
        && kid
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if !plain {
        return None;
    }
    std::str::from_utf8(kid).ok().map(found)
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
    if token.len() > MAX_CREDENTIAL_LEN {
        return Err(ParseError::Malformed);
    }
    let (header, payload, _) = parts(token).ok_or(ParseError::Malformed)?;
    let kid = match plain_header(header, str::to_owned) {
        Some(kid) => kid,
        None => checked_header_kid(token)?,
    };
    let mut stack = [0u8; PAYLOAD_STACK];
    let mut heap = Vec::new();
    let bytes = b64_decode(payload, &mut stack, &mut heap).ok_or(ParseError::Malformed)?;
    let claims: TenantOnly = serde_json::from_slice(bytes).map_err(|_| ParseError::Malformed)?;
    Ok(Unverified {
        kid,
        tenant: claims.tid,
    })
}

/// The kid of any header but Sigil's own form ([`plain_header`]), parsed in full: refused
/// unless it is a plain EdDSA header with a kid.
fn checked_header_kid(token: &str) -> std::result::Result<String, ParseError> {
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
    header
        .kid
        .filter(|k| pinned && !k.is_empty() && k.len() <= 64)
        .ok_or(ParseError::Malformed)
}

/// Payloads up to this size (decoded) are decoded on the stack; every Sigil token's is
/// far smaller (about 250 bytes), and larger ones go to the heap.
const PAYLOAD_STACK: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    Signature,
    Expired,
    NotYetValid,
    Malformed,
}

/// The payload as [`verify`] reads it: [`Claims`], and whether it names an audience.
#[derive(Deserialize)]
struct Payload {
    iss: String,
    sub: String,
    tid: TenantId,
    jti: String,
    iat: i64,
    nbf: i64,
    #[serde(default)]
    exp: Option<i64>,
    typ: String,
    #[serde(default)]
    aud: Audience,
}

/// Whether the payload has an `aud` claim (a string or an array of strings; anything else
/// counts as absent). Sigil names no audience, so a token that does is refused, as
/// `jsonwebtoken` refuses one when no audience is expected.
#[derive(Default)]
struct Audience(bool);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Named {
            One(#[allow(dead_code)] String),
            Many(#[allow(dead_code)] Vec<String>),
        }
        Ok(Self(matches!(
            Option::<Named>::deserialize(deserializer),
            Ok(Some(_))
        )))
    }
}

/// Verifies a token of `tenant` with `key` (chosen by the caller from the kid that
/// [`inspect`] read) and returns its claims.
///
/// Accepts exactly what `jsonwebtoken::decode` accepted here (EdDSA pinned; `iss`, `sub`
/// and `jti` required; `iss` the tenant's issuer; `nbf` checked with [`LEEWAY_SECS`]; no
/// `aud`; `exp` not checked: online verification enforces the stored expiry, which an
/// update after minting may have changed, and `exp` is for offline verifiers) plus the
/// `tid` of `tenant`, and refuses with the same errors, in the same order: a header that
/// does not parse or is not EdDSA and a signature that is not base64url are
/// [`VerifyError::Malformed`], then a signature that does not verify is
/// [`VerifyError::Signature`], then the claims are read.
///
/// The signature is checked as `verify_strict` checks it ([`signature_verifies`]), which
/// also refuses small-order points; `jsonwebtoken` used `verify`, but the two differ only
/// on signatures no holder of the tenant's (honestly generated) private key produces, and
/// that no one else can produce either.
pub fn verify(
    token: &str,
    key: &TenantKey,
    tenant: TenantId,
) -> std::result::Result<Claims, VerifyError> {
    let (header, payload, signature) = parts(token).ok_or(VerifyError::Malformed)?;
    if plain_header(header, |_| ()).is_none() {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Malformed);
        }
    }
    let signature = decode_signature(signature)?;
    // The signed part, `header.payload`, as it is in the token.
    let message = token
        .as_bytes()
        .get(..header.len() + 1 + payload.len())
        .ok_or(VerifyError::Malformed)?;
    if !signature_verifies(&key.verifying, message, &signature) {
        return Err(VerifyError::Signature);
    }
    let mut stack = [0u8; PAYLOAD_STACK];
    let mut heap = Vec::new();
    let json = b64_decode(payload, &mut stack, &mut heap).ok_or(VerifyError::Malformed)?;
    let p: Payload = serde_json::from_slice(json).map_err(|_| VerifyError::Malformed)?;
    // A negative `nbf` is no timestamp (refused as malformed before the other checks).
    let nbf = u64::try_from(p.nbf).map_err(|_| VerifyError::Malformed)?;
    if nbf > unix_now() + LEEWAY_SECS {
        return Err(VerifyError::NotYetValid);
    }
    if !is_issuer(&p.iss, tenant) || p.aud.0 || p.tid != tenant {
        return Err(VerifyError::Malformed);
    }
    Ok(Claims {
        iss: p.iss,
        sub: p.sub,
        tid: p.tid,
        jti: p.jti,
        iat: p.iat,
        nbf: p.nbf,
        exp: p.exp,
        typ: p.typ,
    })
}

/// Every encoding of a point of small order (the eight points of order 1, 2, 4 and 8,
/// and the non-canonical encodings of two of them), sign bit cleared: libsodium's list.
const SMALL_ORDER: [[u8; 32]; 7] = {
    const fn ff(first: u8) -> [u8; 32] {
        let mut e = [0xff; 32];
        e[0] = first;
        e[31] = 0x7f;
        e
    }
    const fn small(first: u8) -> [u8; 32] {
        let mut e = [0; 32];
        e[0] = first;
        e
    }
    [
        // 0 (order 4) and 1 (order 1).
        small(0),
        small(1),
        // The points of order 8.
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
        // p - 1 (order 2), then p and p + 1: 0 and 1 again, not reduced.
        ff(0xec),
        ff(0xed),
        ff(0xee),
    ]
};

/// Whether `encoding` is that of a point of small order (whether it decompresses or not).
fn small_order(encoding: &[u8; 32]) -> bool {
    let mut masked = *encoding;
    masked[31] &= 0x7f;
    SMALL_ORDER.contains(&masked)
}

/// Exactly `VerifyingKey::verify_strict`, at the cost of `verify`. Both compare the `R`
/// of the signature with the one recomputed from `s`, the key and the message, a
/// canonical encoding of a valid point (so an `R` that is not one never matches);
/// `verify_strict` also refuses an `R` or a key of small order, which it finds by
/// decompressing `R` and compressing both multiplied by the cofactor (a square root and
/// two inversions: 5 to 10 µs on top of about 32 µs here, more than `jsonwebtoken` spent
/// decompressing the key). Comparing the encodings with the list of those of every
/// small-order point refuses the same (the tests check the list against ed25519-dalek).
fn signature_verifies(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    !small_order(key.as_bytes())
        && !small_order(signature.r_bytes())
        && key.verify(message, signature).is_ok()
}

/// A signature part: not base64url is malformed; base64url of anything but 64 bytes is a
/// signature that does not verify.
fn decode_signature(b64: &str) -> std::result::Result<Signature, VerifyError> {
    let mut bytes = [0u8; 64];
    match URL_SAFE_NO_PAD.decode_slice(b64, &mut bytes) {
        Ok(64) => Ok(Signature::from_bytes(&bytes)),
        Ok(_) => Err(VerifyError::Signature),
        Err(DecodeSliceError::OutputSliceTooSmall) => match URL_SAFE_NO_PAD.decode(b64) {
            Ok(_) => Err(VerifyError::Signature),
            Err(_) => Err(VerifyError::Malformed),
        },
        Err(DecodeSliceError::DecodeError(_)) => Err(VerifyError::Malformed),
    }
}

/// Unix seconds now (the clock `nbf` is checked against).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::SigningKey;
    use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
    use serde_json::{json, Value};
    use sigil_tenant::KeyState;

    use super::*;

    fn key(seed: u8, tenant: TenantId, kid: &str) -> TenantKey {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let der = signing.to_pkcs8_der().unwrap();
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        TenantKey {
            kid: kid.into(),
            tenant_id: tenant,
            state: KeyState::Active,
            retire_after: None,
            verifying: signing.verifying_key(),
            decoding: DecodingKey::from_ed_components(&x).unwrap(),
            encoding: Some(EncodingKey::from_ed_der(der.as_bytes())),
            signing: Some(signing),
        }
    }

    fn claims(tenant: TenantId) -> Claims {
        let now = unix_now() as i64;
        Claims {
            iss: issuer(tenant),
            sub: "0198c0de-0000-7000-8000-000000000001".into(),
            tid: tenant,
            jti: jti(TokenId::new(), 1),
            iat: now,
            nbf: now,
            exp: Some(now + 3600),
            typ: "personal".into(),
        }
    }

    fn same(a: &Claims, b: &Claims) -> bool {
        serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
    }

    /// How tokens were signed before: through `jsonwebtoken`.
    fn old_sign(key: &TenantKey, claims: &impl Serialize, typ: &str) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, key.encoding.as_ref().unwrap()).unwrap()
    }

    /// How tokens were verified before: through `jsonwebtoken`.
    fn old_verify(
        token: &str,
        key: &TenantKey,
        tenant: TenantId,
    ) -> std::result::Result<Claims, VerifyError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
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

    /// How tokens were inspected before.
    fn old_inspect(token: &str) -> std::result::Result<(String, Option<TenantId>), ParseError> {
        if token.len() > MAX_CREDENTIAL_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(ParseError::Malformed);
        }
        let kid = checked_header_kid(token)?;
        let payload = token.split('.').nth(1).ok_or(ParseError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ParseError::Malformed)?;
        let claims: TenantOnly =
            serde_json::from_slice(&bytes).map_err(|_| ParseError::Malformed)?;
        Ok((kid, claims.tid))
    }

    /// `header` and `payload` (any JSON text) signed with `key`.
    fn forge(key: &TenantKey, header: &str, payload: &str) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = key.signing.as_ref().unwrap().sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn new_inspect(token: &str) -> std::result::Result<(String, Option<TenantId>), ParseError> {
        inspect(token).map(|u| (u.kid, u.tenant))
    }

    /// The new and old verification agree on `token` (claims or error), and so do the
    /// new and old inspection; returns the verdict.
    fn agree(
        token: &str,
        key: &TenantKey,
        tenant: TenantId,
    ) -> std::result::Result<Claims, VerifyError> {
        let new = verify(token, key, tenant);
        let old = old_verify(token, key, tenant);
        match (&new, &old) {
            (Ok(a), Ok(b)) => assert!(same(a, b), "{token}"),
            (a, b) => assert_eq!(a.as_ref().err(), b.as_ref().err(), "{token}"),
        }
        assert_eq!(new_inspect(token), old_inspect(token), "{token}");
        new
    }

    #[test]
    fn the_header_start_is_the_secret_prefix() {
        assert_eq!(HEADER_START.len(), 39);
        assert_eq!(URL_SAFE_NO_PAD.encode(HEADER_START), SECRET_PREFIX);
    }

    #[test]
    fn a_signed_token_verifies_and_has_the_secret_shape() {
        let tenant = TenantId::new();
        let key = key(1, tenant, "0123456789abcdef");
        let c = claims(tenant);
        let token = sign(&key, &c).unwrap();
        assert!(token.starts_with(SECRET_PREFIX));
        assert!(has_secret_shape(&token), "{token}");
        assert!(same(&verify(&token, &key, tenant).unwrap(), &c));
        let unverified = inspect(&token).unwrap();
        assert_eq!(unverified.kid, "0123456789abcdef");
        assert_eq!(unverified.tenant, Some(tenant));
        // No expiry is fine too.
        let c = Claims { exp: None, ..c };
        let token = sign(&key, &c).unwrap();
        assert!(same(&agree(&token, &key, tenant).unwrap(), &c));
    }

    #[test]
    fn tokens_are_byte_for_byte_what_jsonwebtoken_signs_and_both_verify_each_other() {
        let tenant = TenantId::new();
        let key = key(2, tenant, "fedcba9876543210");
        let c = claims(tenant);
        let new = sign(&key, &c).unwrap();
        let old = old_sign(&key, &c, TOKEN_TYP);
        assert_eq!(new, old);
        // Old-style tokens (`typ: JWT`) verify with the new code...
        let legacy = old_sign(&key, &c, "JWT");
        assert!(same(&verify(&legacy, &key, tenant).unwrap(), &c));
        assert_eq!(inspect(&legacy).unwrap().kid, "fedcba9876543210");
        // ... and new tokens with jsonwebtoken, as offline verifiers using the JWKS do.
        assert!(same(&old_verify(&new, &key, tenant).unwrap(), &c));
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer(tenant)]);
        assert!(jsonwebtoken::decode::<Value>(&new, &key.decoding, &validation).is_ok());
        // A kid that needs escaping is written as jsonwebtoken writes it.
        let odd = self::key(2, tenant, "a\"b\\c/é");
        assert_eq!(sign(&odd, &c).unwrap(), old_sign(&odd, &c, TOKEN_TYP));
        assert!(same(
            &agree(&sign(&odd, &c).unwrap(), &odd, tenant).unwrap(),
            &c
        ));
    }

    #[test]
    fn a_key_without_its_private_half_cannot_sign() {
        let tenant = TenantId::new();
        let key = TenantKey {
            signing: None,
            encoding: None,
            ..key(3, tenant, "k")
        };
        assert!(sign(&key, &claims(tenant)).is_err());
    }

    #[test]
    fn tampering_is_a_bad_signature() {
        let tenant = TenantId::new();
        let key = key(4, tenant, "kid4");
        let token = sign(&key, &claims(tenant)).unwrap();
        let (header, payload, signature) = parts(&token).unwrap();
        // Another payload under the same signature.
        let mut other = claims(tenant);
        other.sub = "someone-else".into();
        let other_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        let swapped = format!("{header}.{other_payload}.{signature}");
        assert_eq!(
            agree(&swapped, &key, tenant).err(),
            Some(VerifyError::Signature)
        );
        // A changed signature (still 64 bytes of base64url).
        let first = if signature.starts_with('A') { "B" } else { "A" };
        let changed = format!("{header}.{payload}.{first}{}", &signature[1..]);
        assert_eq!(
            agree(&changed, &key, tenant).err(),
            Some(VerifyError::Signature)
        );
        // Signatures of the wrong length, and none.
        for sig in ["", "AAAA", &signature[..84], &format!("{signature}AAAA")] {
            let t = format!("{header}.{payload}.{sig}");
            assert_eq!(
                agree(&t, &key, tenant).err(),
                Some(VerifyError::Signature),
                "{sig}"
            );
        }
        // A signature that is not base64url is malformed.
        for sig in ["!!!!", &format!("{}=", &signature[..85]), &"*".repeat(200)] {
            let t = format!("{header}.{payload}.{sig}");
            assert_eq!(
                agree(&t, &key, tenant).err(),
                Some(VerifyError::Malformed),
                "{sig}"
            );
        }
        // Another key's signature.
        let stranger = self::key(5, tenant, "kid4");
        assert_eq!(
            agree(&sign(&stranger, &claims(tenant)).unwrap(), &key, tenant).err(),
            Some(VerifyError::Signature)
        );
    }

    #[test]
    fn another_tenant_or_issuer_is_refused() {
        let tenant = TenantId::new();
        let other = TenantId::new();
        let key = key(6, tenant, "kid6");
        let token = sign(&key, &claims(tenant)).unwrap();
        assert_eq!(
            agree(&token, &key, other).err(),
            Some(VerifyError::Malformed)
        );
        // Signed by the tenant's key, but naming another tenant, or another issuer.
        let c = Claims {
            tid: other,
            ..claims(tenant)
        };
        let token = sign(&key, &c).unwrap();
        assert_eq!(
            agree(&token, &key, tenant).err(),
            Some(VerifyError::Malformed)
        );
        for iss in [
            issuer(other),
            format!("{}x", issuer(tenant)),
            issuer(tenant)[..20].to_owned(),
            String::new(),
            "sigil:platform".into(),
            issuer(tenant).to_uppercase(),
        ] {
            let c = Claims {
                iss,
                ..claims(tenant)
            };
            let token = sign(&key, &c).unwrap();
            assert_eq!(
                agree(&token, &key, tenant).err(),
                Some(VerifyError::Malformed)
            );
        }
        assert!(is_issuer(&issuer(tenant), tenant));
    }

    #[test]
    fn nbf_in_the_future_is_not_yet_valid_within_the_leeway_it_is() {
        let tenant = TenantId::new();
        let key = key(7, tenant, "kid7");
        let now = unix_now() as i64;
        for (nbf, verdict) in [
            (now + 60, Err(VerifyError::NotYetValid)),
            (now + LEEWAY_SECS as i64 - 1, Ok(())),
            (now - 60, Ok(())),
            (0, Ok(())),
            (-1, Err(VerifyError::Malformed)),
        ] {
            let c = Claims {
                nbf,
                ..claims(tenant)
            };
            let token = sign(&key, &c).unwrap();
            assert_eq!(
                agree(&token, &key, tenant).map(|_| ()),
                verdict,
                "nbf {nbf}"
            );
        }
        // nbf is checked before the issuer.
        let c = Claims {
            nbf: now + 60,
            iss: "elsewhere".into(),
            ..claims(tenant)
        };
        let token = sign(&key, &c).unwrap();
        assert_eq!(
            agree(&token, &key, tenant).err(),
            Some(VerifyError::NotYetValid)
        );
        // An expiry in the past is not checked here (the stored expiry is).
        let c = Claims {
            exp: Some(now - 3600),
            ..claims(tenant)
        };
        assert!(agree(&sign(&key, &c).unwrap(), &key, tenant).is_ok());
    }

    #[test]
    fn headers_other_than_plain_eddsa_with_a_kid_are_refused() {
        let tenant = TenantId::new();
        let key = key(8, tenant, "kid8");
        let payload = serde_json::to_string(&claims(tenant)).unwrap();
        let refused_by_inspect = [
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid8","jku":"https://evil.example/jwks"}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid8","x5u":"https://evil.example/x"}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid8","x5c":["MII"]}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid8","crit":["exp"]}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid8","jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}}"#,
            r#"{"typ":"at+jwt","alg":"EdDSA","kid":"kid8"}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA"}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":""}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid8kid8kid8kid8kid8kid8kid8kid8kid8kid8kid8kid8kid8kid8kid8kid8k"}"#,
        ];
        for header in refused_by_inspect {
            let token = forge(&key, header, &payload);
            assert_eq!(agree(&token, &key, tenant).err(), None, "{header}");
            assert_eq!(
                inspect(&token).err(),
                Some(ParseError::Malformed),
                "{header}"
            );
        }
        let refused_by_both = [
            r#"{"typ":"sigil+jwt","alg":"none","kid":"kid8"}"#,
            r#"{"typ":"sigil+jwt","alg":"HS256","kid":"kid8"}"#,
            r#"{"typ":"JWT","alg":"RS256","kid":"kid8"}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","alg":"EdDSA","kid":"kid8"}"#,
            r#"{"typ":"sigil+jwt","kid":"kid8"}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid8"} x"#,
            r#"not json"#,
        ];
        for header in refused_by_both {
            let token = forge(&key, header, &payload);
            assert_eq!(
                agree(&token, &key, tenant).err(),
                Some(VerifyError::Malformed),
                "{header}"
            );
            assert_eq!(
                inspect(&token).err(),
                Some(ParseError::Malformed),
                "{header}"
            );
        }
        // alg none with no signature at all, and HS256 keyed with the public key.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"sigil+jwt","alg":"none","kid":"kid8"}"#),
            URL_SAFE_NO_PAD.encode(&payload)
        );
        assert_eq!(
            agree(&none, &key, tenant).err(),
            Some(VerifyError::Malformed)
        );
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("kid8".into());
        let hs = jsonwebtoken::encode(
            &hs,
            &claims(tenant),
            &EncodingKey::from_secret(key.verifying.as_bytes()),
        )
        .unwrap();
        assert_eq!(agree(&hs, &key, tenant).err(), Some(VerifyError::Malformed));
        assert_eq!(inspect(&hs).err(), Some(ParseError::Malformed));
        // Headers of other shapes that pass: no typ, keys in another order, spaces.
        for header in [
            r#"{"alg":"EdDSA","kid":"kid8"}"#,
            r#"{"kid":"kid8","alg":"EdDSA","typ":"sigil+jwt"}"#,
            r#"{ "typ": "JWT", "alg": "EdDSA", "kid": "kid8" }"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid8","cty":"x","extra":[1]}"#,
            r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"k\u0069d8"}"#,
        ] {
            let token = forge(&key, header, &payload);
            assert!(agree(&token, &key, tenant).is_ok(), "{header}");
            assert_eq!(inspect(&token).unwrap().kid, "kid8", "{header}");
        }
    }

    #[test]
    fn payloads_are_read_as_jsonwebtoken_read_them() {
        let tenant = TenantId::new();
        let key = key(9, tenant, "kid9");
        let header = r#"{"typ":"sigil+jwt","alg":"EdDSA","kid":"kid9"}"#;
        let base = serde_json::to_value(claims(tenant)).unwrap();
        let with = |field: &str, value: Value| {
            let mut v = base.clone();
            v[field] = value;
            v.to_string()
        };
        let without = |field: &str| {
            let mut v = base.clone();
            v.as_object_mut().unwrap().remove(field);
            v.to_string()
        };
        let accepted = [
            with("aud", Value::Null),
            with("aud", json!(5)),
            with("aud", json!(["a", 1])),
            with("exp", Value::Null),
            with("extra", json!({"x": [1, 2]})),
            without("exp"),
        ];
        for payload in &accepted {
            assert!(
                agree(&forge(&key, header, payload), &key, tenant).is_ok(),
                "{payload}"
            );
        }
        let mut refused = vec![
            with("aud", json!("somewhere")),
            with("aud", json!(["a", "b"])),
            with("aud", json!([])),
            with("nbf", json!(1.5)),
            with("nbf", json!("0")),
            with("exp", json!(1.5)),
            with("sub", json!(5)),
            with("jti", Value::Null),
            with("tid", json!("not-a-uuid")),
            with("iat", json!(u64::MAX)),
            without("sub"),
            without("jti"),
            without("iss"),
            without("nbf"),
            without("tid"),
            without("typ"),
            "[]".into(),
            "{".into(),
            format!("{} x", base),
        ];
        let text = base.to_string();
        refused.push(format!(r#"{{"sub":"twice",{}"#, &text[1..]));
        refused.push(format!(r#"{{"aud":"x","aud":"y",{}"#, &text[1..]));
        for payload in &refused {
            let verdict = agree(&forge(&key, header, payload), &key, tenant);
            assert_eq!(verdict.err(), Some(VerifyError::Malformed), "{payload}");
        }
        // A payload that is not base64url, under a valid signature of it.
        let message = format!("{}.e30*", URL_SAFE_NO_PAD.encode(header));
        let signature = key.signing.as_ref().unwrap().sign(message.as_bytes());
        let token = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        assert_eq!(
            agree(&token, &key, tenant).err(),
            Some(VerifyError::Malformed)
        );
        // A large payload (decoded on the heap) still verifies.
        let big = with("extra", json!("x".repeat(3000)));
        assert!(agree(&forge(&key, header, &big), &key, tenant).is_ok());
    }

    #[test]
    fn every_one_character_change_gets_the_verdict_it_got_before() {
        let tenant = TenantId::new();
        let key = key(11, tenant, "kid11");
        let token = sign(&key, &claims(tenant)).unwrap();
        for (i, original) in token.char_indices() {
            for replacement in ['A', 'x', '_', '.', '=', ' '] {
                if replacement == original {
                    continue;
                }
                let mut changed = token.clone();
                changed.replace_range(i..i + 1, replacement.encode_utf8(&mut [0; 4]));
                assert!(agree(&changed, &key, tenant).is_err(), "{changed}");
            }
            let mut shorter = token.clone();
            shorter.remove(i);
            let _ = agree(&shorter, &key, tenant);
        }
    }

    /// The eight points of small order: the multiples of a point of order 8.
    fn torsion() -> Vec<[u8; 32]> {
        let order_8 = VerifyingKey::from_bytes(&SMALL_ORDER[3])
            .unwrap()
            .to_edwards();
        let mut point = order_8.mul_by_cofactor();
        let mut all = Vec::new();
        for _ in 0..8 {
            all.push(point.compress().to_bytes());
            point += order_8;
        }
        assert_eq!(all[0], SMALL_ORDER[1], "starts at the identity");
        assert_eq!(point.compress().to_bytes(), all[0], "eight steps come back");
        all
    }

    #[test]
    fn the_small_order_list_is_every_encoding_of_a_small_order_point() {
        let torsion = torsion();
        let mut distinct = torsion.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 8);
        for point in &torsion {
            assert!(small_order(point), "{point:02x?}");
            // Only a y below 19 has a second encoding below 2^255 (y + p).
            let y_small = point[1..31].iter().all(|b| *b == 0) && point[31] & 0x7f == 0;
            if y_small && point[0] < 19 {
                let mut unreduced = [0xff; 32];
                unreduced[0] = 0xed + point[0];
                unreduced[31] = 0x7f | (point[31] & 0x80);
                assert!(small_order(&unreduced), "{unreduced:02x?}");
            }
        }
        // And nothing else: each listed encoding, either sign, is refused by the strict
        // check as a key (small order) or is not a point.
        for listed in SMALL_ORDER {
            for sign in [0, 0x80] {
                let mut e = listed;
                e[31] |= sign;
                if let Ok(key) = VerifyingKey::from_bytes(&e) {
                    assert!(key.is_weak(), "{e:02x?}");
                }
            }
        }
        let honest = SigningKey::from_bytes(&[12; 32]).verifying_key();
        assert!(!small_order(honest.as_bytes()) && !honest.is_weak());
    }

    #[test]
    fn signatures_are_checked_as_verify_strict_checks_them() {
        let signing = SigningKey::from_bytes(&[13; 32]);
        let key = signing.verifying_key();
        let message = b"header.payload";
        let good = signing.sign(message);
        let strict = |key: &VerifyingKey, m: &[u8], s: &Signature| key.verify_strict(m, s).is_ok();
        assert!(signature_verifies(&key, message, &good) && strict(&key, message, &good));
        assert!(!signature_verifies(&key, b"header.payloaD", &good));
        // Small-order R, whatever s, any encoding.
        for listed in SMALL_ORDER {
            for sign in [0, 0x80] {
                let mut bytes = good.to_bytes();
                bytes[..32].copy_from_slice(&listed);
                bytes[31] |= sign;
                let forged = Signature::from_bytes(&bytes);
                assert!(!signature_verifies(&key, message, &forged));
                assert!(!strict(&key, message, &forged));
            }
        }
        // A key of small order: `verify` accepts R = identity, s = 0 for any message (no
        // private key needed); the strict check does not, nor does this one.
        let mut trivial = [0u8; 64];
        trivial[0] = 1;
        let trivial = Signature::from_bytes(&trivial);
        for point in torsion() {
            let Ok(weak) = VerifyingKey::from_bytes(&point) else {
                continue;
            };
            assert!(!signature_verifies(&weak, message, &trivial));
            assert!(!strict(&weak, message, &trivial));
        }
        let identity = VerifyingKey::from_bytes(&SMALL_ORDER[1]).unwrap();
        assert!(
            identity.verify(message, &trivial).is_ok(),
            "the case exists"
        );
    }

    #[test]
    fn the_framing_is_checked_as_before() {
        let tenant = TenantId::new();
        let key = key(10, tenant, "kid10");
        let token = sign(&key, &claims(tenant)).unwrap();
        for framed in [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            token.replacen('.', "", 1),
            format!("{token}."),
            format!(".{token}"),
            token.replacen('.', "..", 1),
        ] {
            assert_eq!(
                agree(&framed, &key, tenant).err(),
                Some(VerifyError::Malformed),
                "{framed}"
            );
        }
        // Verification itself has no length limit (inspection, which comes first, has):
        // an overlong signature is only a wrong one.
        let long = format!("{token}{}", "A".repeat(MAX_CREDENTIAL_LEN));
        assert_eq!(
            agree(&long, &key, tenant).err(),
            Some(VerifyError::Signature)
        );
        assert_eq!(inspect(&long).err(), Some(ParseError::Malformed));
    }
}
