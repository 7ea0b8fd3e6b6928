//! Secrets have a recognisable shape: the regular expression of the README (and of the
//! shipped gitleaks and trufflehog rules) matches every secret the server mints and
//! none of a set of other JWTs or random base64, and a minted secret stays a standard
//! JWT that a JWT library verifies with the tenant's JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use regex::Regex;
use serde_json::{json, Value};
use sigil_token::jwt::{self, SECRET_PATTERN};

use crate::harness::TestServer;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/secret-scanning");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");

/// The whole-string form of the documented pattern.
fn exact() -> Regex {
    Regex::new(&format!("^(?:{SECRET_PATTERN})$")).unwrap()
}

/// The pattern of the gitleaks rule (`regex = '''...'''`), with its boundaries.
fn gitleaks() -> Regex {
    let text = std::fs::read_to_string(format!("{DEPLOY}/gitleaks.toml")).unwrap();
    let start = text.find("regex = '''").expect("a regex in gitleaks.toml") + 11;
    let len = text[start..].find("'''").expect("closing quotes");
    let pattern = &text[start..start + len];
    assert!(
        pattern.contains(SECRET_PATTERN),
        "gitleaks uses the documented pattern"
    );
    Regex::new(pattern).unwrap()
}

/// The pattern of the trufflehog detector (`token: '...'`).
fn trufflehog() -> Regex {
    let text = std::fs::read_to_string(format!("{DEPLOY}/trufflehog.yaml")).unwrap();
    let start = text.find("token: '").expect("a regex in trufflehog.yaml") + 8;
    let len = text[start..].find('\'').expect("closing quote");
    let pattern = &text[start..start + len];
    assert!(
        pattern.contains(SECRET_PATTERN),
        "trufflehog uses the documented pattern"
    );
    Regex::new(pattern).unwrap()
}

/// What a scanner with the bounded rule finds in `text`.
fn found(rule: &Regex, text: &str) -> Vec<String> {
    rule.captures_iter(text)
        .map(|c| c.get(1).unwrap().as_str().to_owned())
        .collect()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn random_b64(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()));
    }
    out.truncate(len);
    out
}

/// Strings that are not Sigil secrets: other JWTs, Sigil-like JWTs with `typ: JWT`,
/// random base64.
fn others(minted: &str, tenant: &str) -> Vec<(String, String)> {
    let claims = json!({
        "iss": format!("sigil:tenant:{tenant}"), "sub": "someone", "tid": tenant,
        "jti": format!("{}.1", uuid::Uuid::new_v4()), "iat": 1_700_000_000,
        "nbf": 1_700_000_000, "typ": "personal",
    });
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"a shared secret of some length"),
    )
    .unwrap();
    // An RS256 JWT (a 2048-bit signature: 342 characters).
    let rs256 = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})),
        b64(&claims),
        random_b64(342)
    );
    // A Sigil token as minted before the format: `typ: JWT`.
    let [_, payload, signature]: [&str; 3] =
        minted.split('.').collect::<Vec<_>>().try_into().unwrap();
    let typ_jwt = format!(
        "{}.{payload}.{signature}",
        b64(&json!({"typ": "JWT", "alg": "EdDSA", "kid": "0123456789abcdef"}))
    );
    // The same header fields in another order.
    let reordered = format!(
        "{}.{payload}.{signature}",
        b64(&json!({"alg": "EdDSA", "kid": "0123456789abcdef", "typ": "sigil+jwt"}))
    );
    // An EdDSA JWT of another issuer with the Sigil header.
    let foreign = format!(
        "{}.{}.{signature}",
        minted.split('.').next().unwrap(),
        b64(&json!({"iss": "https://issuer.example", "sub": "x", "exp": 1_900_000_000}))
    );
    // The Sigil prefixes, then a signature of the wrong length.
    let short_signature = format!(
        "{}.{payload}.{}",
        minted.split('.').next().unwrap(),
        random_b64(43)
    );
    vec![
        ("HS256 JWT".into(), hs256),
        ("RS256 JWT".into(), rs256),
        ("typ JWT".into(), typ_jwt),
        ("reordered header".into(), reordered),
        ("other issuer".into(), foreign),
        ("short signature".into(), short_signature),
        ("random base64".into(), random_b64(300)),
        (
            "random dotted base64".into(),
            format!("{}.{}.{}", random_b64(78), random_b64(310), random_b64(86)),
        ),
        (
            "prefix without the rest".into(),
            format!("{}{}", jwt::SECRET_PREFIX, random_b64(200)),
        ),
    ]
}

#[tokio::test]
async fn minted_secrets_match_the_documented_pattern_and_nothing_else() {
    let s = TestServer::start().await;
    let t = s.tenant_admin("fmt").await;
    let bot = s.user(&t, "fmt-bot", "member", "api").await;
    let (personal, personal_secret) = s.mint(&t.admin, json!({"methods": ["*"]})).await;
    let (_, application_secret) = s
        .mint(
            &t.admin,
            json!({"kind": "application", "owner_id": bot.id, "methods": ["*"]}),
        )
        .await;
    let regenerated = s
        .post(
            &format!(
                "/api/v1/tokens/{}/regenerate",
                personal["id"].as_str().unwrap()
            ),
            &t.admin,
            json!({}),
        )
        .await;
    assert!(regenerated.status.is_success(), "{}", regenerated.body);
    let regenerated_secret = regenerated.body["secret"].as_str().unwrap().to_owned();
    let minted = [
        ("personal", personal_secret.clone()),
        ("application", application_secret),
        ("session", t.admin.clone()),
        ("regenerated", regenerated_secret.clone()),
    ];

    let exact = exact();
    let rules = [("gitleaks", gitleaks()), ("trufflehog", trufflehog())];
    for (kind, secret) in &minted {
        assert!(secret.starts_with(jwt::SECRET_PREFIX), "{kind}: {secret}");
        assert!(
            exact.is_match(secret),
            "the pattern misses a {kind} secret: {secret}"
        );
        assert!(jwt::has_secret_shape(secret), "{kind}");
        for (name, rule) in &rules {
            for text in [
                secret.clone(),
                format!("SIGIL_TOKEN={secret}\n"),
                format!("Authorization: Bearer {secret}"),
                format!("{{\"token\":\"{secret}\"}}"),
            ] {
                assert_eq!(
                    found(rule, &text),
                    vec![secret.clone()],
                    "{name}, {kind}: {text}"
                );
            }
        }
        // The header is the documented one, `typ` first.
        let header = secret.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["typ"], "sigil+jwt");
        assert_eq!(header["alg"], "EdDSA");
    }

    for (what, other) in others(&personal_secret, &t.id) {
        assert!(
            !exact.is_match(&other),
            "the pattern matches a {what}: {other}"
        );
        assert!(!jwt::has_secret_shape(&other), "{what}");
        for (name, rule) in &rules {
            assert!(
                found(rule, &format!("token: {other}\n")).is_empty(),
                "{name} finds a {what}"
            );
        }
    }
    // A secret glued into a longer base64url run is not a match.
    let glued = format!("{personal_secret}A");
    assert!(found(&rules[0].1, &glued).is_empty());

    // The README documents the same pattern.
    let readme = std::fs::read_to_string(README).unwrap();
    assert!(
        readme.contains(SECRET_PATTERN),
        "the README shows the pattern"
    );

    // A standard JWT: verified with the tenant's JWKS by a JWT library, offline.
    let jwks = s
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/tenants/{}/jwks.json", t.slug),
            None,
            None,
        )
        .await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.body).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[format!("sigil:tenant:{}", t.id)]);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "sub"]);
    for (kind, secret) in &minted {
        let kid = jsonwebtoken::decode_header(secret).unwrap().kid.unwrap();
        let jwk = jwks.find(&kid).expect("the signing key is in the JWKS");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        jsonwebtoken::decode::<Value>(secret, &key, &validation)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }

    // Tokens minted with `typ: JWT` (before the format) keep working.
    let legacy = legacy_token(&s, &t.id, personal["id"].as_str().unwrap()).await;
    let me = s.get("/api/v1/users/me", &legacy).await;
    assert_eq!(me.status, 200, "{}", me.body);
}

/// Re-signs the current secret of token `id` with `typ: JWT`, and stores it as the
/// token's secret: what a token minted before the format looks like.
async fn legacy_token(s: &TestServer, tenant: &str, id: &str) -> String {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let state = s.state();
    let tenant = sigil_core::TenantId(tenant.parse().unwrap());
    let token = sigil_core::TokenId(id.parse().unwrap());
    let key = state.keys.signing_key(tenant).await.unwrap();
    let row = sigil_token::entity::Entity::find_by_id(token)
        .one(&state.db)
        .await
        .unwrap()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = jwt::Claims {
        iss: jwt::issuer(tenant),
        sub: row.owner_id.to_string(),
        tid: tenant,
        jti: jwt::jti(token, row.generation),
        iat: now,
        nbf: now,
        exp: None,
        typ: "personal".into(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    let secret = jsonwebtoken::encode(&header, &claims, key.encoding.as_ref().unwrap()).unwrap();
    assert!(!exact().is_match(&secret));
    let mut changed: sigil_token::entity::ActiveModel = row.into();
    changed.secret_hash = Set(sigil_core::crypto::sha256_hex(secret.as_bytes()));
    changed.update(&state.db).await.unwrap();
    state
        .verifier
        .apply(&sigil_token::Change::Token { tenant, token });
    secret
}
