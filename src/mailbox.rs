//! The IMAP bounce mailbox (`[bounces.imap]`): a loop under the daemon's cancellation
//! token (the scheduler role) that polls one folder every `interval`. Each new message is
//! fetched with `BODY.PEEK[]` (its `\Seen` flag never changes) and handed to
//! `Ops::ingest_mailbox_message`, the same classification and store path as
//! `bulletin bounces ingest`. One read as a bounce, complaint, delay or auto-reply is
//! recorded and then moved to `processed_folder` (created if missing) with MOVE, or
//! with COPY, `\Deleted` and UID EXPUNGE of that UID alone (UIDPLUS) where MOVE is
//! missing; nothing is ever deleted otherwise. Any other message (a person's) is left as
//! it was.
//!
//! What has been read is remembered in memory: the folder's UIDVALIDITY and the highest
//! UID below which every message was handled. So a person's mail is read once per
//! process, not at every interval; after a restart it is read once more (with PEEK,
//! changing nothing), which costs one fetch and spares the store a table of mailbox
//! positions per instance. A message that could not be recorded (store outage) or
//! moved stops the mark there: it and everything after it are read again next poll, and
//! the store's dedupe makes a second recording of a moved-too-late message a no-op.
//! The password goes to the server's LOGIN and nowhere else: not to logs, errors or Debug.

use crate::config::{ImapConfig, ImapTls};
use crate::ops::Ops;
use futures::TryStreamExt;
use secrecy::ExposeSecret;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The longest one poll may take (connect, log in, read, record, move) before it is
/// abandoned; what it did not finish is done by the next.
const POLL_TIMEOUT: Duration = Duration::from_secs(300);
/// Messages fetched per FETCH command.
const FETCH_BATCH: usize = 50;
/// The largest message read; a larger one is left in the folder with a warning.
const MAX_MESSAGE: u32 = 64 << 20;

/// Why a poll failed. Names the server and the step; never the password.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("[bounces.imap] has no password (set its password_env or password_file)")]
    NoPassword,
    #[error("cannot connect to the IMAP server {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("TLS with the IMAP server {host} failed: {message}")]
    Tls { host: String, message: String },
    #[error("the IMAP server {host} refused the login of `{user}`: {source}")]
    Login {
        host: String,
        user: String,
        source: async_imap::error::Error,
    },
    #[error("IMAP {step} on {host} failed: {source}")]
    Imap {
        host: String,
        step: &'static str,
        source: async_imap::error::Error,
    },
    #[error("the IMAP poll of {host} took longer than {} s: abandoned", POLL_TIMEOUT.as_secs())]
    Timeout { host: String },
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// New messages read (with PEEK).
    pub fetched: usize,
    /// Recorded as bounces, complaints, delays or auto-replies (new ones).
    pub recorded: usize,
    /// Recognised as already recorded (by the pipe, or by a poll whose move failed).
    pub duplicates: usize,
    /// Moved to the processed folder.
    pub moved: usize,
    /// Left in the folder as not a bounce (a person's mail).
    pub left: usize,
    /// Not recorded (the store did not answer): left for the next poll.
    pub not_recorded: usize,
}

/// Where the poller is in the folder.
#[derive(Debug, Default, Clone, Copy)]
struct Mark {
    uid_validity: Option<u32>,
    /// Every message with a UID up to this one was handled.
    last_uid: u32,
}

/// The poller of one bounce mailbox.
pub struct MailboxPoller {
    cfg: ImapConfig,
    ops: Ops,
    mark: Mutex<Mark>,
}

impl Debug for MailboxPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxPoller")
            .field("host", &self.cfg.host)
            .field("port", &self.cfg.port)
            .field("user", &self.cfg.user)
            .field("folder", &self.cfg.folder)
            .finish_non_exhaustive()
    }
}

impl MailboxPoller {
    pub fn new(cfg: ImapConfig, ops: Ops) -> Self {
        Self {
            cfg,
            ops,
            mark: Mutex::new(Mark::default()),
        }
    }

    /// Polls every `interval` until `shutdown`; a failed poll is logged and tried again
    /// at the next interval.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        info!(
            host = %self.cfg.host,
            folder = %self.cfg.folder,
            interval_seconds = self.cfg.interval.as_secs(),
            "bounce mailbox poller running"
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.poll_now() => match r {
                    Ok(r) if r.fetched > 0 => info!(?r, "bounce mailbox polled"),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "bounce mailbox poll failed; trying again next interval"),
                },
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.cfg.interval) => {}
            }
        }
        info!("bounce mailbox poller stopped");
    }

    /// One poll now (the daemon's loop, and tests): reads what is new, records and moves
    /// the bounces, leaves the rest. Never sleeps.
    pub async fn poll_now(&self) -> Result<PollReport, PollError> {
        // One poll at a time: the mark is held for the whole poll.
        let mut mark = self.mark.lock().await;
        tokio::time::timeout(POLL_TIMEOUT, self.poll(&mut mark))
            .await
            .map_err(|_| PollError::Timeout {
                host: self.cfg.host.clone(),
            })?
    }

    async fn poll(&self, mark: &mut Mark) -> Result<PollReport, PollError> {
        let cfg = &self.cfg;
        let tcp = tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port))
            .await
            .map_err(|source| PollError::Connect {
                host: cfg.host.clone(),
                port: cfg.port,
                source,
            })?;
        match cfg.tls {
            ImapTls::None => {
                let mut client = async_imap::Client::new(tcp);
                self.greeting(&mut client).await?;
                self.session(client, mark).await
            }
            ImapTls::Implicit => {
                let tls = self.tls(tcp).await?;
                let mut client = async_imap::Client::new(tls);
                self.greeting(&mut client).await?;
                self.session(client, mark).await
            }
            ImapTls::StartTls => {
                let mut client = async_imap::Client::new(tcp);
                self.greeting(&mut client).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| self.imap("STARTTLS", e))?;
                let tls = self.tls(client.into_inner()).await?;
                // No greeting after STARTTLS.
                self.session(async_imap::Client::new(tls), mark).await
            }
        }
    }

    fn imap(&self, step: &'static str, source: async_imap::error::Error) -> PollError {
        PollError::Imap {
            host: self.cfg.host.clone(),
            step,
            source,
        }
    }

    async fn greeting<S>(&self, client: &mut async_imap::Client<S>) -> Result<(), PollError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
    {
        match client.read_response().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(self.imap("greeting", async_imap::error::Error::ConnectionLost)),
            Err(e) => Err(self.imap("greeting", e.into())),
        }
    }

    async fn tls(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, PollError> {
        let host = &self.cfg.host;
        let fail = |message: String| PollError::Tls {
            host: host.clone(),
            message,
        };
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| fail(format!("`{host}` is not a valid server name")))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server, tcp)
            .await
            .map_err(|e| fail(e.to_string()))
    }

    async fn session<S>(
        &self,
        client: async_imap::Client<S>,
        mark: &mut Mark,
    ) -> Result<PollReport, PollError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
    {
        let cfg = &self.cfg;
        let password = cfg.password.as_ref().ok_or(PollError::NoPassword)?;
        let mut session = client
            .login(&cfg.user, password.expose_secret())
            .await
            .map_err(|(source, _)| PollError::Login {
                host: cfg.host.clone(),
                user: cfg.user.clone(),
                source,
            })?;
        let result = self.work(&mut session, mark).await;
        // Logged out either way; a failed logout changes nothing that was done.
        let _ = session.logout().await;
        result
    }

    async fn work<S>(
        &self,
        session: &mut async_imap::Session<S>,
        mark: &mut Mark,
    ) -> Result<PollReport, PollError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
    {
        let cfg = &self.cfg;
        let caps = session
            .capabilities()
            .await
            .map_err(|e| self.imap("CAPABILITY", e))?;
        let can_move = caps.has_str("MOVE");
        let can_uid_expunge = caps.has_str("UIDPLUS");
        self.ensure_processed_folder(session).await?;
        let mailbox = session
            .select(&cfg.folder)
            .await
            .map_err(|e| self.imap("SELECT", e))?;
        if mailbox.uid_validity != mark.uid_validity {
            // A new folder (or the first poll): every UID is new.
            *mark = Mark {
                uid_validity: mailbox.uid_validity,
                last_uid: 0,
            };
        }
        let mut report = PollReport::default();
        if mailbox.exists == 0 {
            return Ok(report);
        }
        let mut uids: Vec<u32> = session
            .uid_search(format!("UID {}:*", mark.last_uid.saturating_add(1)))
            .await
            .map_err(|e| self.imap("UID SEARCH", e))?
            .into_iter()
            // `n:*` names the last message even when its UID is below n.
            .filter(|u| *u > mark.last_uid)
            .collect();
        uids.sort_unstable();
        for batch in uids.chunks(FETCH_BATCH) {
            let set = uid_set(batch);
            let mut messages: Vec<(u32, Option<Vec<u8>>)> = session
                .uid_fetch(&set, "(UID RFC822.SIZE BODY.PEEK[])")
                .await
                .map_err(|e| self.imap("UID FETCH", e))?
                .map_ok(|f| {
                    let too_big = f.size.is_some_and(|s| s > MAX_MESSAGE);
                    (
                        f.uid.unwrap_or(0),
                        f.body().filter(|_| !too_big).map(<[u8]>::to_vec),
                    )
                })
                .try_collect()
                .await
                .map_err(|e| self.imap("UID FETCH", e))?;
            messages.retain(|(uid, _)| batch.contains(uid));
            messages.sort_by_key(|(uid, _)| *uid);
            // Each message read, in UID order, and whether it is to be moved.
            let mut outcomes: Vec<(u32, bool)> = Vec::new();
            let mut stop = false;
            for (uid, raw) in messages {
                report.fetched += 1;
                let Some(raw) = raw else {
                    warn!(uid, folder = %cfg.folder, "a message over 64 MiB or without a body: left where it is");
                    report.left += 1;
                    outcomes.push((uid, false));
                    continue;
                };
                match self.ops.ingest_mailbox_message(&raw).await {
                    Ok(None) => {
                        report.left += 1;
                        outcomes.push((uid, false));
                    }
                    Ok(Some(got)) => {
                        if got.recorded.duplicate {
                            report.duplicates += 1;
                        } else {
                            report.recorded += 1;
                        }
                        outcomes.push((uid, true));
                    }
                    Err(e) => {
                        warn!(uid, error = %e, "a bounce in the mailbox could not be recorded: left for the next poll");
                        report.not_recorded += 1;
                        stop = true;
                        break;
                    }
                }
            }
            let to_move: Vec<u32> = outcomes.iter().filter(|o| o.1).map(|o| o.0).collect();
            let moved = to_move.is_empty()
                || match self
                    .move_to_processed(session, &to_move, can_move, can_uid_expunge)
                    .await
                {
                    Ok(()) => {
                        report.moved += to_move.len();
                        true
                    }
                    Err(e) => {
                        // Recorded but not moved: read again next poll (a duplicate
                        // then) and moved then.
                        warn!(error = %e, "recorded bounces could not be moved; trying again next poll");
                        false
                    }
                };
            // The mark passes what is done, up to the first message not done.
            for (uid, to_be_moved) in outcomes {
                if to_be_moved && !moved {
                    break;
                }
                mark.last_uid = uid;
            }
            if stop || !moved {
                break;
            }
        }
        Ok(report)
    }

    /// Creates the processed folder unless it exists.
    async fn ensure_processed_folder<S>(
        &self,
        session: &mut async_imap::Session<S>,
    ) -> Result<(), PollError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
    {
        let folder = &self.cfg.processed_folder;
        let found: Vec<_> = session
            .list(Some(""), Some(folder))
            .await
            .map_err(|e| self.imap("LIST", e))?
            .try_collect()
            .await
            .map_err(|e| self.imap("LIST", e))?;
        if found.is_empty() {
            session
                .create(folder)
                .await
                .map_err(|e| self.imap("CREATE", e))?;
            info!(folder = %folder, "bounce mailbox: processed folder created");
        }
        Ok(())
    }

    /// Moves exactly these UIDs to the processed folder: MOVE, else COPY, `\Deleted` and
    /// UID EXPUNGE of these UIDs. A server with neither MOVE nor UIDPLUS could only
    /// expunge every deleted message of the folder, someone else's too: the messages are
    /// copied and left (recorded once, thanks to the dedupe key).
    async fn move_to_processed<S>(
        &self,
        session: &mut async_imap::Session<S>,
        uids: &[u32],
        can_move: bool,
        can_uid_expunge: bool,
    ) -> Result<(), PollError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
    {
        let set = uid_set(uids);
        let folder = &self.cfg.processed_folder;
        if can_move {
            return session
                .uid_mv(&set, folder)
                .await
                .map_err(|e| self.imap("UID MOVE", e));
        }
        session
            .uid_copy(&set, folder)
            .await
            .map_err(|e| self.imap("UID COPY", e))?;
        if !can_uid_expunge {
            warn!(
                host = %self.cfg.host,
                "the IMAP server has neither MOVE nor UIDPLUS: bounces were copied to the \
                 processed folder and left in place (expunging could remove other mail)"
            );
            return Ok(());
        }
        let _: Vec<_> = session
            .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
            .await
            .map_err(|e| self.imap("UID STORE", e))?
            .try_collect()
            .await
            .map_err(|e| self.imap("UID STORE", e))?;
        let _: Vec<_> = session
            .uid_expunge(&set)
            .await
            .map_err(|e| self.imap("UID EXPUNGE", e))?
            .try_collect()
            .await
            .map_err(|e| self.imap("UID EXPUNGE", e))?;
        Ok(())
    }
}

/// An IMAP UID set: `3,5,9`.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
