//! The application: wires configuration, store, channels, scheduler and dispatcher, and
//! offers the operations the CLI (and tests) use. `run_pending` is the "do what is due
//! now" call that lets tests run without sleeping.

use crate::channel::email::{EmailChannel, EmailSetupError};
use crate::channel::wechat::{WechatChannel, WechatSetupError};
use crate::channel::Channel;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::dispatch::{Dispatcher, PassReport};
use crate::domain::record::RecordErrors;
use crate::http::HttpContext;
use crate::metrics::Metrics;
use crate::notice::Notices;
use crate::ops::{Ops, OpsError};
use crate::scheduler::{FireOutcome, Scheduler, SchedulerError};
use crate::store::{self, ImportOutcome, Store, StoreError};
use crate::unsubscribe::UnsubscribeSigner;
use base64::Engine;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::files::{load_image, ImageError};
pub use crate::files::{open_regular_file, read_regular_file, ReadFileError, MAX_IMAGE_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Record(#[from] RecordErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Email(#[from] EmailSetupError),
    #[error(transparent)]
    Wechat(#[from] WechatSetupError),
    #[error("wechat.cover_image: {0}")]
    CoverImage(ImageError),
}

/// A `--roles` list that names no role, or a word that is none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolesError {
    #[error("unknown role `{0}` (expected scheduler, sender, admin or all)")]
    Unknown(String),
    #[error("name at least one role: scheduler, sender, admin")]
    None,
}

/// What one daemon instance runs (`serve --roles`); several instances on one PostgreSQL
/// store may split them, e.g. one small `admin` instance and several `sender`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Fires schedules (and catches up, and finishes fan-outs left unfinished).
    pub scheduler: bool,
    /// Claims due ledger rows and delivers them.
    pub sender: bool,
    /// The admin API, dashboard and metrics, and the public unsubscribe endpoint.
    pub admin: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        scheduler: true,
        sender: true,
        admin: true,
    };

    /// Parses a comma-separated list: `scheduler`, `sender`, `admin` (or `all`).
    pub fn parse(s: &str) -> Result<Self, RolesError> {
        let mut r = Roles {
            scheduler: false,
            sender: false,
            admin: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "scheduler" => r.scheduler = true,
                "sender" => r.sender = true,
                "admin" => r.admin = true,
                "all" => r = Roles::ALL,
                other => return Err(RolesError::Unknown(other.escape_default().to_string())),
            }
        }
        if r == (Roles {
            scheduler: false,
            sender: false,
            admin: false,
        }) {
            return Err(RolesError::None);
        }
        Ok(r)
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = [
            (self.scheduler, "scheduler"),
            (self.sender, "sender"),
            (self.admin, "admin"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        f.write_str(&names.join(","))
    }
}

/// Everything a running `bulletin` needs.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub scheduler: Arc<Scheduler>,
    pub dispatcher: Arc<Dispatcher>,
    pub signer: Arc<UnsubscribeSigner>,
    pub wechat: Option<Arc<WechatChannel>>,
    pub metrics: Arc<Metrics>,
    pub notices: Arc<Notices>,
    /// Wakes the dispatcher when work was queued (firings, notices, retries, resumes).
    pub wake: Arc<Notify>,
}

impl App {
    /// Opens the store (running migrations) and builds the channels.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        let config = Arc::new(config);
        let store = store::open_with_password(
            &config.store_url,
            config.store_password.as_ref().map(|p| p.expose_secret()),
        )
        .await?;
        Self::with_store(config, store, clock).await
    }

    pub async fn with_store(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AppError> {
        let key = match &config.unsubscribe.secret {
            Some(s) => s.expose_secret().as_bytes().to_vec(),
            None => {
                let fresh: [u8; 32] = rand::random();
                let b64 = base64::engine::general_purpose::STANDARD.encode(fresh);
                let stored = store.setting_or_insert("unsubscribe_key", &b64).await?;
                base64::engine::general_purpose::STANDARD
                    .decode(stored)
                    .map_err(|e| {
                        AppError::Setup(format!("stored unsubscribe key is corrupt: {e}"))
                    })?
            }
        };
        let id_tag = {
            let fresh: [u8; 6] = rand::random();
            store
                .setting_or_insert("message_id_tag", &hex::encode(fresh))
                .await?
        };
        let signer = Arc::new(UnsubscribeSigner::new(key, &config.unsubscribe.base_url));
        let email: Arc<dyn Channel> = Arc::new(
            EmailChannel::new(&config.email, signer.clone(), id_tag.clone())?
                .with_verp(config.bounces.verp.clone()),
        );
        let mut channels = vec![email];
        let mut wechat = None;
        // Without its AppSecret the WeChat channel cannot be built; the commands that do
        // not send run without it (`serve` checks `Config::ready_to_send` first).
        if let Some(w) = config
            .wechat
            .as_ref()
            .filter(|w| w.secret.is_some() || w.outbox_dir.is_some())
        {
            let cover = load_image(&w.cover_image).map_err(AppError::CoverImage)?;
            let ch = Arc::new(WechatChannel::new(
                w,
                store.clone(),
                clock.clone(),
                cover,
                id_tag,
            )?);
            wechat = Some(ch.clone());
            channels.push(ch);
        }
        let wake = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::new());
        metrics.known_schedules(config.schedules.iter().map(|s| s.name.as_str()));
        let dispatcher = Arc::new(
            Dispatcher::new(
                store.clone(),
                channels,
                config.delivery.clone(),
                clock.clone(),
                wake.clone(),
            )
            .with_metrics(metrics.clone()),
        );
        let scheduler = Arc::new(
            Scheduler::new(store.clone(), config.clone(), clock.clone(), wake.clone())
                .with_metrics(metrics.clone()),
        );
        let notices = Arc::new(Notices::new(
            store.clone(),
            config.clone(),
            clock.clone(),
            wake.clone(),
        ));
        Ok(Self {
            config,
            store,
            clock,
            scheduler,
            dispatcher,
            signer,
            wechat,
            metrics,
            notices,
            wake,
        })
    }

    /// Reads, validates and stores a record file with its images. Nothing is stored on
    /// error (see [`Ops::import_record_file`]).
    pub async fn import_record_file(
        &self,
        path: &Path,
    ) -> Result<(String, ImportOutcome), AppError> {
        match self
            .ops()
            .import_record_file(&crate::domain::Actor::local("app"), path)
            .await
        {
            Ok(r) => Ok((r.id, r.outcome)),
            Err(OpsError::Record(e)) => Err(AppError::Record(e)),
            Err(OpsError::Store(e)) => Err(AppError::Store(e)),
            Err(e) => Err(AppError::Setup(e.to_string())),
        }
    }

    /// The operations people perform (CLI, admin API, dashboard, demo), on this app's
    /// store, configuration and clock.
    pub fn ops(&self) -> Ops {
        Ops {
            store: self.store.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            scheduler: self.scheduler.clone(),
            notices: self.notices.clone(),
            metrics: self.metrics.clone(),
            signer: self.signer.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Fires a schedule now (operators, tests).
    pub async fn fire_now(&self, schedule: &str) -> Result<FireOutcome, AppError> {
        let now = self.clock.now();
        let at = DateTime::<Utc>::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        Ok(self
            .scheduler
            .fire(schedule, at, crate::store::FiringTrigger::Manual)
            .await?)
    }

    /// Does everything due now: resumes unfinished work, fires schedules due in
    /// `(since, now]`, and sends every delivery that is due. Never sleeps.
    pub async fn run_pending(&self, since: Option<DateTime<Utc>>) -> Result<PassReport, AppError> {
        self.scheduler.resume().await?;
        if let Some(since) = since {
            self.scheduler.tick(since, self.clock.now()).await?;
        }
        Ok(self.dispatcher.drain().await?)
    }

    /// What the HTTP servers need: the operations, the configuration and the clock.
    pub fn http_context(&self) -> HttpContext {
        HttpContext {
            config: self.config.clone(),
            clock: self.clock.clone(),
            ops: self.ops(),
        }
    }

    /// The daemon: binds the admin and public servers from the configuration, then runs
    /// them with the scheduler and dispatcher until `shutdown`.
    pub async fn serve(&self, shutdown: CancellationToken) -> Result<(), AppError> {
        self.serve_roles(Roles::ALL, shutdown).await
    }

    /// The daemon running only `roles`; the HTTP servers are bound only with `admin`.
    pub async fn serve_roles(
        &self,
        roles: Roles,
        shutdown: CancellationToken,
    ) -> Result<(), AppError> {
        let bind = |addr: std::net::SocketAddr, what: &'static str| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| AppError::Setup(format!("cannot listen on {addr} ({what}): {e}")))
        };
        let http = if roles.admin {
            Some((
                bind(self.config.admin.bind, "admin.bind").await?,
                bind(self.config.public.bind, "public.bind").await?,
            ))
        } else {
            None
        };
        self.serve_with(roles, http, shutdown).await
    }

    /// The daemon on listeners already bound (tests bind port 0): resumes and catches up,
    /// then runs the admin and public HTTP servers, the scheduler and the dispatcher until
    /// `shutdown`. The servers stop taking requests; the dispatcher finishes its batch.
    pub async fn serve_on(
        &self,
        admin: tokio::net::TcpListener,
        public: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), AppError> {
        self.serve_with(Roles::ALL, Some((admin, public)), shutdown)
            .await
    }

    /// The daemon's roles on listeners already bound (`http`: admin and public, used
    /// when `roles.admin`).
    pub async fn serve_with(
        &self,
        roles: Roles,
        http: Option<(tokio::net::TcpListener, tokio::net::TcpListener)>,
        shutdown: CancellationToken,
    ) -> Result<(), AppError> {
        let http = if roles.admin { http } else { None };
        if roles.scheduler {
            self.start_scheduler_work().await;
        }
        if http.is_some() && self.config.admin.token.is_none() {
            tracing::warn!(
                env = %self.config.admin.token_env,
                "no admin token configured: the admin API answers 503 except /healthz and /readyz"
            );
        }
        let ctx = self.http_context();
        let addr =
            |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        info!(
            store = %crate::config::redact_url(&self.config.store_url),
            roles = %roles,
            admin = %http.as_ref().map(|h| addr(&h.0)).unwrap_or_default(),
            public = %http.as_ref().map(|h| addr(&h.1)).unwrap_or_default(),
            "bulletin daemon running"
        );
        let (admin_task, public_task) = match http {
            // Each within its limits; on shutdown each drops what is still open after its
            // `shutdown_grace_seconds`, so no client can hold the process up.
            Some((admin, public)) => (
                Some(tokio::spawn(crate::http::serve_with(
                    admin,
                    crate::http::admin_router(ctx.clone()),
                    self.config.admin.limits,
                    shutdown.clone(),
                ))),
                Some(tokio::spawn(crate::http::serve_with(
                    public,
                    crate::http::public_router(ctx),
                    self.config.public.limits,
                    shutdown.clone(),
                ))),
            ),
            None => (None, None),
        };
        let scheduler_task = roles.scheduler.then(|| {
            let sched = self.scheduler.clone();
            let s1 = shutdown.clone();
            tokio::spawn(async move { sched.run(s1).await })
        });
        let mut dispatcher_task = roles.sender.then(|| {
            let disp = self.dispatcher.clone();
            let s2 = shutdown.clone();
            tokio::spawn(async move { disp.run(s2).await })
        });
        let grace = self.config.delivery.shutdown_grace;
        // The dispatcher finishes the batch in flight, within the grace period; past it the
        // sends are abandoned and their rows, still `sending`, are resolved at the next start.
        let dispatcher_done = async {
            let Some(dispatcher_task) = dispatcher_task.as_mut() else {
                return;
            };
            tokio::select! {
                _ = &mut *dispatcher_task => {}
                _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(
                        grace_seconds = grace.as_secs(),
                        "sends still in flight after the shutdown grace period: abandoned; \
                         their rows stay `sending` and are resolved at the next start"
                    );
                    dispatcher_task.abort();
                }
            }
        };
        let joined = |t: Option<tokio::task::JoinHandle<std::io::Result<()>>>| async move {
            match t {
                Some(t) => Some(t.await),
                None => None,
            }
        };
        let (a, p, _, ()) = tokio::join!(
            joined(admin_task),
            joined(public_task),
            async {
                if let Some(t) = scheduler_task {
                    let _ = t.await;
                }
            },
            dispatcher_done
        );
        for (what, r) in [("admin", a), ("public", p)] {
            match r {
                None | Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tracing::error!(server = what, error = %e, "HTTP server failed")
                }
                Some(Err(e)) => {
                    tracing::error!(server = what, error = %e, "HTTP server task failed")
                }
            }
        }
        info!("bulletin daemon stopped");
        Ok(())
    }

    /// Work the scheduler role does at start: finish what a previous run left, catch up.
    async fn start_scheduler_work(&self) {
        // Unfinished work that cannot be finished yet (e.g. a list that does not exist) is
        // reported and left pending; it must not stop the daemon from sending the rest.
        if let Err(e) = self.scheduler.resume().await {
            tracing::error!(error = %e, "could not finish work left by a previous run");
        }
        if let Err(e) = self.scheduler.catch_up().await {
            tracing::error!(error = %e, "catching up missed firings failed");
        }
    }
}
