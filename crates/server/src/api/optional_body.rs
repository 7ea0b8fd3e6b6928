//! Optional request bodies: declared in the spec with `required: false`, read as `None`
//! when the request carries no body at all, and parsed (strictly) otherwise.
//! poem-openapi has no optional body extractor of its own. [`OptionalJson`] takes JSON;
//! [`OptionalRequest`] wraps an `ApiRequest` enum (several content types).

use poem::{Request, RequestBody, Result};
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

/// Whether the request carries no body at all: `Content-Length: 0`, or neither a length
/// nor chunked transfer encoding.
fn has_no_body(request: &Request) -> bool {
    let headers = request.headers();
    let declared_empty = headers
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    let chunked = headers.contains_key(poem::http::header::TRANSFER_ENCODING);
    let has_length = headers.contains_key(poem::http::header::CONTENT_LENGTH);
    declared_empty || (!has_length && !chunked)
}

/// `Some(body)` when the request has a JSON body, `None` when it has none.
pub struct OptionalJson<T>(pub Option<T>);

impl<'a, T: ParseFromJSON + ToJSON> ApiExtractor<'a> for OptionalJson<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Json<T> as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Json<T> as Payload>::CONTENT_TYPE,
                schema: <Json<T> as Payload>::schema_ref(),
            }],
            required: false,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> Result<Self> {
        if has_no_body(request) {
            return Ok(Self(None));
        }
        match request.content_type() {
            Some(content_type) if <Json<T> as Payload>::check_content_type(content_type) => {
                let Json(value) = <Json<T> as ParsePayload>::from_request(request, body).await?;
                Ok(Self(Some(value)))
            }
            Some(content_type) => Err(poem_openapi::error::ContentTypeError::NotSupported {
                content_type: content_type.to_string(),
            }
            .into()),
            None => Err(poem_openapi::error::ContentTypeError::ExpectContentType.into()),
        }
    }
}

/// An optional body of an `ApiRequest` type `T` (e.g. JSON or form): `Some` when the
/// request has a body (parsed by `T`, which checks the content type), `None` when it has
/// none. The spec lists `T`'s media types with `required: false`. Each `T` gets its
/// extractor from [`optional_request!`] (a generic impl trips a compiler limitation with
/// the handlers' futures, rust-lang/rust#100013).
pub struct OptionalRequest<T>(pub Option<T>);

/// Implements the extractor of [`OptionalRequest`] for `ApiRequest` types.
macro_rules! optional_request {
    ($($ty:ty),* $(,)?) => {$(
        impl<'a> ApiExtractor<'a> for OptionalRequest<$ty> {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                <$ty as ApiExtractor<'a>>::register(registry);
            }

            fn request_meta() -> Option<MetaRequest> {
                <$ty as ApiExtractor<'a>>::request_meta().map(|meta| MetaRequest {
                    required: false,
                    ..meta
                })
            }

            async fn from_request(
                request: &'a Request,
                body: &mut RequestBody,
                param_opts: ExtractParamOptions<Self::ParamType>,
            ) -> Result<Self> {
                if has_no_body(request) {
                    return Ok(Self(None));
                }
                let parsed = <$ty as ApiExtractor<'a>>::from_request(request, body, param_opts).await?;
                Ok(Self(Some(parsed)))
            }
        }
    )*};
}

optional_request!(super::auth::LoginRequest);
