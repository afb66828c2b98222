//! Request extractors that answer in the API's error format: a body that is not JSON is
//! 400 `malformed_json`; JSON of the wrong shape is 422 naming the field; a body over the
//! limit is 413; a query parameter of the wrong type is 422 naming the parameter.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body, decoded with the path of the first field that does not fit.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(usize::MAX, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit, field: None }
            } else {
                ApiError::BadRequest {
                    code: "malformed_body",
                    message: format!("could not read the request body: {rejection}"),
                }
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The configured body limit, put in request extensions so rejections can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Decodes `bytes` as JSON into `T`: syntax errors are 400, shape errors 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest {
            code: "malformed_json",
            message: "the request body is empty; a JSON object is expected".into(),
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest {
            code: "malformed_json",
            message: format!("the request body is not valid JSON: {e}"),
        })?;
    if !value.is_object() {
        return Err(ApiError::BadRequest {
            code: "malformed_json",
            message: "the request body must be a JSON object".into(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        let field = if let Some(rest) = inner.strip_prefix("unknown field `") {
            rest.split('`').next().unwrap_or("body").to_owned()
        } else if let Some(rest) = inner.strip_prefix("missing field `") {
            rest.split('`').next().unwrap_or("body").to_owned()
        } else if path == "." {
            "body".to_owned()
        } else {
            path
        };
        let message = format!("{field}: {}", strip_position(&inner));
        ApiError::invalid(field, message)
    })
}

/// serde_json appends " at line L column C", meaningless once decoded from a `Value`.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}

/// Query parameters decoded into `T`: every field should be `Option<String>` (or another
/// type that cannot fail), with typed checks done by the handler, so a bad value is a 422
/// that names its parameter.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|e| ApiError::BadRequest {
                code: "malformed_query",
                message: format!("the query string is malformed: {e}"),
            })
    }
}

/// Parses an optional query parameter with `parse`, naming `field` when it fails.
pub fn parse_param<T>(
    raw: Option<&str>,
    field: &'static str,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match raw {
        None => Ok(None),
        Some(v) => parse(v).map(Some).ok_or_else(|| {
            ApiError::invalid(
                field,
                format!(
                    "{field} must be {expected}; got {}",
                    super::error::quoted(v)
                ),
            )
        }),
    }
}

/// A `limit` parameter: 1..=`max`, `default` when absent.
pub fn parse_limit(raw: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    Ok(
        parse_param(raw, "limit", &format!("an integer from 1 to {max}"), |v| {
            v.parse::<u32>().ok().filter(|n| (1..=max).contains(n))
        })?
        .unwrap_or(default),
    )
}

/// Path parameters; a segment that does not decode is a 400 in the API's format.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| ApiError::BadRequest {
                code: "malformed_path",
                message: format!("the request path is malformed: {e}"),
            })
    }
}
