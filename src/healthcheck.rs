//! `cron-scheduler healthcheck`: asks a running replica whether it is ready, for container
//! health checks (`HEALTHCHECK` in `deploy/Dockerfile`, `healthcheck:` in
//! `docker-compose.yml`).
//!
//! Runtime images carry no shell, curl or wget, so the binary checks itself: one HTTP GET,
//! exit 0 on `200`, else exit 1 with a one-line reason on stderr (Docker keeps it in
//! `docker inspect`'s health log). It reads no configuration but the port and listen
//! address, so a health check never fails because some unrelated variable is malformed,
//! and it writes no log lines.
//!
//! The default target is `/health/ready`, which answers 503 while the database is
//! unreachable: a replica that cannot reach PostgreSQL is reported unhealthy, so the load
//! balancer and `depends_on: condition: service_healthy` route around it. Kubernetes does
//! not use this command; its probes call `/health/live` and `/health/ready` over HTTP.

use std::{net::IpAddr, process::ExitCode, time::Duration};

/// How long one check may take. `/health/ready` gives the database 2 s, so 3 s leaves room
/// for a slow answer without letting a hung replica pass.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// `http://{host}:{SCHEDULER_PORT or 8001}/health/ready`, where `host` is `SCHEDULER_HOST`
/// when that names one address, and loopback when it is unset or a wildcard (`0.0.0.0`, `::`).
pub fn default_url(lookup: impl Fn(&str) -> Option<String>) -> String {
    let get = |key: &str| {
        lookup(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let port = get("SCHEDULER_PORT").unwrap_or_else(|| "8001".into());
    let host = match get("SCHEDULER_HOST").and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::from([127, 0, 0, 1]),
    };
    let host = match host {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    format!("http://{host}:{port}/health/ready")
}

/// One GET of `url`: `Ok` on HTTP 200, else the reason in one line.
pub async fn check(url: &str, timeout: Duration) -> Result<(), String> {
    // No proxy: the target is this container's own process, whatever HTTP_PROXY says.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| one_line(&e))?;
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {} ms", timeout.as_millis())
        } else {
            one_line(&e)
        }
    })?;
    match response.status() {
        reqwest::StatusCode::OK => Ok(()),
        status => Err(format!("HTTP {status}")),
    }
}

/// The subcommand: checks `url` (or [`default_url`] from the environment) and turns the
/// answer into an exit code.
pub fn run(url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| default_url(|k| std::env::var(k).ok()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("unhealthy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(check(&url, TIMEOUT)) {
        Ok(()) => {
            println!("healthy: {url}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("unhealthy: {url}: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line (`a: b: c`), so Docker's health log shows why.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, http::StatusCode, routing::get};
    use std::collections::HashMap;

    async fn serve() -> std::net::SocketAddr {
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/down",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn only_200_is_healthy() {
        let addr = serve().await;
        let t = Duration::from_millis(500);
        assert_eq!(check(&format!("http://{addr}/ok"), t).await, Ok(()));
        let down = check(&format!("http://{addr}/down"), t).await.unwrap_err();
        assert!(down.contains("503"), "{down}");
        let missing = check(&format!("http://{addr}/nope"), t).await.unwrap_err();
        assert!(missing.contains("404"), "{missing}");
        let slow = check(&format!("http://{addr}/slow"), t).await.unwrap_err();
        assert!(slow.contains("within 500 ms"), "{slow}");
    }

    #[tokio::test]
    async fn a_closed_port_is_unhealthy_with_a_reason() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = check(
            &format!("http://{addr}/health/ready"),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(!err.is_empty() && !err.contains('\n'), "{err}");
    }

    #[test]
    fn default_url_follows_port_and_host() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            let map: HashMap<&str, &str> = pairs.iter().copied().collect();
            default_url(move |k| map.get(k).map(|v| (*v).to_owned()))
        };
        assert_eq!(env(&[]), "http://127.0.0.1:8001/health/ready");
        assert_eq!(
            env(&[("SCHEDULER_PORT", "9000"), ("SCHEDULER_HOST", "0.0.0.0")]),
            "http://127.0.0.1:9000/health/ready"
        );
        assert_eq!(
            env(&[("SCHEDULER_HOST", "::"), ("SCHEDULER_PORT", "")]),
            "http://127.0.0.1:8001/health/ready"
        );
        assert_eq!(
            env(&[("SCHEDULER_HOST", "10.1.2.3")]),
            "http://10.1.2.3:8001/health/ready"
        );
        assert_eq!(
            env(&[("SCHEDULER_HOST", "::1")]),
            "http://[::1]:8001/health/ready"
        );
    }
}
