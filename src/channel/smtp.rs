//! Our SMTP connection pool over lettre's connection type. We keep our own pool (rather
//! than lettre's) to control what lettre's leaves out: TCP_NODELAY (without it every
//! message waits ~40 ms on Nagle + delayed ACK for its final `.`), a bound on every wait
//! (connect, greeting, each reply), knowing *which* SMTP step failed — MAIL FROM (a
//! configuration problem), RCPT (this recipient), DATA, or the final reply after the
//! message was sent (the message may have been delivered) — and PIPELINING across
//! messages (RFC 2920): while messages wait, one write carries a message's data and the
//! next message's MAIL, RCPT and DATA, so each message costs one round trip, not two.
//!
//! Each connection is a task that owns its session and takes prepared messages from one
//! shared queue; a sender waits on its own reply. A connection whose transaction failed is
//! reset with RSET, or dropped if that fails; never reused as it is.

use super::{FailureKind, SendError};
use crate::config::{SmtpConfig, TlsMode};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use rustls::pki_types::CertificateDer;
use secrecy::ExposeSecret;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// A connection idle this long is closed (servers drop idle clients after a while; a
/// dead pooled connection would cost a recipient an attempt).
const MAX_IDLE: Duration = Duration::from_secs(30);

/// Bytes reserved after a message's data for the next message's envelope, which is
/// written with it: MAIL and RCPT with addresses of the longest legal length, and DATA.
const ENVELOPE_ROOM: usize = 1024;

/// A connection and what we learnt about the server beyond what lettre records.
struct Conn {
    inner: AsyncSmtpConnection,
    /// The server offers PIPELINING (RFC 2920): MAIL, RCPT and DATA go in one write.
    pipelining: bool,
    /// Messages whose data went out on this connection.
    sent: u32,
}

/// Text written to the server as it is: lettre's `command` writes any `Display` and
/// reads one reply, which lets us send pipelined commands and a message we dot-stuffed
/// ourselves in one write each.
struct Raw<'a>(&'a [&'a str]);

impl std::fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|s| f.write_str(s))
    }
}

/// The DATA payload: the message with SMTP transparency (RFC 5321 §4.5.2: a `.` that
/// begins a line is doubled) and the final `CRLF.CRLF`, in one exactly sized string.
/// lettre's `message` stuffs byte by byte, which cost more CPU than the rest of a send;
/// this finds line starts with `memchr`.
/// `room` more bytes are reserved for the next message's commands.
fn data_payload(message: &str, room: usize) -> String {
    let at: Vec<usize> = std::iter::once(0)
        .filter(|_| message.starts_with('.'))
        .chain(memchr::memmem::find_iter(message.as_bytes(), b"\r\n.").map(|i| i + 2))
        .collect();
    let mut out = String::with_capacity(message.len() + at.len() + 5 + room);
    let mut from = 0;
    for i in at {
        out.push_str(&message[from..i]);
        out.push('.');
        from = i;
    }
    out.push_str(&message[from..]);
    out.push_str("\r\n.\r\n");
    out
}

/// A message as the caller prepared it for the wire.
enum Payload {
    /// ASCII, dot-stuffed, with its final `.`: written as one command.
    Text(String),
    /// Anything else, left to lettre (which stuffs it) with BODY=8BITMIME where offered.
    Bytes(Vec<u8>),
}

/// One message in the queue, and where its answer goes.
struct Request {
    /// `MAIL FROM` without parameters, each `RCPT TO`, and `DATA`, each with its CRLF.
    commands: Vec<String>,
    /// For a message that is not ASCII: `MAIL FROM` with BODY=8BITMIME, used where offered.
    mail_8bit: Option<String>,
    payload: Payload,
    answer: oneshot::Sender<Result<Response, SendError>>,
    /// It already failed once without a reply before its data went out, and was put on a
    /// fresh connection; a second time is an error.
    retried: bool,
}

impl Request {
    /// Nobody waits for the answer any more (the sender was cancelled): its delivery
    /// would go unrecorded, so it must not be sent.
    fn abandoned(&self) -> bool {
        self.answer.is_closed()
    }

    fn answer(self, r: Result<Response, SendError>) {
        let _ = self.answer.send(r);
    }

    /// The envelope's commands as this connection's server should get them.
    fn commands(&self, c: &Conn) -> Vec<&str> {
        let mut v: Vec<&str> = self.commands.iter().map(String::as_str).collect();
        if let Some(m) = &self.mail_8bit {
            if c.inner
                .server_info()
                .supports_feature(Extension::EightBitMime)
            {
                v[0] = m;
            }
        }
        v
    }
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

/// What a step got back instead of a positive reply.
#[derive(Debug)]
enum Failure {
    /// The server's error: a negative reply, or the connection failing.
    Server(lettre::transport::smtp::Error),
    /// No answer within this long.
    NoAnswer(Duration),
}

/// A failed step and what it got back.
type StepError = (Step, Failure);

/// A command of the connection's set-up (STARTTLS, AUTH) that failed or got no answer.
#[derive(Debug, thiserror::Error)]
enum SetupStepError {
    #[error("{step}: {message}")]
    Failed { step: &'static str, message: String },
    #[error("{step}: no answer within {} s", .timeout.as_secs())]
    NoAnswer {
        step: &'static str,
        timeout: Duration,
    },
}

/// The pool could not be set up.
/// Why the pool's TLS could not be set up; names the relay host.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("TLS setup for {host}: {source}")]
    Lettre {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("TLS setup for {host}: {source}")]
    Rustls {
        host: String,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS setup for {host}: `{host}` is not a valid server name")]
    ServerName { host: String },
}

fn reply_code(e: &lettre::transport::smtp::Error) -> Option<i64> {
    e.status().and_then(|c| c.to_string().parse().ok())
}

/// Whether a failure came with no reply from the server (lost connection, timeout).
fn without_reply(e: &StepError) -> bool {
    match &e.1 {
        Failure::Server(e) => e.status().is_none(),
        Failure::NoAnswer(_) => true,
    }
}

/// Whether the server said it is closing the session (421, RFC 5321 §3.8): relays send it
/// when a session has carried as many messages as they allow, or when shutting down.
fn closing(e: &StepError) -> bool {
    matches!(&e.1, Failure::Server(e) if reply_code(e) == Some(421))
}

/// Whether an OS error is this machine running out of something (file descriptors,
/// socket buffers, memory, local ports) rather than the relay being unreachable: the
/// relay is not at fault and neither is the recipient, so no row may spend an attempt on it.
fn local_exhaustion(e: &std::io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::EMFILE) => Some(
            "this process has no file descriptor left (EMFILE): raise its limit (LimitNOFILE) \
             or find what holds them (open HTTP connections?)",
        ),
        Some(libc::ENFILE) => Some("the system has no file descriptor left (ENFILE)"),
        Some(libc::ENOBUFS) => Some("the system has no socket buffer space left (ENOBUFS)"),
        Some(libc::ENOMEM) => Some("the system is out of memory (ENOMEM)"),
        Some(libc::EADDRNOTAVAIL) => Some(
            "no local address or port is left to connect from (EADDRNOTAVAIL): too many \
             connections in TIME_WAIT?",
        ),
        _ => match e.kind() {
            std::io::ErrorKind::OutOfMemory => Some("the system is out of memory"),
            std::io::ErrorKind::AddrNotAvailable => {
                Some("no local address or port is left to connect from")
            }
            _ => None,
        },
    }
}

/// [`local_exhaustion`] anywhere in an error's chain (lettre wraps the socket's error).
fn exhaustion_in(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut e = e;
    loop {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(why) = local_exhaustion(io) {
                return Some(why);
            }
            // An io::Error's `source` skips the error it wraps: look at that one too.
            if let Some(inner) = io.get_ref() {
                e = inner;
                continue;
            }
        }
        e = e.source()?;
    }
}

/// A connect failure caused by local resource exhaustion becomes channel-wide: the
/// dispatcher rests the channel (`delivery.channel_pause_seconds`) and its rows wait
/// without spending an attempt, instead of each burning its attempts on our own shortage.
fn halt_if_exhausted(mut e: SendError, cause: &(dyn std::error::Error + 'static)) -> SendError {
    if let Some(why) = exhaustion_in(cause) {
        e.halt_channel = true;
        e.message = format!(
            "{} — local resource exhaustion, not the relay: {why}; rows wait, no attempt spent",
            e.message
        );
    }
    e
}

#[cfg(test)]
mod local_exhaustion_tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn resource_exhaustion_is_recognised_by_os_error_and_kind() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
        ] {
            let e = Error::from_raw_os_error(errno);
            assert!(local_exhaustion(&e).is_some(), "errno {errno}: {e}");
        }
        assert!(local_exhaustion(&Error::from(ErrorKind::OutOfMemory)).is_some());
        assert!(local_exhaustion(&Error::from(ErrorKind::AddrNotAvailable)).is_some());
        // The relay's side, or the network's: these spend attempts as before.
        for errno in [
            libc::ECONNREFUSED,
            libc::ECONNRESET,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
        ] {
            let e = Error::from_raw_os_error(errno);
            assert!(local_exhaustion(&e).is_none(), "errno {errno}: {e}");
        }
        assert!(local_exhaustion(&Error::from(ErrorKind::ConnectionRefused)).is_none());
    }

    #[test]
    fn a_wrapped_exhaustion_is_found_and_halts_the_channel() {
        // lettre (and tokio's resolver) wrap the socket's error in their own.
        #[derive(Debug)]
        struct Wrapper(Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "network error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let nested = Error::other(Error::from_raw_os_error(libc::EMFILE));
        let wrapped = Wrapper(Error::from_raw_os_error(libc::ENFILE));
        for cause in [
            &nested as &(dyn std::error::Error + 'static),
            &wrapped as &(dyn std::error::Error + 'static),
        ] {
            let e = halt_if_exhausted(SendError::transient("127.0.0.1:25: connect: boom"), cause);
            assert!(e.halt_channel, "{cause}");
            assert!(!e.maybe_delivered);
            assert!(
                e.message.contains("local resource exhaustion"),
                "{}",
                e.message
            );
            assert!(
                e.message.starts_with("127.0.0.1:25: connect"),
                "{}",
                e.message
            );
        }
        let refused = Error::from_raw_os_error(libc::ECONNREFUSED);
        let e = halt_if_exhausted(SendError::transient("connect: refused"), &refused);
        assert!(!e.halt_channel);
        assert_eq!(e.message, "connect: refused");
    }
}

/// A bounded pool of SMTP connections to one relay: `pool_size` connection tasks fed by
/// one queue, started on first use and ended when the pool is dropped.
pub struct SmtpPool {
    relay: Arc<Relay>,
    queue: flume::Sender<Request>,
    /// The queue's receiving end, cloned into each connection task. Its receiver count is
    /// the number of live tasks plus this one.
    taken: flume::Receiver<Request>,
    starting: std::sync::Mutex<()>,
}

/// What every connection task needs to open and speak to the relay.
struct Relay {
    cfg: SmtpConfig,
    hello: ClientId,
    /// `tls = "starttls"`: lettre upgrades the connection after the greeting.
    starttls: Option<TlsParameters>,
    /// `tls = "tls"`: the handshake comes first, on our own socket.
    implicit_tls: Option<ImplicitTls>,
    creds: Option<Credentials>,
}

/// Implicit TLS (RFC 8314): rustls over the socket we opened, so it keeps TCP_NODELAY.
/// Trusts the same roots as lettre's STARTTLS path (the Mozilla set from webpki-roots)
/// plus any given.
struct ImplicitTls {
    connector: tokio_rustls::TlsConnector,
    server: rustls::pki_types::ServerName<'static>,
}

impl ImplicitTls {
    fn new(host: &str, extra_roots: &[CertificateDer<'static>]) -> Result<Self, TlsSetupError> {
        let rustls_err = |source| TlsSetupError::Rustls {
            host: host.to_string(),
            source,
        };
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in extra_roots {
            roots.add(cert.clone()).map_err(rustls_err)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
            TlsSetupError::ServerName {
                host: host.to_string(),
            }
        })?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server,
        })
    }

    async fn connect(&self, tcp: tokio::net::TcpStream) -> std::io::Result<TlsTcp> {
        Ok(TlsTcp(
            self.connector.connect(self.server.clone(), tcp).await?,
        ))
    }
}

/// A TLS stream lettre can speak SMTP over (its transport trait wants `peer_addr`).
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsTcp {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl SmtpPool {
    pub fn new(cfg: &SmtpConfig) -> Result<Self, TlsSetupError> {
        Self::with_roots(cfg, &[])
    }

    /// A pool that also trusts these certificates (a relay with a private CA).
    pub fn with_roots(
        cfg: &SmtpConfig,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Self, TlsSetupError> {
        let lettre_err = |source| TlsSetupError::Lettre {
            host: cfg.host.clone(),
            source,
        };
        let starttls = match cfg.tls {
            TlsMode::StartTls => {
                let mut b = TlsParameters::builder(cfg.host.clone());
                for cert in extra_roots {
                    let cert =
                        lettre::transport::smtp::client::Certificate::from_der(cert.to_vec())
                            .map_err(lettre_err)?;
                    b = b.add_root_certificate(cert);
                }
                Some(b.build().map_err(lettre_err)?)
            }
            TlsMode::None | TlsMode::Tls => None,
        };
        let implicit_tls = match cfg.tls {
            TlsMode::Tls => Some(ImplicitTls::new(&cfg.host, extra_roots)?),
            TlsMode::None | TlsMode::StartTls => None,
        };
        let creds = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.expose_secret().to_string())),
            _ => None,
        };
        let (queue, taken) = flume::unbounded();
        Ok(Self {
            relay: Arc::new(Relay {
                hello: cfg
                    .hello_name
                    .clone()
                    .map(ClientId::Domain)
                    .unwrap_or_default(),
                cfg: cfg.clone(),
                starttls,
                implicit_tls,
                creds,
            }),
            queue,
            taken,
            starting: std::sync::Mutex::new(()),
        })
    }

    /// Starts connection tasks until `pool_size` are alive: on first use, and again after
    /// one ended (a panic, or the runtime it ran on shut down) so that queued messages
    /// are never left without a connection to take them.
    fn start_connections(&self) {
        let want = self.relay.cfg.pool_size.max(1) as usize + 1;
        if self.taken.receiver_count() >= want {
            return;
        }
        let _one_at_a_time = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        while self.taken.receiver_count() < want {
            tokio::spawn(self.relay.clone().connection(self.taken.clone()));
        }
    }

    /// Sends one message to one envelope, on the first connection free.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, SendError> {
        self.start_connections();
        let (payload, mail_8bit) = match std::str::from_utf8(message) {
            Ok(text) if text.is_ascii() => (Payload::Text(data_payload(text, ENVELOPE_ROOM)), None),
            _ => (
                Payload::Bytes(message.to_vec()),
                Some(
                    Mail::new(
                        envelope.from().cloned(),
                        vec![MailParameter::Body(MailBodyParameter::EightBitMime)],
                    )
                    .to_string(),
                ),
            ),
        };
        let commands = std::iter::once(Mail::new(envelope.from().cloned(), vec![]).to_string())
            .chain(
                envelope
                    .to()
                    .iter()
                    .map(|to| Rcpt::new(to.clone(), vec![]).to_string()),
            )
            .chain([Data.to_string()])
            .collect();
        let (answer, answered) = oneshot::channel();
        let request = Request {
            commands,
            mail_8bit,
            payload,
            answer,
            retried: false,
        };
        if self.queue.send(request).is_err() {
            return Err(SendError::transient("the SMTP connections have stopped"));
        }
        answered.await.unwrap_or_else(|_| {
            Err(SendError {
                maybe_delivered: true,
                ..SendError::transient("the SMTP connection task ended without an answer")
            })
        })
    }
}

impl Relay {
    async fn bounded<T, E: std::fmt::Display>(
        &self,
        step: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, SetupStepError> {
        match tokio::time::timeout(self.cfg.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SetupStepError::Failed {
                step,
                message: e.to_string(),
            }),
            Err(_) => Err(SetupStepError::NoAnswer {
                step,
                timeout: self.cfg.timeout,
            }),
        }
    }

    /// Opens, greets, secures and authenticates a new connection.
    async fn connect(&self) -> Result<Conn, SendError> {
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
        let tcp = match tokio::time::timeout(self.cfg.timeout, tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(halt_if_exhausted(
                    fail(FailureKind::Transient, None, format!("connect: {e}")),
                    &e,
                ))
            }
            Err(_) => {
                return Err(fail(
                    FailureKind::Transient,
                    None,
                    format!("connect: no answer within {} s", self.cfg.timeout.as_secs()),
                ))
            }
        };
        let _ = tcp.set_nodelay(true);
        let transport: Box<dyn AsyncTokioStream> = match &self.implicit_tls {
            // Implicit TLS: the handshake on our own socket (lettre's connector would open
            // one without TCP_NODELAY), then lettre speaks SMTP over the secured stream.
            Some(tls) => Box::new(
                self.bounded("TLS handshake", tls.connect(tcp))
                    .await
                    .map_err(|m| fail(FailureKind::Transient, None, m.to_string()))?,
            ),
            None => Box::new(tcp),
        };
        let mut conn = {
            let mut c = match tokio::time::timeout(
                self.cfg.timeout,
                AsyncSmtpConnection::connect_with_transport(transport, &self.hello),
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
                let params = self.starttls.clone().expect("TLS parameters for STARTTLS");
                self.bounded("STARTTLS", c.starttls(params, &self.hello))
                    .await
                    .map_err(|m| fail(FailureKind::Transient, None, m.to_string()))?;
            }
            c
        };
        // lettre keeps only the EHLO keywords it uses; ask again to learn about PIPELINING
        // (before AUTH: a new EHLO after it could reset the session).
        // A server that refuses the second EHLO is used without pipelining; only a lost
        // connection or no answer fails the connect.
        let pipelining = match tokio::time::timeout(
            self.cfg.timeout,
            conn.command(Ehlo::new(self.hello.clone())),
        )
        .await
        {
            Ok(Ok(r)) => r.message().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
            }),
            Ok(Err(e)) if e.status().is_some() && !conn.has_broken() => false,
            Ok(Err(e)) => {
                self.discard_raw(conn);
                return Err(fail(
                    FailureKind::Transient,
                    None,
                    format!("EHLO: {}", super::error_chain(&e)),
                ));
            }
            Err(_) => {
                self.discard_raw(conn);
                return Err(fail(
                    FailureKind::Transient,
                    None,
                    format!("EHLO: no answer within {} s", self.cfg.timeout.as_secs()),
                ));
            }
        };
        if let Some(creds) = &self.creds {
            if let Err(m) = self
                .bounded(
                    "AUTH",
                    conn.auth(&[Mechanism::Plain, Mechanism::Login], creds),
                )
                .await
            {
                self.discard_raw(conn);
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
        tracing::debug!(
            relay = %format_args!("{}:{}", self.cfg.host, self.cfg.port),
            pipelining,
            "SMTP connection opened"
        );
        Ok(Conn {
            inner: conn,
            pipelining,
            sent: 0,
        })
    }

    /// One connection's task: takes messages from the queue until the pool is dropped,
    /// connecting when it needs to and closing the connection when it idles.
    async fn connection(self: Arc<Self>, queue: flume::Receiver<Request>) {
        let mut conn: Option<Conn> = None;
        // A message whose data never went out on a connection that failed: it goes
        // first, on a fresh connection.
        let mut carried: Option<Request> = None;
        loop {
            let request = match carried.take() {
                Some(r) => r,
                None => match self.next_request(&queue, &mut conn).await {
                    Some(r) => r,
                    None => break,
                },
            };
            if request.abandoned() {
                continue;
            }
            let (mut c, reused) = match conn.take() {
                Some(c) if !c.inner.has_broken() => (c, true),
                stale => {
                    if let Some(s) = stale {
                        self.discard(s);
                    }
                    match self.connect().await {
                        Ok(c) => (c, false),
                        Err(e) => {
                            request.answer(Err(e));
                            continue;
                        }
                    }
                }
            };
            conn = match self.envelope(&mut c, &request).await {
                Ok(()) => self.stream(c, request, &queue, &mut carried).await,
                Err(e) => {
                    self.envelope_failed(c, request, e, reused, &mut carried)
                        .await
                }
            };
            if let Some(c) = conn.take_if(|c| !self.has_room(c)) {
                self.discard(c);
            }
        }
        if let Some(mut c) = conn {
            let _ = tokio::time::timeout(self.cfg.timeout, c.inner.abort()).await;
        }
    }

    /// Whether another message may go out on this connection
    /// (`email.smtp.messages_per_connection`).
    fn has_room(&self, c: &Conn) -> bool {
        self.cfg
            .messages_per_connection
            .is_none_or(|most| c.sent < most)
    }

    /// The next message from the queue; a connection left idle for `MAX_IDLE` is closed
    /// meanwhile. None once the pool is gone.
    async fn next_request(
        &self,
        queue: &flume::Receiver<Request>,
        conn: &mut Option<Conn>,
    ) -> Option<Request> {
        if conn.is_some() {
            match tokio::time::timeout(MAX_IDLE, queue.recv_async()).await {
                Ok(r) => return r.ok(),
                Err(_) => {
                    if let Some(c) = conn.take() {
                        tracing::debug!("SMTP connection idle for {MAX_IDLE:?}: closed");
                        self.discard(c);
                    }
                }
            }
        }
        queue.recv_async().await.ok()
    }

    /// Sends a message's MAIL, RCPT and DATA (in one write where the server pipelines)
    /// and reads every reply; Ok once the server waits for the data.
    async fn envelope(&self, c: &mut Conn, r: &Request) -> Result<(), StepError> {
        let t = self.cfg.timeout;
        let commands = r.commands(c);
        if c.pipelining {
            let first = tokio::time::timeout(t, c.inner.command(Raw(&commands))).await;
            return self.envelope_replies(c, commands.len(), Some(first)).await;
        }
        for (command, s) in commands.iter().zip(steps(commands.len())) {
            step(
                s,
                t,
                tokio::time::timeout(t, c.inner.command(Raw(&[command]))).await,
            )?;
        }
        Ok(())
    }

    /// Reads the replies to a pipelined envelope of `n` commands: every one, in order, so
    /// the session stays in step (`first` is the one that came back from the write that
    /// carried the commands, if it did). The first negative reply is reported; a lost
    /// connection or a timeout ends the reading.
    async fn envelope_replies(
        &self,
        c: &mut Conn,
        n: usize,
        mut first: Option<Reply>,
    ) -> Result<(), StepError> {
        let t = self.cfg.timeout;
        let mut failed = None;
        for s in steps(n) {
            let r = match first.take() {
                Some(r) => r,
                None => tokio::time::timeout(t, c.inner.read_response()).await,
            };
            match step(s, t, r) {
                Ok(_) if s == Step::Data && failed.is_some() => {
                    // DATA was accepted though an earlier command failed: the session is
                    // not worth saving (abort marks it broken, so it is dropped).
                    let _ = tokio::time::timeout(t, c.inner.abort()).await;
                    return Err(failed.expect("an earlier failure"));
                }
                Ok(_) => {}
                Err((s, Failure::Server(e))) if e.status().is_some() => {
                    failed.get_or_insert((s, Failure::Server(e)));
                }
                Err(e) => return Err(e),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// After a failed envelope. A message whose commands got no answer, or a 421, on a
    /// connection that had worked before goes again, once, on a fresh connection: its
    /// data never went out, so nothing was delivered and no attempt is spent (a server
    /// closes idle clients, and ends sessions after so many messages; we learn it only by
    /// writing). Otherwise it gets the error. A negative reply leaves the session usable
    /// after RSET; anything else (421 included) and the connection is dropped.
    async fn envelope_failed(
        &self,
        mut c: Conn,
        mut r: Request,
        e: StepError,
        reused: bool,
        carried: &mut Option<Request>,
    ) -> Option<Conn> {
        let closing = closing(&e);
        if (without_reply(&e) || closing) && reused && !r.retried {
            self.discard(c);
            r.retried = true;
            *carried = Some(r);
            return None;
        }
        let err = self.classify(e.0, e.1);
        let refused = err.code.is_some();
        r.answer(Err(err));
        if refused && !closing && !c.inner.has_broken() {
            if let Ok(Ok(resp)) =
                tokio::time::timeout(self.cfg.timeout, c.inner.command(Rset)).await
            {
                if resp.is_positive() {
                    return Some(c);
                }
            }
        }
        self.discard(c);
        None
    }

    /// Sends the data of `current`, whose envelope the server accepted, and goes on while
    /// messages wait. With PIPELINING the next message's envelope rides in the same write
    /// as this one's data (RFC 2920 §3.1: message content may be the first "command" of a
    /// group, and DATA its last), so each message costs one round trip. Returns the
    /// connection if it is still usable.
    async fn stream(
        &self,
        mut c: Conn,
        mut current: Request,
        queue: &flume::Receiver<Request>,
        carried: &mut Option<Request>,
    ) -> Option<Conn> {
        // The reply to the end of data has its own, longer wait (RFC 5321 §4.5.3.2.6
        // suggests 10 minutes): a relay's content filter runs before it answers, and a
        // message given up on too early may still be delivered, then sent again.
        let dt = self.cfg.data_timeout;
        loop {
            if current.abandoned() {
                // Nobody would record this delivery. The server waits for its data; only
                // closing the connection, without the final `.`, cancels the message.
                drop(c);
                return None;
            }
            c.sent += 1;
            let next = match &current.payload {
                Payload::Text(_) if c.pipelining && self.has_room(&c) => ready(queue),
                _ => None,
            };
            let sent = match &mut current.payload {
                Payload::Text(data) => {
                    if let Some(n) = &next {
                        // The data was sized with room for an envelope: no copy of it.
                        n.commands(&c).iter().for_each(|s| data.push_str(s));
                    }
                    tokio::time::timeout(dt, c.inner.command(data.as_str())).await
                }
                Payload::Bytes(b) => tokio::time::timeout(dt, c.inner.message(b)).await,
            };
            match step(Step::EndOfData, dt, sent) {
                Ok(resp) => current.answer(Ok(resp)),
                Err(e) => {
                    let lost = without_reply(&e) || c.inner.has_broken();
                    let closing = closing(&e);
                    let mut err = self.classify(e.0, e.1);
                    if lost || closing {
                        // Lost: the message may have been delivered. Either way the next
                        // one's data never went out: it goes again, first, on a fresh
                        // connection.
                        err.maybe_delivered = lost;
                        current.answer(Err(err));
                        self.discard(c);
                        *carried = next;
                        return None;
                    }
                    // A refused message ends its transaction as an accepted one does (RFC
                    // 5321 §4.1.1.4: the buffers are cleared either way): the session goes on.
                    current.answer(Err(err));
                }
            }
            let Some(n) = next else { return Some(c) };
            match self.envelope_replies(&mut c, n.commands.len(), None).await {
                Ok(()) => current = n,
                Err(e) => return self.envelope_failed(c, n, e, true, carried).await,
            }
        }
    }

    /// Closes a connection in the background: QUIT if the server still answers within the
    /// timeout, else just the socket. Never makes a send wait on a bad connection.
    fn discard(&self, conn: Conn) {
        self.discard_raw(conn.inner);
    }

    fn discard_raw(&self, mut conn: AsyncSmtpConnection) {
        let t = self.cfg.timeout;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(t, conn.abort()).await;
        });
    }

    /// Reads a failure by step and reply (issue 5's classification).
    fn classify(&self, step: Step, err: Failure) -> SendError {
        let what = match step {
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::EndOfData => "end of data",
        };
        let (code, text, permanent) = match &err {
            Failure::Server(e) => (reply_code(e), super::error_chain(e), e.is_permanent()),
            Failure::NoAnswer(t) => (None, format!("no answer within {} s", t.as_secs()), false),
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

/// A reply as read: the server's answer or error, or nothing within the timeout.
type Reply = Result<Result<Response, lettre::transport::smtp::Error>, tokio::time::error::Elapsed>;

fn step(s: Step, t: Duration, r: Reply) -> Result<Response, StepError> {
    match r {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err((s, Failure::Server(e))),
        Err(_) => Err((s, Failure::NoAnswer(t))),
    }
}

/// The steps of an envelope of `n` commands: MAIL FROM, each RCPT TO, DATA.
fn steps(n: usize) -> impl Iterator<Item = Step> {
    std::iter::once(Step::MailFrom)
        .chain(std::iter::repeat_n(Step::RcptTo, n.saturating_sub(2)))
        .chain([Step::Data])
}

/// A message already waiting in the queue, if any (abandoned ones are dropped on the way).
fn ready(queue: &flume::Receiver<Request>) -> Option<Request> {
    std::iter::from_fn(|| queue.try_recv().ok()).find(|r| !r.abandoned())
}

#[cfg(test)]
mod tests {
    use super::data_payload;

    fn data_payload_(m: &str) -> String {
        data_payload(m, 0)
    }

    #[test]
    fn dots_that_begin_a_line_are_doubled_and_the_data_ends_with_a_dot() {
        assert_eq!(data_payload_("plain\r\ntext"), "plain\r\ntext\r\n.\r\n");
        assert_eq!(data_payload_(".first"), "..first\r\n.\r\n");
        assert_eq!(
            data_payload_("a\r\n.b\r\n..c\r\nd.e\r\n."),
            "a\r\n..b\r\n...c\r\nd.e\r\n..\r\n.\r\n"
        );
        // A lone LF is not a line end on the wire.
        assert_eq!(data_payload_("a\n.b"), "a\n.b\r\n.\r\n");
    }
}

#[cfg(test)]
mod wire_tests;
