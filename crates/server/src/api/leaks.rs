//! Leak reports. A secret reported exposed is revoked at once (refused `token_leaked`
//! from then on) and the audit log of its tenant records where it was found.
//!
//! - `reportSecretScanningMatches`: the endpoint of GitHub's secret scanning partner
//!   program. The body is the program's JSON array of `{token, type, url, source}`,
//!   signed by GitHub: ECDSA P-256 with SHA-256 over the raw body, the signature
//!   (base64 DER) in `Github-Public-Key-Signature`, the key named by
//!   `Github-Public-Key-Identifier`. The keys are configured (`SIGIL_LEAK_REPORT_KEYS`);
//!   nothing is fetched. The answer labels each match by its format only.
//! - `reportLeakedTokens`: the same for self-hosted scanners and for people, with any
//!   tenant user's credential.
//!
//! Neither answer tells whether a secret exists.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use poem::{Request, RequestBody};
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, Enum, ExtractParamOptions};
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;
use sigil_core::Error;
use sigil_token::jwt;
use sigil_token::leaks::{self, Leaks, MAX_SECRETS};
use sigil_token::Principal;

use super::caller::TenantCaller;
use super::ApiTags;
use crate::problem::ApiResult;
use crate::state::AppState;

pub struct LeaksApi(pub Arc<AppState>);

/// Most matches in one partner report.
const MAX_MATCHES: usize = 1000;
/// Longest `url` / `source` kept in the audit log.
const MAX_LOCATION: usize = 2000;

/// A configured partner key: the PEM (SubjectPublicKeyInfo) of an ECDSA P-256 public key.
pub fn parse_report_key(pem: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_public_key_pem(pem.trim()).ok()
}

/// Whether `signature` (base64 of an ASN.1 DER ECDSA signature) signs `body` with the
/// configured key `key_id`.
fn signature_verifies(state: &AppState, key_id: &str, signature: &str, body: &[u8]) -> bool {
    let Some(key) = state
        .config
        .leak_report_keys
        .get(key_id)
        .and_then(|pem| parse_report_key(pem))
    else {
        return false;
    };
    let Ok(der) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(signature) = Signature::from_der(&der) else {
        return false;
    };
    key.verify(body, &signature).is_ok()
}

/// One match of a secret scanning partner report (unknown fields are ignored: the
/// program may add some).
#[derive(Deserialize)]
struct PartnerMatch {
    token: String,
    #[serde(rename = "type", default)]
    token_type: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// The raw body of a partner report: the signature covers these exact bytes, so it is
/// read unparsed and parsed only once the signature verified. Declared in the spec as
/// the program's JSON array.
pub struct PartnerReportBody(Vec<u8>);

fn partner_body_schema() -> MetaSchemaRef {
    let text = |description: &'static str| {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(description),
            ..MetaSchema::new("string")
        }))
    };
    let item = MetaSchema {
        description: Some("A match of the secret scanning partner program."),
        required: vec!["token"],
        properties: vec![
            ("token", text("The string found.")),
            ("type", text("The name of the secret type that matched.")),
            ("url", text("Where it was found.")),
            (
                "source",
                text("What it was found in (`content`, `commit`, `npm`, ...)."),
            ),
        ],
        // The program may add fields: they are accepted and ignored.
        additional_properties: Some(Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)))),
        ..MetaSchema::new("object")
    };
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        items: Some(Box::new(MetaSchemaRef::Inline(Box::new(item)))),
        max_items: Some(MAX_MATCHES),
        ..MetaSchema::new("array")
    }))
}

impl<'a> ApiExtractor<'a> for PartnerReportBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(_registry: &mut Registry) {}

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: partner_body_schema(),
            }],
            required: true,
        })
    }

    async fn from_request(
        _request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self(body.take()?.into_vec().await?))
    }
}

/// How a partner match is labelled: by its format alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum LeakLabel {
    /// It has the shape of a Sigil secret (see the README's "Token format").
    TruePositive,
    /// It does not.
    FalsePositive,
}

/// The answer about one match, in the partner program's format.
#[derive(Object)]
pub struct PartnerVerdict {
    pub token_raw: String,
    pub token_type: String,
    pub label: LeakLabel,
}

#[derive(ApiResponse)]
pub enum PartnerResponse {
    /// One verdict per match, in order.
    #[oai(status = 200)]
    Ok(Json<Vec<PartnerVerdict>>),
}

/// Secrets found exposed.
#[derive(Object)]
pub struct LeakReport {
    /// The secrets (Sigil tokens) found.
    #[oai(validator(min_items = 1, max_items = 100))]
    pub secrets: Vec<String>,
    /// Where they were found (a URL, a ticket, a chat channel).
    #[oai(validator(max_length = 2000))]
    pub url: Option<String>,
    /// What they were found in or by (`content`, `commit`, `chat`, a scanner's name).
    #[oai(validator(max_length = 200))]
    pub source: Option<String>,
}

/// The same answer whatever the secrets were.
#[derive(Object)]
pub struct LeakReportReceipt {
    /// Number of secrets received.
    pub received: u32,
    pub detail: String,
}

#[derive(ApiResponse)]
pub enum LeakReportResponse {
    /// Received: every reported secret that is a live Sigil secret is now revoked.
    #[oai(status = 202)]
    Accepted(Json<LeakReportReceipt>),
}

/// Where a secret was found and who said so, for the audit log.
struct Found<'a> {
    url: Option<&'a str>,
    source: Option<&'a str>,
    /// `secret_scanning` (a partner report) or `api` (reportLeakedTokens).
    via: &'static str,
    /// The secret type the scanner named.
    secret_type: Option<&'a str>,
    reporter: Option<&'a Principal>,
}

fn clip(text: Option<&str>) -> Option<String> {
    text.map(|t| t.chars().take(MAX_LOCATION).collect())
}

impl LeaksApi {
    fn leaks(&self) -> Leaks {
        Leaks::new(
            self.0.db.clone(),
            self.0.keys.clone(),
            self.0.changes.clone(),
        )
    }

    /// Revokes the secret's token if it is real (the use case audits a new revocation in
    /// the token's tenant). A storage failure fails the report (reports may be retried:
    /// they are idempotent).
    async fn report(
        &self,
        req: &Request,
        leaks: &Leaks,
        secret: &str,
        found: &Found<'_>,
    ) -> Result<(), Error> {
        let report = leaks::LeakReport {
            found: serde_json::json!({
                "url": clip(found.url),
                "source": clip(found.source),
                "reported_via": found.via,
            }),
            secret_type: clip(found.secret_type),
            by: self.0.actor(req, found.reporter),
            system_label: match found.via {
                "secret_scanning" => "secret scanning",
                _ => "leak report",
            },
        };
        leaks.report(secret, &report).await?;
        Ok(())
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Tokens")]
impl LeaksApi {
    /// Receive a secret scanning partner report (GitHub's secret scanning partner
    /// program): every match that is a live Sigil secret is revoked. Signed by the
    /// scanner; answered with a label per match, by format only.
    #[oai(
        path = "/leaks/secret-scanning",
        method = "post",
        operation_id = "reportSecretScanningMatches"
    )]
    async fn report_secret_scanning_matches(
        &self,
        req: &Request,
        /// The identifier of the key that signed the report.
        #[oai(name = "Github-Public-Key-Identifier")]
        key_id: Header<Option<String>>,
        /// Base64 of the ASN.1 DER ECDSA (P-256, SHA-256) signature of the raw body.
        #[oai(name = "Github-Public-Key-Signature")]
        signature: Header<Option<String>>,
        body: PartnerReportBody,
    ) -> ApiResult<PartnerResponse> {
        if self.0.config.leak_report_keys.is_empty() {
            return Err(Error::forbidden(
                "leak_reports_not_configured",
                "no secret scanning partner keys are configured (SIGIL_LEAK_REPORT_KEYS)",
            )
            .into());
        }
        let (Some(key_id), Some(signature)) = (key_id.0, signature.0) else {
            return Err(Error::unauthorized(
                "leak_report_unsigned",
                "the report carries no Github-Public-Key-Identifier / Github-Public-Key-Signature",
            )
            .into());
        };
        if !signature_verifies(&self.0, &key_id, &signature, &body.0) {
            return Err(Error::unauthorized(
                "leak_report_signature_invalid",
                "the report's signature does not verify with a configured key",
            )
            .into());
        }
        let matches: Vec<PartnerMatch> = serde_json::from_slice(&body.0).map_err(|e| {
            Error::invalid(
                "invalid_leak_report",
                format!("the report is not a JSON array of matches: {e}"),
            )
        })?;
        if matches.len() > MAX_MATCHES {
            return Err(Error::invalid(
                "invalid_leak_report",
                format!("at most {MAX_MATCHES} matches per report"),
            )
            .into());
        }
        let leaks = self.leaks();
        let mut verdicts = Vec::with_capacity(matches.len());
        for m in matches {
            let shaped = jwt::has_secret_shape(m.token.trim());
            if shaped {
                let found = Found {
                    url: m.url.as_deref(),
                    source: m.source.as_deref(),
                    via: "secret_scanning",
                    secret_type: Some(&m.token_type),
                    reporter: None,
                };
                self.report(req, &leaks, &m.token, &found).await?;
            }
            verdicts.push(PartnerVerdict {
                token_raw: m.token,
                token_type: m.token_type,
                label: if shaped {
                    LeakLabel::TruePositive
                } else {
                    LeakLabel::FalsePositive
                },
            });
        }
        Ok(PartnerResponse::Ok(Json(verdicts)))
    }

    /// Report Sigil secrets found exposed (a self-hosted scanner's finding, or a token
    /// pasted somewhere by mistake): each one that is a live secret is revoked at once
    /// (refused `token_leaked` from then on) and its tenant's audit log records where it
    /// was found. The answer is the same whatever the secrets were.
    #[oai(path = "/leaks", method = "post", operation_id = "reportLeakedTokens")]
    async fn report_leaked_tokens(
        &self,
        req: &Request,
        caller: TenantCaller,
        body: Json<LeakReport>,
    ) -> ApiResult<LeakReportResponse> {
        let p = caller.0;
        let report = body.0;
        let mut secrets: Vec<&str> = report.secrets.iter().map(|s| s.trim()).collect();
        secrets.sort_unstable();
        secrets.dedup();
        if secrets.len() > MAX_SECRETS {
            return Err(Error::invalid(
                "invalid_leak_report",
                format!("at most {MAX_SECRETS} secrets per report"),
            )
            .into());
        }
        let leaks = self.leaks();
        let found = Found {
            url: report.url.as_deref(),
            source: report.source.as_deref(),
            via: "api",
            secret_type: None,
            reporter: Some(&p),
        };
        for secret in &secrets {
            if secret.len() <= jwt::MAX_CREDENTIAL_LEN {
                self.report(req, &leaks, secret, &found).await?;
            }
        }
        Ok(LeakReportResponse::Accepted(Json(LeakReportReceipt {
            received: u32::try_from(report.secrets.len()).unwrap_or(u32::MAX),
            detail: "every reported secret that is a live Sigil token is revoked".into(),
        })))
    }
}
