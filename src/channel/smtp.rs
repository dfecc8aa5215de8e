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
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use secrecy::ExposeSecret;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// Idle connections older than this are closed rather than reused (servers drop idle
/// clients after a while; a dead pooled connection would cost a recipient an attempt).
const MAX_IDLE: Duration = Duration::from_secs(30);

/// A connection and what we learnt about the server beyond what lettre records.
struct Conn {
    inner: AsyncSmtpConnection,
    /// The server offers PIPELINING (RFC 2920): MAIL, RCPT and DATA go in one write.
    pipelining: bool,
}

struct Idle {
    conn: Conn,
    since: Instant,
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
fn data_payload(message: &str) -> String {
    let at: Vec<usize> = std::iter::once(0)
        .filter(|_| message.starts_with('.'))
        .chain(memchr::memmem::find_iter(message.as_bytes(), b"\r\n.").map(|i| i + 2))
        .collect();
    let mut out = String::with_capacity(message.len() + at.len() + 5);
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
        Ok(Conn {
            inner: conn,
            pipelining,
        })
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
                if i.since.elapsed() < MAX_IDLE && !i.conn.inner.has_broken() {
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
                if e.code.is_some() && !conn.inner.has_broken() {
                    if let Ok(Ok(r)) =
                        tokio::time::timeout(self.cfg.timeout, conn.inner.command(Rset)).await
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
    fn discard(&self, conn: Conn) {
        self.discard_raw(conn.inner);
    }

    fn discard_raw(&self, mut conn: AsyncSmtpConnection) {
        let t = self.cfg.timeout;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(t, conn.abort()).await;
        });
    }

    async fn give_back(&self, conn: Conn) {
        self.idle.lock().await.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// One mail transaction. With PIPELINING, MAIL, RCPT and DATA go in one write and
    /// their replies are read in order (every one, so the session stays in step); without
    /// it, one command per round trip. The message goes in one write with its final `.`.
    async fn transaction(
        &self,
        conn: &mut Conn,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, (Step, Result<lettre::transport::smtp::Error, String>)> {
        let text = std::str::from_utf8(message).ok().filter(|m| m.is_ascii());
        let mut params = vec![];
        if text.is_none()
            && conn
                .inner
                .server_info()
                .supports_feature(Extension::EightBitMime)
        {
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
        let mail = Mail::new(envelope.from().cloned(), params).to_string();
        let rcpts: Vec<String> = envelope
            .to()
            .iter()
            .map(|to| Rcpt::new(to.clone(), vec![]).to_string())
            .collect();
        if conn.pipelining {
            let data = Data.to_string();
            let mut parts: Vec<&str> = vec![&mail];
            parts.extend(rcpts.iter().map(String::as_str));
            parts.push(&data);
            // Every reply is read, in order, so the session stays in step; the first
            // negative one is reported. A lost connection or a timeout ends the reading.
            let mut failed = None;
            let steps = std::iter::once(Step::MailFrom)
                .chain(std::iter::repeat_n(Step::RcptTo, rcpts.len()))
                .chain([Step::Data]);
            for (i, s) in steps.enumerate() {
                let r = if i == 0 {
                    step(
                        s,
                        tokio::time::timeout(t, conn.inner.command(Raw(&parts))).await,
                    )
                } else {
                    step(s, tokio::time::timeout(t, conn.inner.read_response()).await)
                };
                match r {
                    Ok(_) if s == Step::Data && failed.is_some() => {
                        // DATA was accepted though an earlier command failed: the session
                        // is not worth saving (abort marks it broken, so it is dropped).
                        let _ = tokio::time::timeout(t, conn.inner.abort()).await;
                        return Err(failed.expect("an earlier failure"));
                    }
                    Ok(_) => {}
                    Err((s, Ok(e))) if e.status().is_some() => {
                        failed.get_or_insert((s, Ok(e)));
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        } else {
            step(
                Step::MailFrom,
                tokio::time::timeout(t, conn.inner.command(Raw(&[&mail]))).await,
            )?;
            for rcpt in &rcpts {
                step(
                    Step::RcptTo,
                    tokio::time::timeout(t, conn.inner.command(Raw(&[rcpt]))).await,
                )?;
            }
            step(
                Step::Data,
                tokio::time::timeout(t, conn.inner.command(Data)).await,
            )?;
        }
        let sent = match text {
            Some(text) => {
                // A `&str` command is copied once, at its exact size, by lettre's write.
                let payload = data_payload(text);
                tokio::time::timeout(t, conn.inner.command(payload.as_str())).await
            }
            None => tokio::time::timeout(t, conn.inner.message(message)).await,
        };
        step(Step::EndOfData, sent)
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

#[cfg(test)]
mod tests {
    use super::data_payload;

    #[test]
    fn dots_that_begin_a_line_are_doubled_and_the_data_ends_with_a_dot() {
        assert_eq!(data_payload("plain\r\ntext"), "plain\r\ntext\r\n.\r\n");
        assert_eq!(data_payload(".first"), "..first\r\n.\r\n");
        assert_eq!(
            data_payload("a\r\n.b\r\n..c\r\nd.e\r\n."),
            "a\r\n..b\r\n...c\r\nd.e\r\n..\r\n.\r\n"
        );
        // A lone LF is not a line end on the wire.
        assert_eq!(data_payload("a\n.b"), "a\n.b\r\n.\r\n");
    }
}
