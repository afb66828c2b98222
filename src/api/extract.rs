//! Request extractors that answer in the API's error format: a body that is not JSON is
//! 400 `malformed_json`; JSON of the wrong shape is 422 naming the field; a body over the
//! limit is 413; a query parameter of the wrong type is 422 naming the parameter, and so is
//! one the endpoint does not take ([`refuse_unknown_query`]: a typo such as `?userid=`
//! must not silently widen a listing).

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
        let mut message = format!("{field}: {}", strip_position(&inner));
        if INSTANT_FIELDS.contains(&field.as_str()) {
            message.push_str(
                "; expected an RFC 3339 time with a zone, e.g. \"2030-01-01T00:00:00Z\" or \
                 \"2030-01-01T09:00:00+02:00\"",
            );
        }
        ApiError::invalid(field, message)
    })
}

/// The body fields that hold instants (`DateTime<Utc>`): their parse errors ("premature
/// end of input") say what a valid value looks like.
const INSTANT_FIELDS: [&str; 4] = ["start_at", "end_at", "from", "to"];

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

/// The query parameters each documented operation takes, by (method, route template),
/// read once from the OpenAPI document: the one list of them, so the check and the docs
/// cannot disagree.
static QUERY_PARAMS: std::sync::LazyLock<std::collections::HashMap<(String, String), Vec<String>>> =
    std::sync::LazyLock::new(|| {
        use utoipa::{OpenApi, openapi::path::ParameterIn};
        let doc = super::ApiDoc::openapi();
        let mut map = std::collections::HashMap::new();
        for (path, item) in &doc.paths.paths {
            let operations = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let names = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| p.parameter_in == ParameterIn::Query)
                    .map(|p| p.name.clone())
                    .collect();
                map.insert((method.to_owned(), path.clone()), names);
            }
        }
        map
    });

/// Middleware: a query parameter the matched operation does not take is 422 naming it
/// (with the ones it does take). Routes outside the OpenAPI document (`/docs`) are left
/// alone.
pub async fn refuse_unknown_query(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let (Some(query), Some(route)) = (
        req.uri().query().filter(|q| !q.is_empty()),
        req.extensions().get::<axum::extract::MatchedPath>(),
    ) {
        let key = (req.method().as_str().to_owned(), route.as_str().to_owned());
        if let Some(known) = QUERY_PARAMS.get(&key) {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(query).unwrap_or_default();
            if let Some((name, _)) = pairs.iter().find(|(k, _)| !known.contains(k)) {
                let takes = if known.is_empty() {
                    "it takes no query parameters".to_owned()
                } else {
                    format!("it takes {}", known.join(", "))
                };
                return ApiError::invalid(
                    name.clone(),
                    format!(
                        "unknown query parameter {} for {} {}: {takes}",
                        crate::text::quoted(name),
                        key.0,
                        key.1
                    ),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
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
                format!("{field} must be {expected}; got {}", crate::text::quoted(v)),
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
