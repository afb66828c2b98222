//! The HTTP server: serves the router over HTTP/1.1 on a listener it is given, with the
//! connection limits `axum::serve` does not offer.
//!
//! - **Slow clients** (slowloris): a client has `SCHEDULER_HEADER_READ_TIMEOUT_MS` to send
//!   a request's headers, counted from the moment the server starts waiting for them: on a
//!   new connection, and again on a kept-alive one after each response. A client that
//!   trickles its headers, or holds an idle connection open, is disconnected when the time
//!   is up; each connection is its own task, so others are served meanwhile. A slow *body*
//!   is bounded by the request timeout (`SCHEDULER_REQUEST_TIMEOUT_MS`), which covers
//!   reading it.
//! - **HTTP/1.1 only.** Client TLS ends at the load balancer, which speaks HTTP/1.1 to its
//!   backends. Cleartext HTTP/2 (prior knowledge) is not offered: hyper has no header read
//!   timeout for it, and a connection that never finishes its preface would be held forever.
//! - **Client address**: each request carries `ConnectInfo<SocketAddr>` (the TCP peer) for
//!   the rate limiter.
//! - **Shutdown**: on cancellation the server stops accepting, lets in-flight requests
//!   finish, closes idle connections, and returns once every connection is done.

use std::{io, net::SocketAddr, pin::pin, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` is cancelled and every connection is done.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection errors (reset before accept) are the client's; running
                    // out of file descriptors is ours: back off instead of spinning.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) {
                        tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            header_read_timeout,
            shutdown.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Header timeouts, resets and malformed requests are the client's business.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
