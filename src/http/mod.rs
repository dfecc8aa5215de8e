//! The HTTP side (axum on our own hyper accept loop): the admin API with /metrics and
//! health on one bind, the public one-click unsubscribe on another, each with a connection
//! limit, header and request timeouts and a shutdown deadline. Handlers parse input,
//! call one operation (`crate::ops`) and format its result; they never touch the store
//! and never send.

mod admin;
mod api;
mod archive;
mod auth;
mod console;
mod dashboard;
mod error;
mod public;
mod throttle;

pub use admin::{admin_router, openapi, openapi_json};
pub use error::ApiError;
pub use public::public_router;
pub use throttle::{LoginThrottle, FREE_FAILURES};

use crate::clock::Clock;
use crate::config::Config;
pub use crate::config::HttpLimits;
use crate::ops::Ops;
use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{header, HeaderValue, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Shared handles every handler may use: the operations, the configuration (sign-in,
/// page headings) and the clock (the sign-in back-off).
#[derive(Clone)]
pub struct HttpContext {
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub ops: Ops,
}

/// The Content-Security-Policy of every response: our pages load nothing (their CSS is
/// inline), post their forms only to us, and may not be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every response of `router` (both listeners): no framing
/// (clickjacking), no MIME sniffing, the CSP above, and no Referer (the unsubscribe URL
/// carries a token). A handler's own value, if it sets one, is kept.
pub(crate) fn with_security_headers(router: Router) -> Router {
    let set = |name: header::HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    router
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
}

/// Runs every request of `router` in an `http_request` span (tower-http's `TraceLayer`)
/// with its method and route: what a handler logs says which request it served. The
/// route is the pattern (`/unsubscribe/{token}`), never the URI, which can carry a token.
/// The request's start and end are logged at debug level.
fn with_request_spans(router: Router) -> Router {
    router.layer(TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            tracing::info_span!("http_request", method = %req.method(), route)
        },
    ))
}

/// Serves `router` on `listener` with the default [`HttpLimits`] until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, HttpLimits::default(), shutdown).await
}

/// Serves `router` on `listener` until `shutdown`, within `limits`: at most
/// `max_connections` connections are accepted at once (the rest wait in the kernel's
/// queue, costing the process no file descriptor), a connection that has not sent a whole
/// request head within `header_timeout` is closed, a request not answered within
/// `request_timeout` gets 408. On `shutdown` the listener closes, idle connections close,
/// requests in progress may finish for `shutdown_grace`; connections still open then are
/// dropped, so no client can hold the process up.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let router = with_request_spans(router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    )));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut full_logged = false;
    loop {
        while connections.try_join_next().is_some() {}
        if slots.available_permits() == 0 && !full_logged {
            tracing::warn!(
                listener = %local,
                max_connections = limits.max_connections,
                "HTTP connection limit reached: new connections wait until one closes"
            );
        }
        full_logged = slots.available_permits() == 0;
        let slot = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors (EMFILE) or a connection reset before we
                    // took it: wait a little rather than spin.
                    tracing::warn!(listener = %local, error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                use tower_service::Service;
                router.call(req).await
            }
        });
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if connections.is_empty() {
        return Ok(());
    }
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = %local,
            connections = connections.len(),
            grace_seconds = limits.shutdown_grace.as_secs(),
            "HTTP connections still open after the shutdown deadline: dropped"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// The client's address, as the accept loop recorded it (none for a router served
/// some other way).
pub(crate) fn peer(parts: &axum::http::Extensions) -> Option<SocketAddr> {
    parts.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// Extracts the client's IP address, if the accept loop recorded one.
pub(crate) struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(peer(&parts.extensions).map(|a| a.ip())))
    }
}

#[cfg(test)]
mod request_span_tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn a_request_is_logged_in_a_span_with_its_route_not_its_uri() {
        let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        // This thread's subscriber: the test's runtime runs every task on it.
        let _guard = tracing::subscriber::set_default(subscriber);

        let router = Router::new().route(
            "/unsubscribe/{token}",
            axum::routing::get(|| async {
                tracing::info!("handled");
                "ok"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/unsubscribe/secret-token-77",
            listener.local_addr().unwrap()
        );
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router, stop.clone()));
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        stop.cancel();
        server.await.unwrap().unwrap();

        let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let line = logs
            .lines()
            .find(|l| l.contains("handled"))
            .unwrap_or_else(|| panic!("{logs}"));
        assert!(
            line.contains("http_request{method=GET route=\"/unsubscribe/{token}\"}"),
            "{line}"
        );
        assert!(!logs.contains("secret-token-77"), "{logs}");
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
