//! The HTTP side of `ctl`: one request at a time to the REST API, its error body
//! (`{"error": {"code", "message", "field"}}`) turned into a [`Failure`] of the right kind.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{Failure, FailureKind};

/// A client of one API base URL, with an optional bearer token.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A refusal from the API, as its error body says it.
#[derive(Debug, Clone)]
pub struct ApiRefusal {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ApiRefusal {
    pub fn kind(&self) -> FailureKind {
        match self.status {
            StatusCode::NOT_FOUND => FailureKind::NotFound,
            StatusCode::BAD_REQUEST
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::PAYLOAD_TOO_LARGE => FailureKind::Input,
            _ => FailureKind::Request,
        }
    }
}

impl std::fmt::Display for ApiRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )?;
        if let Some(field) = &self.field {
            write!(f, " (field: {field})")?;
        }
        Ok(())
    }
}

/// What a request can end with besides a success.
pub enum RequestError {
    /// The API answered with an error status.
    Refused(ApiRefusal),
    /// No usable answer: unreachable, timed out, not JSON.
    Failed(Failure),
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Refused(r) => Failure::new(r.kind(), r.to_string()),
            RequestError::Failed(f) => f,
        }
    }
}

impl Client {
    pub fn new(base: &str, token: Option<&str>, timeout: Duration) -> Result<Self, Failure> {
        let parsed = url::Url::parse(base)
            .map_err(|e| Failure::input(format!("SCHEDULER_URL {base:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Failure::input(format!(
                "SCHEDULER_URL {base:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("cron-scheduler-ctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::request(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
        })
    }

    /// One request; `Ok` with the status and JSON body (`Null` when empty) on a 2xx.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, Value), RequestError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            let reason = if e.is_timeout() {
                "no answer in time".to_owned()
            } else if e.is_connect() {
                "cannot connect (is SCHEDULER_URL right, and the service up?)".to_owned()
            } else {
                e.to_string()
            };
            RequestError::Failed(Failure::request(format!("{method} {url}: {reason}")))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            RequestError::Failed(Failure::request(format!(
                "{method} {url}: reading the answer: {e}"
            )))
        })?;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) if !status.is_success() => Value::Null,
                Err(e) => {
                    return Err(RequestError::Failed(Failure::request(format!(
                        "{method} {url}: HTTP {} with a body that is not JSON ({e}); \
                         is SCHEDULER_URL the scheduler's API?",
                        status.as_u16()
                    ))));
                }
            }
        };
        if status.is_success() {
            return Ok((status, json));
        }
        let detail = &json["error"];
        let text = |key: &str| detail[key].as_str().map(str::to_owned);
        Err(RequestError::Refused(ApiRefusal {
            status,
            code: text("code").unwrap_or_else(|| "error".into()),
            message: text("message").unwrap_or_else(|| {
                format!(
                    "{method} {path} answered {}",
                    status.canonical_reason().unwrap_or("with an error")
                )
            }),
            field: text("field"),
        }))
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        Ok(self.send(Method::GET, path, query, None, &[]).await?.1)
    }

    /// A GET where 404 is an answer (`None`), not a failure.
    pub async fn get_optional(&self, path: &str) -> Result<Option<Value>, Failure> {
        match self.send(Method::GET, path, &[], None, &[]).await {
            Ok((_, v)) => Ok(Some(v)),
            Err(RequestError::Refused(r)) if r.status == StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        Ok(self.send(Method::POST, path, &[], Some(body), &[]).await?.1)
    }

    pub async fn delete(&self, path: &str) -> Result<(), Failure> {
        self.send(Method::DELETE, path, &[], None, &[]).await?;
        Ok(())
    }
}

/// `/schedules/{id}{suffix}`, for an id that can be put in a path as it is. A schedule id
/// holds only `[A-Za-z0-9._:-]`, so nothing needs escaping; `.` and `..` would be read as
/// path steps, and cannot be addressed.
pub fn schedule_path(id: &str, suffix: &str) -> Result<String, Failure> {
    let pattern = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !pattern {
        return Err(Failure::new(
            FailureKind::NotFound,
            format!(
                "no schedule can have the id {}: ids are 1 to 128 characters from A-Z a-z 0-9 . _ : -",
                crate::text::quoted(id)
            ),
        ));
    }
    if id == "." || id == ".." {
        return Err(Failure::input(format!(
            "the id {id:?} cannot be named in a URL path (it reads as a path step)"
        )));
    }
    Ok(format!("/schedules/{id}{suffix}"))
}

/// Every item of a paged listing (`{"<key>": [...], "next_cursor": ...}`), following
/// `next_cursor` until it is `null` or `limit` items are in hand.
pub async fn list_all(
    client: &Client,
    path: &str,
    key: &str,
    query: &[(&str, String)],
    limit: Option<usize>,
) -> Result<Vec<Value>, Failure> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = limit.map_or(1000, |l| (l - items.len()).clamp(1, 1000));
        let mut q = query.to_vec();
        q.push(("limit", want.to_string()));
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = client.get(path, &q).await?;
        let Some(list) = page[key].as_array() else {
            return Err(Failure::request(format!(
                "GET {path}: the answer has no {key:?} list"
            )));
        };
        items.extend(list.iter().cloned());
        if limit.is_some_and(|l| items.len() >= l) {
            items.truncate(limit.unwrap_or(usize::MAX));
            break;
        }
        match page["next_cursor"].as_str() {
            Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(items)
}
