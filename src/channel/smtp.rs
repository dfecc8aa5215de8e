//! Our SMTP connection pool over lettre's connection type. We keep our own pool (rather
//! than lettre's) to control what lettre's leaves out: TCP_NODELAY (without it every
//! message waits ~40 ms on Nagle + delayed ACK for its final `.`), a bound on every wait
//! (connect, greeting, each reply, pool checkout), and knowing *which* SMTP step failed —
//! MAIL FROM (a configuration problem), RCPT (this recipient), DATA, or the final reply
//! after the message was sent (the message may have been delivered). A connection whose
//! transaction failed is reset with RSET, or dropped if that fails; never reused as it is.

use super::{FailureKind, SendError};
use crate::config::{SmtpConfig, TlsMode};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use secrecy::ExposeSecret;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// Idle connections older than this are closed rather than reused (servers drop idle
/// clients after a while; a dead pooled connection would cost a recipient an attempt).
const MAX_IDLE: Duration = Duration::from_secs(30);

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// A bounded pool of SMTP connections to one relay.
pub struct SmtpPool {
    cfg: SmtpConfig,
    hello: ClientId,
    tls: Option<TlsParameters>,
    creds: Option<Credentials>,
    idle: Mutex<Vec<Idle>>,
    slots: Semaphore,
}

/// The step of the SMTP transaction that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    MailFrom,
    RcptTo,
    Data,
    /// The message was written; its final reply did not come or said no.
    EndOfData,
}

fn reply_code(e: &lettre::transport::smtp::Error) -> Option<i64> {
    e.status().and_then(|c| c.to_string().parse().ok())
}

impl SmtpPool {
    pub fn new(cfg: &SmtpConfig) -> Result<Self, String> {
        let tls = match cfg.tls {
            TlsMode::None => None,
            TlsMode::StartTls | TlsMode::Tls => Some(
                TlsParameters::new(cfg.host.clone())
                    .map_err(|e| format!("TLS setup for {}: {e}", cfg.host))?,
            ),
        };
        let creds = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.expose_secret().to_string())),
            _ => None,
        };
        Ok(Self {
            hello: cfg
                .hello_name
                .clone()
                .map(ClientId::Domain)
                .unwrap_or_default(),
            cfg: cfg.clone(),
            tls,
            creds,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(cfg.pool_size as usize),
        })
    }

    async fn bounded<T, E: std::fmt::Display>(
        &self,
        step: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.cfg.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{step}: {e}")),
            Err(_) => Err(format!(
                "{step}: no answer within {} s",
                self.cfg.timeout.as_secs()
            )),
        }
    }

    /// Opens, greets, secures and authenticates a new connection.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let addr = (self.cfg.host.as_str(), self.cfg.port);
        let fail = |kind: FailureKind, code: Option<i64>, m: String| SendError {
            kind,
            code,
            message: format!("{}:{}: {m}", self.cfg.host, self.cfg.port),
            maybe_delivered: false,
            message_id: None,
            retry_after: None,
            halt_channel: false,
        };
        let mut conn = if self.cfg.tls == TlsMode::Tls {
            // Implicit TLS: lettre's own connector (it does not set TCP_NODELAY).
            let r = tokio::time::timeout(
                self.cfg.timeout,
                AsyncSmtpConnection::connect_tokio1(
                    addr,
                    Some(self.cfg.timeout),
                    &self.hello,
                    self.tls.clone(),
                    None,
                ),
            )
            .await;
            match r {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    return Err(fail(
                        FailureKind::Transient,
                        reply_code(&e),
                        super::error_chain(&e),
                    ))
                }
                Err(_) => {
                    return Err(fail(
                        FailureKind::Transient,
                        None,
                        "connect: timed out".into(),
                    ))
                }
            }
        } else {
            let tcp = self
                .bounded("connect", tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|m| fail(FailureKind::Transient, None, m))?;
            let _ = tcp.set_nodelay(true);
            let mut c = match tokio::time::timeout(
                self.cfg.timeout,
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
            )
            .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    return Err(fail(
                        FailureKind::Transient,
                        reply_code(&e),
                        format!("greeting: {}", super::error_chain(&e)),
                    ))
                }
                Err(_) => {
                    return Err(fail(
                        FailureKind::Transient,
                        None,
                        "greeting: timed out".into(),
                    ))
                }
            };
            if self.cfg.tls == TlsMode::StartTls {
                if !c.can_starttls() {
                    let mut e = fail(
                        FailureKind::Transient,
                        None,
                        "the server does not offer STARTTLS, which email.smtp.tls = \"starttls\" requires".into(),
                    );
                    e.halt_channel = true;
                    return Err(e);
                }
                let params = self.tls.clone().expect("TLS parameters for STARTTLS");
                self.bounded("STARTTLS", c.starttls(params, &self.hello))
                    .await
                    .map_err(|m| fail(FailureKind::Transient, None, m))?;
            }
            c
        };
        if let Some(creds) = &self.creds {
            if let Err(m) = self
                .bounded(
                    "AUTH",
                    conn.auth(&[Mechanism::Plain, Mechanism::Login], creds),
                )
                .await
            {
                self.discard(conn);
                // A refused login fails every message alike: stop the channel, tell the operator.
                let mut e = fail(
                    FailureKind::Transient,
                    None,
                    format!("{m} (check email.smtp.username and the password)"),
                );
                e.halt_channel = true;
                return Err(e);
            }
        }
        Ok(conn)
    }

    /// Sends one message to one envelope, on a pooled connection.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, SendError> {
        let _slot = match tokio::time::timeout(self.cfg.timeout, self.slots.acquire()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(SendError::transient(
                    "no SMTP connection became free in time",
                ))
            }
        };
        let reused = {
            let mut idle = self.idle.lock().await;
            let mut found = None;
            while let Some(i) = idle.pop() {
                if i.since.elapsed() < MAX_IDLE && !i.conn.has_broken() {
                    found = Some(i.conn);
                    break;
                }
                self.discard(i.conn);
            }
            found
        };
        let was_reused = reused.is_some();
        let mut conn = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        let mut result = self.transaction(&mut conn, envelope, message).await;
        // A pooled connection the server closed while it was idle fails at MAIL FROM without
        // a reply: nothing was sent, so try once more on a fresh connection.
        let no_reply = |e: &Result<lettre::transport::smtp::Error, String>| {
            e.as_ref().map_or(true, |e| e.status().is_none())
        };
        if was_reused && matches!(&result, Err((Step::MailFrom, e)) if no_reply(e)) {
            self.discard(conn);
            conn = self.connect().await?;
            result = self.transaction(&mut conn, envelope, message).await;
        }
        match result {
            Ok(r) => {
                self.give_back(conn).await;
                Ok(r)
            }
            Err((step, err)) => {
                let mut e = self.classify(step, err);
                // A negative reply leaves the session usable after RSET; anything else
                // (lost connection, timeout) and the connection is dropped.
                if e.code.is_some() && !conn.has_broken() {
                    if let Ok(Ok(r)) =
                        tokio::time::timeout(self.cfg.timeout, conn.command(Rset)).await
                    {
                        if r.is_positive() {
                            self.give_back(conn).await;
                            return Err(e);
                        }
                    }
                }
                self.discard(conn);
                if step == Step::EndOfData && e.code.is_none() {
                    e.maybe_delivered = true;
                }
                Err(e)
            }
        }
    }

    /// Closes a connection in the background: QUIT if the server still answers within the
    /// timeout, else just the socket. Never makes a send wait on a bad connection.
    fn discard(&self, mut conn: AsyncSmtpConnection) {
        let t = self.cfg.timeout;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(t, conn.abort()).await;
        });
    }

    async fn give_back(&self, conn: AsyncSmtpConnection) {
        self.idle.lock().await.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, (Step, Result<lettre::transport::smtp::Error, String>)> {
        let mut params = vec![];
        if !message.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let t = self.cfg.timeout;
        let step = |s: Step,
                    r: Result<
            Result<Response, lettre::transport::smtp::Error>,
            tokio::time::error::Elapsed,
        >| match r {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err((s, Ok(e))),
            Err(_) => Err((s, Err(format!("no answer within {} s", t.as_secs())))),
        };
        step(
            Step::MailFrom,
            tokio::time::timeout(t, conn.command(Mail::new(envelope.from().cloned(), params)))
                .await,
        )?;
        for to in envelope.to() {
            step(
                Step::RcptTo,
                tokio::time::timeout(t, conn.command(Rcpt::new(to.clone(), vec![]))).await,
            )?;
        }
        step(
            Step::Data,
            tokio::time::timeout(t, conn.command(Data)).await,
        )?;
        step(
            Step::EndOfData,
            tokio::time::timeout(t, conn.message(message)).await,
        )
    }

    /// Reads a failure by step and reply (issue 5's classification).
    fn classify(
        &self,
        step: Step,
        err: Result<lettre::transport::smtp::Error, String>,
    ) -> SendError {
        let what = match step {
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::EndOfData => "end of data",
        };
        let (code, text, permanent) = match &err {
            Ok(e) => (reply_code(e), super::error_chain(e), e.is_permanent()),
            Err(m) => (None, m.clone(), false),
        };
        let mut e = SendError {
            kind: if permanent {
                FailureKind::Permanent
            } else {
                FailureKind::Transient
            },
            code,
            message: format!("{what}: {text}"),
            maybe_delivered: false,
            message_id: None,
            retry_after: None,
            halt_channel: false,
        };
        if step == Step::MailFrom && permanent {
            // The sender itself is refused: every message would fail the same way. Stop the
            // channel and tell the operator instead of failing the list one by one.
            e.kind = FailureKind::Transient;
            e.halt_channel = true;
            e.message.push_str(
                " (the relay refuses our sender: check email.from and the relay's policy)",
            );
        }
        e
    }
}
