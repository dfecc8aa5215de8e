//! The HTTP side (axum): the admin API with /metrics and health on one bind, the public
//! one-click unsubscribe on another. Handlers read and write the store and wake the
//! dispatcher; they never send.

mod admin;
mod dashboard;
mod public;

pub use admin::{admin_router, AUTHED_ROUTES, OPEN_ROUTES};
pub use public::public_router;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::notice::Notices;
use crate::store::Store;
use crate::unsubscribe::UnsubscribeSigner;
use axum::Router;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Shared handles every handler may use.
#[derive(Clone)]
pub struct HttpContext {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub signer: Arc<UnsubscribeSigner>,
    pub metrics: Arc<Metrics>,
    pub notices: Arc<Notices>,
    pub wake: Arc<Notify>,
}

/// Serves `router` on `listener` until `shutdown`; requests in progress are finished.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
