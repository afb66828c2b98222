//! Who is calling, and may they call this: bearer-token authentication, roles, and the
//! middleware that applies them (together with the rate limit) to every request.
//!
//! **Credentials.** Static tokens come from `SCHEDULER_API_TOKENS` and/or the file named by
//! `SCHEDULER_API_TOKENS_FILE`: entries `admin:<token>`, `user:<user_id>:<token>` and
//! `executor:<token>`, separated by commas or newlines (`#` starts a comment line in a
//! file). Only their SHA-256 digests are kept; a presented token is hashed and compared
//! with every digest in constant time, so neither the token nor its position leaks
//! through timing. Optionally, JWTs signed with a configured HS256 secret or RS256 public
//! key are accepted too (`exp` required; audience and issuer checked when configured): the
//! claim `SCHEDULER_JWT_USER_CLAIM` (default `sub`) is the user id, and a `role` claim of
//! `admin` or `executor` grants that role instead.
//!
//! **Roles.**
//! - `admin`: everything.
//! - `user` (bound to one `user_id`): its own schedules and their runs, manual launches in
//!   its own name, the workflow catalogue (shared: read and store immutable versions),
//!   cron previews. Another user's schedule or run answers **404**, exactly as an unknown
//!   id does, so ids of other users do not leak; lists are filtered to its own. A request
//!   that names another `user_id` in its body or query is **403** (field `user_id`).
//! - `executor`: only `POST /runs/{run_id}/complete` (**403** elsewhere).
//!
//! `/worker/*` is admin-only. Missing or wrong credentials are **401** with
//! `WWW-Authenticate: Bearer`. The route policy lives in [`route_allows`]; handlers scope
//! data with [`Caller`].
//!
//! **Open paths.** `/health*` (never rate limited either), `/docs`, `/docs/*`,
//! `/openapi.json` (the API's shape is not a secret), the console's static files (`/ui`,
//! `/ui/*`: they hold no data; the console asks for a token and sends it with each API
//! call), and `/metrics` unless `SCHEDULER_METRICS_PUBLIC=false`, in which case any valid
//! token may read it.
//!
//! **Switching off.** Only explicitly (`SCHEDULER_AUTH=off`), or implicitly for the
//! embedded default when no credential is configured (with a loud warning at start-up);
//! see [`crate::config::Config::auth_enabled`]. With auth off every caller acts as admin.

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State},
    http::{HeaderMap, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{
    error::{ApiError, ApiResult},
    rate_limit::{RateKey, RateLimiter, client_ip},
};
use crate::config::Config;
pub use crate::credentials::{
    AuthSwitch, JwtSettings, MAX_CREDENTIAL_LEN, MIN_TOKEN_LEN, Role, TokenSet,
};

/// The authenticated caller of a request, put in its extensions by [`guard`]. Handlers
/// take it as an extractor to scope what they read and write.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// Whether a credential was checked (`false` when auth is off).
    pub authenticated: bool,
}

impl Caller {
    /// The caller when auth is switched off: acts as admin.
    fn unauthenticated() -> Self {
        Self {
            role: Role::Admin,
            authenticated: false,
        }
    }

    /// The user whose data alone this caller may see; `None` for admins (everything).
    pub fn user_scope(&self) -> Option<&str> {
        match &self.role {
            Role::User(user) => Some(user),
            Role::Admin | Role::Executor => None,
        }
    }

    /// Whether a resource owned by `owner` exists as far as this caller is concerned.
    pub fn sees(&self, owner: &str) -> bool {
        self.user_scope().is_none_or(|me| me == owner)
    }

    /// Refuses a write in another user's name (403 naming `field`).
    pub fn check_acting_as(&self, user_id: &str, field: &'static str) -> ApiResult<()> {
        if self.sees(user_id) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                message: format!("this token may only act as its own user; {field} names another"),
                field: Some(field),
            })
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Fail closed: a handler that asks who is calling never runs without the guard.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "no Caller in request extensions: the auth guard is not installed"
            ))
        })
    }
}

/// What [`guard`] needs: the credentials, the limiter and the open-path settings.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

struct GuardInner {
    config: Arc<Config>,
    enabled: bool,
    limiter: Option<RateLimiter>,
}

impl Guard {
    /// Builds the guard of one replica. A configuration that cannot decide whether auth is
    /// on fails closed here: auth on, so with no credential every request is 401 (the
    /// binary refuses to start in that case before it gets here).
    pub fn new(config: Arc<Config>) -> Self {
        let enabled = config.auth_enabled().unwrap_or(true);
        let limiter = RateLimiter::new(config.rate_limit_per_sec, config.rate_limit_burst);
        Self {
            inner: Arc::new(GuardInner {
                config,
                enabled,
                limiter,
            }),
        }
    }

    /// Checks the `Authorization` header.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(Caller, RateKey), ApiError> {
        let unauthorized = |message: &str, invalid_token: bool| ApiError::Unauthorized {
            message: message.to_owned(),
            invalid_token,
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "authentication required: send Authorization: Bearer <token>",
                false,
            ));
        };
        let value = value.to_str().unwrap_or_default();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(unauthorized(
                    "the Authorization header must be Bearer <token>",
                    false,
                ));
            }
        };
        if token.is_empty() || token.len() > MAX_CREDENTIAL_LEN {
            return Err(unauthorized("invalid bearer token", true));
        }
        let config = &self.inner.config;
        if let Some((index, role)) = config.api_tokens.find(token) {
            let caller = Caller {
                role: role.clone(),
                authenticated: true,
            };
            return Ok((caller, RateKey::Token(index)));
        }
        if let Some(jwt) = &config.jwt {
            if token.bytes().filter(|b| *b == b'.').count() == 2 {
                match jwt.verify(token) {
                    Ok(role) => {
                        let key = RateKey::Principal(match &role {
                            Role::User(u) => format!("user:{u}"),
                            other => other.name().to_owned(),
                        });
                        let caller = Caller {
                            role,
                            authenticated: true,
                        };
                        return Ok((caller, key));
                    }
                    Err(reason) => tracing::debug!(%reason, "JWT refused"),
                }
            }
        }
        Err(unauthorized("invalid bearer token", true))
    }
}

/// The route policy, by matched route template: whether `role` may call it.
pub fn route_allows(route: Option<&str>, role: &Role) -> bool {
    match route {
        Some("/runs/{run_id}/complete") => matches!(role, Role::Admin | Role::Executor),
        Some(r) if r.starts_with("/worker/") => matches!(role, Role::Admin),
        Some("/metrics") => true,
        _ => matches!(role, Role::Admin | Role::User(_)),
    }
}

fn is_health(route: Option<&str>) -> bool {
    route.is_some_and(|r| r == "/health" || r.starts_with("/health/"))
}

fn is_open(route: Option<&str>, metrics_public: bool) -> bool {
    route.is_some_and(|r| {
        r == "/openapi.json"
            || r == "/docs"
            || r.starts_with("/docs/")
            || (metrics_public && r == "/metrics")
            || super::ui::is_console_route(r)
    })
}

/// The middleware: rate limit, authenticate, apply the route policy, and put the
/// [`Caller`] in the request's extensions. Exemptions go by the matched route template,
/// never by the raw path, so `/health/../schedules` cannot slip through.
pub async fn guard(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let route = route.as_deref();
    if is_health(route) {
        return next.run(req).await;
    }
    let inner = &guard.inner;
    let config = &inner.config;
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = client_ip(peer, req.headers(), &config.trusted_proxies);

    // `Ok(None)`: an open path, served with no caller (a handler that asks for one fails
    // closed rather than acting for nobody).
    let (outcome, key) = if !inner.enabled {
        (Ok(Some(Caller::unauthenticated())), RateKey::Ip(ip))
    } else if is_open(route, config.metrics_public) {
        (Ok(None), RateKey::Ip(ip))
    } else {
        match guard.authenticate(req.headers()) {
            Ok((caller, key)) => (Ok(Some(caller)), key),
            // Failed attempts count against the client's address: guessing is rate limited.
            Err(e) => (Err(e), RateKey::Ip(ip)),
        }
    };
    // The Executor's traffic (a completion report per run) grows with the fleet's fire
    // rate, not with anyone's behaviour: an authenticated Executor is not rate limited.
    let executor = matches!(&outcome, Ok(Some(c)) if c.authenticated && c.role == Role::Executor);
    if let (Some(limiter), false) = (&inner.limiter, executor) {
        if let Err(retry_after) = limiter.check(key) {
            return ApiError::RateLimited { retry_after }.into_response();
        }
    }
    let caller = match outcome {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if let Some(caller) = caller {
        if caller.authenticated && !route_allows(route, &caller.role) {
            return ApiError::Forbidden {
                message: format!(
                    "a {} token may not call {} {}",
                    caller.role.name(),
                    req.method(),
                    route.unwrap_or("this path")
                ),
                field: None,
            }
            .into_response();
        }
        req.extensions_mut().insert(caller);
    }
    next.run(req).await
}

/// Adds the bearer scheme to the OpenAPI document, and to every operation it applies to
/// the 401, 403 and 429 answers the guard may give. `/health*` has no security and no
/// rate limit; `/metrics` no security by default (`SCHEDULER_METRICS_PUBLIC`) but a rate
/// limit.
pub struct SecurityDoc;

impl utoipa::Modify for SecurityDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            ContentBuilder, Ref, ResponseBuilder,
            security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
        };
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in &mut openapi.paths.paths {
            if path == "/health" || path.starts_with("/health/") {
                continue;
            }
            let secured = path != "/metrics";
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses.insert(
                    "429".into(),
                    error("Rate limit used up; retry after `Retry-After` seconds").into(),
                );
                if secured {
                    op.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                    responses.insert(
                        "401".into(),
                        error("Missing or invalid bearer token").into(),
                    );
                    responses.insert(
                        "403".into(),
                        error("The token's role may not call this endpoint").into(),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;

    #[test]
    fn tokens_parse_with_roles_and_never_print() {
        let set = TokenSet::parse(
            "admin:aaaaaaaaaaaaaaaaaaaa, user:alice:bbbbbbbbbbbbbbbbbbbb\n\
             # a comment\n\nexecutor:cccccccccccccccccccc,user:team:x:dddddddddddddddddddd",
        )
        .unwrap();
        assert_eq!(set.len(), 4);
        assert_eq!(set.find("aaaaaaaaaaaaaaaaaaaa").unwrap().1, &Role::Admin);
        assert_eq!(
            set.find("bbbbbbbbbbbbbbbbbbbb").unwrap().1,
            &Role::User("alice".into())
        );
        assert_eq!(set.find("cccccccccccccccccccc").unwrap().1, &Role::Executor);
        assert_eq!(
            set.find("dddddddddddddddddddd").unwrap().1,
            &Role::User("team:x".into())
        );
        assert!(set.find("aaaaaaaaaaaaaaaaaaab").is_none());
        assert!(set.find("").is_none());
        let debug = format!("{set:?}");
        assert!(
            !debug.contains("aaaa") && !debug.contains("alice"),
            "{debug}"
        );
    }

    #[test]
    fn bad_token_lists_are_refused_without_echoing_them() {
        for bad in [
            "root:secretsecretsecret1",
            "admin:short",
            "user:secretsecretsecret2",
            "user::secretsecretsecret3",
            "admin:secretsecretsecret4,executor:secretsecretsecret4",
            "admin",
        ] {
            let err = TokenSet::parse(bad).expect_err(bad);
            assert!(!err.contains("secretsecret"), "{err}");
            assert!(err.starts_with("entry "), "{err}");
        }
    }

    #[test]
    fn rs256_jwts_are_verified_with_the_public_key() {
        let private = include_bytes!("../../tests/fixtures/jwt-rs256-test-private.pem");
        let public = include_bytes!("../../tests/fixtures/jwt-rs256-test-public.pem");
        let settings = JwtSettings::rs256_pem(public).unwrap().issuer("idp");
        let exp = chrono::Utc::now().timestamp() + 600;
        let sign = |claims: serde_json::Value, alg| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(alg),
                &claims,
                &jsonwebtoken::EncodingKey::from_rsa_pem(private).unwrap(),
            )
            .unwrap()
        };
        let token = sign(
            serde_json::json!({"sub": "dora", "iss": "idp", "exp": exp}),
            Algorithm::RS256,
        );
        assert_eq!(settings.verify(&token), Ok(Role::User("dora".into())));
        let other_issuer = sign(
            serde_json::json!({"sub": "dora", "iss": "elsewhere", "exp": exp}),
            Algorithm::RS256,
        );
        assert!(settings.verify(&other_issuer).is_err());
        let no_issuer = sign(
            serde_json::json!({"sub": "dora", "exp": exp}),
            Algorithm::RS256,
        );
        assert!(settings.verify(&no_issuer).is_err());
        // A token signed with another algorithm is refused, whatever its signature.
        let ps256 = sign(
            serde_json::json!({"sub": "dora", "iss": "idp", "exp": exp}),
            Algorithm::PS256,
        );
        assert!(settings.verify(&ps256).is_err());
        // An HS256 token "signed" with the public key as secret (key confusion) too.
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "dora", "iss": "idp", "exp": exp, "role": "admin"}),
            &jsonwebtoken::EncodingKey::from_secret(public),
        )
        .unwrap();
        assert!(settings.verify(&confused).is_err());
        assert!(JwtSettings::rs256_pem(b"not a key").is_err());
        let debug = format!("{settings:?}");
        assert!(!debug.contains("BEGIN"), "{debug}");
    }

    #[test]
    fn route_policy() {
        let user = Role::User("u".into());
        let complete = Some("/runs/{run_id}/complete");
        assert!(route_allows(complete, &Role::Executor));
        assert!(route_allows(complete, &Role::Admin));
        assert!(!route_allows(complete, &user));
        for worker in ["/worker/start", "/worker/stop", "/worker/status"] {
            assert!(route_allows(Some(worker), &Role::Admin));
            assert!(!route_allows(Some(worker), &user));
            assert!(!route_allows(Some(worker), &Role::Executor));
        }
        assert!(route_allows(Some("/schedules/{schedule_id}"), &user));
        assert!(!route_allows(
            Some("/schedules/{schedule_id}"),
            &Role::Executor
        ));
        assert!(!route_allows(None, &Role::Executor));
        assert!(is_health(Some("/health/ready")) && !is_health(Some("/healthz")));
        assert!(is_open(Some("/docs/{*rest}"), false));
        assert!(is_open(Some("/ui"), false) && is_open(Some("/ui/app.js"), false));
        assert!(!is_open(Some("/uix"), false));
        assert!(is_open(Some("/metrics"), true) && !is_open(Some("/metrics"), false));
    }
}
