//! `/ui`: the web console, three static files embedded in the binary (`src/api/ui/`:
//! `index.html`, `app.js`, `app.css`). Nothing is fetched from elsewhere at run time and
//! there is no front-end build: the files are served as they are in the repository.
//!
//! The console is a client of the REST API like any other: its script calls the API on
//! the same origin, with the bearer token the user pastes (kept in `sessionStorage`). So
//! the files themselves are open (no token needed, see [`super::auth`]), and everything a
//! page shows is what the token may read.
//!
//! **Headers.** Every file carries a strict Content-Security-Policy ([`CSP`]): scripts and
//! styles only from this origin (no inline script, no `eval`), requests only to this
//! origin, no frames, no forms posted anywhere; the script renders all data as text
//! (`textContent`, never `innerHTML`), so a `last_error` holding HTML is shown, not run.
//! Files are revalidated on each load (`Cache-Control: no-cache` with an `ETag`, 304 when
//! unchanged), so a replica upgraded to a new console is seen at the next reload.
//!
//! The routes are not in the OpenAPI document (they are not API), so the API's refusal of
//! unknown query parameters does not apply to them.

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::AppState;

/// The Content-Security-Policy of every console file.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("ui/index.html"),
    content_type: "text/html; charset=utf-8",
};
const SCRIPT: Asset = Asset {
    body: include_str!("ui/app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_str!("ui/app.css"),
    content_type: "text/css; charset=utf-8",
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route("/ui/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { serve(&SCRIPT, &h) }),
        )
        .route(
            "/ui/app.css",
            get(|h: HeaderMap| async move { serve(&STYLE, &h) }),
        )
}

/// Whether a matched route template is one of the console's files (open, see
/// [`super::auth`]).
pub fn is_console_route(route: &str) -> bool {
    route == "/ui" || route.starts_with("/ui/")
}

/// The file's entity tag: a hash of its bytes, so it changes exactly when the file does.
fn etag(asset: &Asset) -> String {
    format!("\"{:016x}\"", crate::text::fnv1a(&[asset.body.as_bytes()]))
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = etag(asset);
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_script() {
        let page = INDEX.body;
        assert!(page.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
        assert!(page.contains(r#"href="/ui/app.css""#));
        // One script tag, with a source: nothing inline (the CSP would block it anyway).
        assert_eq!(page.matches("<script").count(), 1);
        assert!(
            !page.contains("style="),
            "inline styles are blocked by the CSP"
        );
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn the_script_never_parses_data_as_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!SCRIPT.body.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn etags_follow_the_content() {
        assert_ne!(etag(&SCRIPT), etag(&STYLE));
        assert_eq!(etag(&INDEX), etag(&INDEX));
    }
}
