//! The SMTP pool's behaviour on the wire, pinned against an in-process scripted server: a
//! loopback `TcpListener` (the pool connects by host and port) whose script reads the
//! client's lines and writes replies, so each test states exactly which bytes arrive
//! before which reply. The smtp-sink tests in `tests/it/smtp_faults.rs` stay as system
//! tests. The implicit-TLS path is scripted the same way behind a rustls acceptor with a
//! throwaway certificate (rcgen) the pool is told to trust.

use super::*;
use lettre::address::Envelope;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The pool's reply timeout and its longer wait for the reply to the end of data: short
/// real timeouts (the pool's timers run on tokio's clock, but a paused clock would also
/// auto-advance while the loopback socket is waiting, firing them early).
const T: Duration = Duration::from_secs(1);
const DT: Duration = Duration::from_secs(2);
/// How long the server waits for a line before the script fails.
const WAIT: Duration = Duration::from_secs(5);

fn config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        username: None,
        password: None,
        pool_size: 1,
        rate_per_second: None,
        timeout: T,
        data_timeout: DT,
        hello_name: Some("client.test".into()),
        messages_per_connection: None,
    }
}

fn envelope(to: &str) -> Envelope {
    Envelope::new(
        Some("news@example.org".parse().unwrap()),
        vec![to.parse().unwrap()],
    )
    .unwrap()
}

const MESSAGE: &[u8] = b"Subject: test\r\n\r\nhello";

/// The scripted server: offers PIPELINING or not.
struct Server {
    listener: TcpListener,
    pipelining: bool,
}

impl Server {
    async fn start(pipelining: bool) -> (Self, SmtpPool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let pool = SmtpPool::new(&config(port)).unwrap();
        (
            Self {
                listener,
                pipelining,
            },
            pool,
        )
    }

    /// The next connection, greeted: banner, lettre's EHLO, and the pool's second EHLO.
    async fn accept(&self) -> Peer {
        let tcp = self.accept_tcp().await;
        Peer::greet(tcp, self.pipelining).await
    }

    async fn accept_tcp(&self) -> TcpStream {
        let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("the pool did not connect")
            .unwrap();
        tcp
    }
}

/// One accepted connection, as the script sees it.
struct Peer<S = TcpStream> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    /// Banner, lettre's EHLO, and the pool's second EHLO (to learn about PIPELINING).
    async fn greet(io: S, pipelining: bool) -> Self {
        let mut p = Peer {
            io: BufReader::new(io),
        };
        p.reply("220 server.test ESMTP").await;
        let ehlo = if pipelining {
            "250-server.test\r\n250-PIPELINING\r\n250 8BITMIME"
        } else {
            "250-server.test\r\n250 8BITMIME"
        };
        for _ in 0..2 {
            p.expect("EHLO client.test").await;
            p.reply(ehlo).await;
        }
        p
    }

    /// The next line, without its CRLF (which it must have).
    async fn line(&mut self) -> String {
        let mut s = String::new();
        let n = tokio::time::timeout(WAIT, self.io.read_line(&mut s))
            .await
            .expect("no line from the client")
            .unwrap();
        assert!(n > 0, "the client closed the connection");
        assert!(s.ends_with("\r\n"), "a line without CRLF: {s:?}");
        s.truncate(s.len() - 2);
        s
    }

    async fn expect(&mut self, want: &str) {
        assert_eq!(self.line().await, want);
    }

    /// MAIL FROM, one RCPT TO, DATA, read without replying.
    async fn expect_envelope(&mut self, to: &str) {
        self.expect("MAIL FROM:<news@example.org>").await;
        self.expect(&format!("RCPT TO:<{to}>")).await;
        self.expect("DATA").await;
    }

    async fn reply(&mut self, text: &str) {
        let s = format!("{text}\r\n");
        self.io.get_mut().write_all(s.as_bytes()).await.unwrap();
    }

    /// The message data as it came, through its final `.` line.
    async fn data(&mut self) -> String {
        let mut all = String::new();
        loop {
            let l = self.line().await;
            all.push_str(&l);
            all.push_str("\r\n");
            if l == "." {
                return all;
            }
        }
    }

    /// Whether nothing arrives for `d` (what the client sent so far was all it sent
    /// before waiting for a reply).
    async fn quiet(&mut self, d: Duration) -> bool {
        if !self.io.buffer().is_empty() {
            return false;
        }
        tokio::time::timeout(d, self.io.fill_buf()).await.is_err()
    }

    /// Reads until the client closes, answering its QUIT if it sends one.
    async fn until_closed(&mut self) {
        let mut s = String::new();
        loop {
            s.clear();
            tokio::time::timeout(WAIT, self.io.read_line(&mut s))
                .await
                .expect("the client kept the connection open")
                .unwrap();
            match s.as_str() {
                "" => return,
                "QUIT\r\n" => self.reply("221 2.0.0 bye").await,
                other => panic!("{other:?} on a connection the client should close"),
            }
        }
    }

    /// A normal transaction, each command answered as it comes (which suits a client
    /// that pipelines and one that does not): data read, `final_reply` sent.
    async fn transaction(&mut self, to: &str, final_reply: &str) -> String {
        self.expect("MAIL FROM:<news@example.org>").await;
        self.reply("250 2.1.0 OK").await;
        self.expect(&format!("RCPT TO:<{to}>")).await;
        self.reply("250 2.1.5 OK").await;
        self.expect("DATA").await;
        self.reply("354 go ahead").await;
        let data = self.data().await;
        self.reply(final_reply).await;
        data
    }
}

/// Runs the server's script beside the client's sends; a panic in the script fails the
/// test, and neither side may hang it.
async fn run<C: Future>(script: impl Future<Output = ()> + Send + 'static, client: C) -> C::Output {
    let script = tokio::spawn(script);
    let out = tokio::time::timeout(Duration::from_secs(20), client)
        .await
        .expect("the client hung");
    tokio::time::timeout(Duration::from_secs(20), script)
        .await
        .expect("the script hung")
        .expect("the script failed");
    out
}

#[tokio::test]
async fn with_pipelining_mail_rcpt_and_data_arrive_before_any_reply() {
    let (srv, pool) = Server::start(true).await;
    let r = run(
        async move {
            let mut p = srv.accept().await;
            // Nothing is answered until all three are in.
            p.expect_envelope("a@example.net").await;
            p.reply("250 OK\r\n250 OK\r\n354 go ahead").await;
            p.data().await;
            p.reply("250 2.0.0 queued").await;
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn without_pipelining_each_command_waits_for_its_reply() {
    let (srv, pool) = Server::start(false).await;
    let r = run(
        async move {
            let mut p = srv.accept().await;
            let q = Duration::from_millis(300);
            p.expect("MAIL FROM:<news@example.org>").await;
            assert!(p.quiet(q).await, "RCPT came before MAIL's reply");
            p.reply("250 OK").await;
            p.expect("RCPT TO:<a@example.net>").await;
            assert!(p.quiet(q).await, "DATA came before RCPT's reply");
            p.reply("250 OK").await;
            p.expect("DATA").await;
            assert!(p.quiet(q).await, "data came before DATA's reply");
            p.reply("354 go ahead").await;
            p.data().await;
            p.reply("250 2.0.0 queued").await;
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn the_next_envelope_rides_with_the_data_before_its_final_reply() {
    let (srv, pool) = Server::start(true).await;
    let (a, b) = run(
        async move {
            let mut p = srv.accept().await;
            p.expect_envelope("a@example.net").await;
            p.reply("250 OK\r\n250 OK\r\n354 go ahead").await;
            p.data().await;
            // The second message's envelope came with the first's data: no reply yet.
            p.expect_envelope("b@example.net").await;
            p.reply("250 2.0.0 queued as A\r\n250 OK\r\n250 OK\r\n354 go ahead")
                .await;
            p.data().await;
            p.reply("250 2.0.0 queued as B").await;
        },
        async {
            let (a, b) = (envelope("a@example.net"), envelope("b@example.net"));
            futures::join!(pool.send(&a, MESSAGE), pool.send(&b, MESSAGE))
        },
    )
    .await;
    let text = |r: Response| r.message().collect::<Vec<_>>().join(" ");
    assert_eq!(text(a.unwrap()), "2.0.0 queued as A");
    assert_eq!(text(b.unwrap()), "2.0.0 queued as B");
}

#[tokio::test]
async fn the_data_is_dot_stuffed_and_ends_with_crlf_dot_crlf() {
    let (srv, pool) = Server::start(true).await;
    let message = b"Subject: dots\r\n\r\n.leading\r\nmid.dot\r\n..two\r\n.";
    let r = run(
        async move {
            let mut p = srv.accept().await;
            let data = p.transaction("a@example.net", "250 OK").await;
            assert_eq!(
                data,
                "Subject: dots\r\n\r\n..leading\r\nmid.dot\r\n...two\r\n..\r\n.\r\n"
            );
        },
        pool.send(&envelope("a@example.net"), message),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn a_refused_rcpt_is_reset_and_the_connection_reused() {
    let (srv, pool) = Server::start(true).await;
    let (refused, next) = run(
        async move {
            let mut p = srv.accept().await;
            p.expect_envelope("nobody@example.net").await;
            p.reply("250 OK\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients")
                .await;
            p.expect("RSET").await;
            p.reply("250 2.0.0 reset").await;
            // The same connection carries the next message.
            p.transaction("b@example.net", "250 OK").await;
        },
        async {
            let refused = pool.send(&envelope("nobody@example.net"), MESSAGE).await;
            (
                refused,
                pool.send(&envelope("b@example.net"), MESSAGE).await,
            )
        },
    )
    .await;
    let e = refused.unwrap_err();
    assert_eq!(e.code, Some(550), "{e:?}");
    assert!(next.is_ok(), "{next:?}");
}

#[tokio::test]
async fn a_failed_rset_closes_the_connection() {
    let (srv, pool) = Server::start(false).await;
    let (refused, next) = run(
        async move {
            let mut p = srv.accept().await;
            p.expect("MAIL FROM:<news@example.org>").await;
            p.reply("250 OK").await;
            p.expect("RCPT TO:<nobody@example.net>").await;
            p.reply("550 5.1.1 no such user").await;
            p.expect("RSET").await;
            p.reply("554 5.3.0 cannot reset").await;
            p.until_closed().await;
            // The next message comes on a new connection.
            let mut p = srv.accept().await;
            p.transaction("b@example.net", "250 OK").await;
        },
        async {
            let refused = pool.send(&envelope("nobody@example.net"), MESSAGE).await;
            (
                refused,
                pool.send(&envelope("b@example.net"), MESSAGE).await,
            )
        },
    )
    .await;
    assert_eq!(refused.unwrap_err().code, Some(550));
    assert!(next.is_ok(), "{next:?}");
}

#[tokio::test]
async fn a_421_on_mail_from_goes_again_on_a_fresh_connection_without_an_error() {
    let (srv, pool) = Server::start(false).await;
    let (first, second) = run(
        async move {
            let mut p = srv.accept().await;
            p.transaction("a@example.net", "250 OK").await;
            // The relay ends the session after one message.
            p.expect("MAIL FROM:<news@example.org>").await;
            p.reply("421 4.7.0 too many messages in this session").await;
            p.until_closed().await;
            let mut p = srv.accept().await;
            p.transaction("b@example.net", "250 2.0.0 queued on the second")
                .await;
        },
        async {
            let first = pool.send(&envelope("a@example.net"), MESSAGE).await;
            (first, pool.send(&envelope("b@example.net"), MESSAGE).await)
        },
    )
    .await;
    assert!(first.is_ok(), "{first:?}");
    // The 421 cost the message nothing: the caller sees only its delivery.
    let second = second.unwrap();
    assert_eq!(
        second.message().collect::<Vec<_>>(),
        ["2.0.0 queued on the second"]
    );
}

#[tokio::test]
async fn a_connection_closed_after_the_data_is_maybe_delivered() {
    let (srv, pool) = Server::start(true).await;
    let r = run(
        async move {
            let mut p = srv.accept().await;
            p.expect_envelope("a@example.net").await;
            p.reply("250 OK\r\n250 OK\r\n354 go ahead").await;
            p.data().await;
            drop(p);
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    let e = r.unwrap_err();
    assert!(e.maybe_delivered, "{e:?}");
    assert_eq!(e.kind, FailureKind::Transient);
}

#[tokio::test]
async fn no_final_reply_within_the_data_timeout_is_maybe_delivered() {
    let (srv, pool) = Server::start(true).await;
    let r = run(
        async move {
            let mut p = srv.accept().await;
            p.expect_envelope("a@example.net").await;
            p.reply("250 OK\r\n250 OK\r\n354 go ahead").await;
            p.data().await;
            // Silent: the client gives up and closes.
            p.until_closed().await;
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    let e = r.unwrap_err();
    assert!(e.maybe_delivered, "{e:?}");
    assert!(e.message.starts_with("end of data"), "{e:?}");
}

#[tokio::test]
async fn the_final_reply_may_take_longer_than_the_reply_timeout() {
    let (srv, pool) = Server::start(true).await;
    let r = run(
        async move {
            let mut p = srv.accept().await;
            p.expect_envelope("a@example.net").await;
            p.reply("250 OK\r\n250 OK\r\n354 go ahead").await;
            p.data().await;
            // A content filter: later than `timeout`, within `data_timeout`.
            tokio::time::sleep(T + (DT - T) / 2).await;
            p.reply("250 2.0.0 queued after filtering").await;
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn a_5xx_rcpt_is_permanent_and_a_4xx_transient() {
    let (srv, pool) = Server::start(true).await;
    let (five, four) = run(
        async move {
            let mut p = srv.accept().await;
            for (to, code) in [
                ("x@example.net", "550 5.1.1 no such user"),
                ("y@example.net", "450 4.2.1 mailbox busy"),
            ] {
                p.expect_envelope(to).await;
                p.reply(&format!(
                    "250 OK\r\n{code}\r\n554 5.5.1 no valid recipients"
                ))
                .await;
                p.expect("RSET").await;
                p.reply("250 OK").await;
            }
        },
        async {
            let five = pool.send(&envelope("x@example.net"), MESSAGE).await;
            (five, pool.send(&envelope("y@example.net"), MESSAGE).await)
        },
    )
    .await;
    let (five, four) = (five.unwrap_err(), four.unwrap_err());
    assert_eq!((five.kind, five.code), (FailureKind::Permanent, Some(550)));
    assert_eq!((four.kind, four.code), (FailureKind::Transient, Some(450)));
    assert!(!five.halt_channel && !four.halt_channel);
    assert!(five.message.starts_with("RCPT TO"), "{five:?}");
}

#[tokio::test]
async fn a_5xx_mail_from_halts_the_channel() {
    let (srv, pool) = Server::start(true).await;
    let r = run(
        async move {
            let mut p = srv.accept().await;
            p.expect_envelope("a@example.net").await;
            p.reply("550 5.7.1 sender refused\r\n503 5.5.1 no sender\r\n503 5.5.1 no sender")
                .await;
            p.expect("RSET").await;
            p.reply("250 OK").await;
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    let e = r.unwrap_err();
    assert!(e.halt_channel, "{e:?}");
    assert_eq!(e.kind, FailureKind::Transient);
    assert_eq!(e.code, Some(550));
    assert!(!e.maybe_delivered);
}

/// TCP_NODELAY on this process's socket connected from `local` to `peer`, read from the
/// socket itself (the server cannot see it).
fn nodelay_of(local: std::net::SocketAddr, peer: std::net::SocketAddr) -> Option<bool> {
    use std::os::fd::RawFd;
    fn port(fd: RawFd, peer: bool) -> Option<u16> {
        // SAFETY: the address buffer and its length are ours and sized for sockaddr_in.
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p = (&mut a as *mut libc::sockaddr_in).cast::<libc::sockaddr>();
        let rc = unsafe {
            if peer {
                libc::getpeername(fd, p, &mut len)
            } else {
                libc::getsockname(fd, p, &mut len)
            }
        };
        (rc == 0 && a.sin_family == libc::AF_INET as libc::sa_family_t)
            .then(|| u16::from_be(a.sin_port))
    }
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let Some(fd) = entry
            .ok()
            .and_then(|e| e.file_name().to_str().and_then(|s| s.parse::<RawFd>().ok()))
        else {
            continue;
        };
        if port(fd, false) != Some(local.port()) || port(fd, true) != Some(peer.port()) {
            continue;
        }
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: as above; `v` is an int, as TCP_NODELAY's value is.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            return Some(v != 0);
        }
    }
    None
}

#[tokio::test]
async fn the_connection_has_tcp_nodelay() {
    if !std::path::Path::new("/proc/self/fd").is_dir() {
        eprintln!("skipped: no /proc/self/fd to find the pool's socket by");
        return;
    }
    let (srv, pool) = Server::start(true).await;
    let r = run(
        async move {
            let mut p = srv.accept().await;
            let tcp = p.io.get_ref();
            let (client, server) = (tcp.peer_addr().unwrap(), tcp.local_addr().unwrap());
            assert_eq!(
                nodelay_of(client, server),
                Some(true),
                "the pool's socket {client} -> {server}"
            );
            p.transaction("a@example.net", "250 OK").await;
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

/// A certificate for 127.0.0.1, and a rustls acceptor serving it.
fn tls_identity() -> (
    rustls::pki_types::CertificateDer<'static>,
    tokio_rustls::TlsAcceptor,
) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let der = cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .unwrap();
    (der, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn implicit_tls_handshakes_first_then_speaks_smtp_over_a_socket_with_tcp_nodelay() {
    let (cert, acceptor) = tls_identity();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config(listener.local_addr().unwrap().port());
    cfg.tls = TlsMode::Tls;
    let pool = SmtpPool::with_roots(&cfg, &[cert]).unwrap();
    let srv = Server {
        listener,
        pipelining: true,
    };
    let r = run(
        async move {
            let tcp = srv.accept_tcp().await;
            let (client, server) = (tcp.peer_addr().unwrap(), tcp.local_addr().unwrap());
            // The first bytes on the wire are a TLS ClientHello (record type 22), not
            // SMTP: implicit TLS speaks only after the handshake.
            let mut first = [0u8; 1];
            assert_eq!(tcp.peek(&mut first).await.unwrap(), 1);
            assert_eq!(first[0], 22, "not a TLS handshake record");
            if std::path::Path::new("/proc/self/fd").is_dir() {
                assert_eq!(
                    nodelay_of(client, server),
                    Some(true),
                    "the pool's TLS socket {client} -> {server}"
                );
            } else {
                eprintln!("TCP_NODELAY not checked: no /proc/self/fd to find the socket by");
            }
            let tls = acceptor.accept(tcp).await.expect("TLS handshake");
            let mut p = Peer::greet(tls, true).await;
            let data = p.transaction("a@example.net", "250 2.0.0 queued").await;
            assert!(data.contains("hello"), "{data:?}");
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn implicit_tls_refuses_a_certificate_it_does_not_trust_and_sends_nothing() {
    let (_, acceptor) = tls_identity();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config(listener.local_addr().unwrap().port());
    cfg.tls = TlsMode::Tls;
    // Only the public roots: the throwaway certificate is not among them.
    let pool = SmtpPool::new(&cfg).unwrap();
    let srv = Server {
        listener,
        pipelining: true,
    };
    let r = run(
        async move {
            let tcp = srv.accept_tcp().await;
            // The handshake fails on the client's side; no SMTP follows.
            assert!(acceptor.accept(tcp).await.is_err());
        },
        pool.send(&envelope("a@example.net"), MESSAGE),
    )
    .await;
    let e = r.unwrap_err();
    assert_eq!(e.kind, FailureKind::Transient, "{e:?}");
    assert!(!e.maybe_delivered, "{e:?}");
    assert!(e.message.contains("TLS handshake"), "{e:?}");
    assert!(e.message.to_lowercase().contains("certificate"), "{e:?}");
}

/// With `[bounces] return_path`, the e-mail channel's MAIL FROM is the VERP address of
/// the ledger row, and the From header stays the publisher's.
#[tokio::test]
async fn with_verp_mail_from_is_the_rows_verp_address() {
    use crate::channel::email::EmailChannel;
    use crate::channel::{Channel, Job, PreparedBulletin};
    use crate::domain::ChannelKind;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let text = format!(
        "[publisher]\nnames = [\"Centre\"]\n[email]\nfrom = \"Centre <news@example.org>\"\n\
         transport = \"smtp\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         hello_name = \"client.test\"\npool_size = 1\n\
         [bounces]\nreturn_path = \"bounces+{{token}}@bounces.example.org\"\n"
    );
    let config = crate::config::Config::parse(&text, std::path::Path::new("t.toml"), &|n| {
        (n == "BULLETIN_VERP_SECRET").then(|| "0123456789abcdef-verp".to_string())
    })
    .unwrap();
    let verp = config.bounces.verp.clone().unwrap();
    let signer = std::sync::Arc::new(crate::unsubscribe::UnsubscribeSigner::new(
        vec![7; 32],
        "https://news.example.org",
    ));
    let channel = EmailChannel::new(&config.email, signer, "tag".into())
        .unwrap()
        .with_verp(Some(verp.clone()));
    let prepared = PreparedBulletin {
        id: 1,
        kind: crate::store::BulletinKind::Record,
        language: "en".into(),
        subject: "VERP".into(),
        web_url: None,
        html: "<p>Hello</p>".into(),
        text: "Hello\n".into(),
        images: vec![],
        wechat: None,
        email_bodies: Default::default(),
        versions: vec![],
        reader_versions: Default::default(),
    };
    let now = chrono::Utc::now();
    let claimed = crate::store::Claimed {
        id: 4242,
        bulletin_id: 1,
        channel: ChannelKind::Email,
        recipient: "reader@example.net".into(),
        recipient_name: None,
        list_id: Some(1),
        subscriber_id: Some(9),
        attempts: 0,
        ambiguous: false,
        created_at: now,
        lease_until: now,
        suppressed_because: None,
        priority: 0,
        unconfirmed: 0,
        taken_from: None,
        language: None,
    };
    let sender = verp.address(4242);
    assert_eq!(verp.row_id(&sender), Some(4242));
    let srv = Server {
        listener,
        pipelining: true,
    };
    let want = format!("MAIL FROM:<{sender}>");
    let r = run(
        async move {
            let mut p = srv.accept().await;
            p.expect(&want).await;
            p.expect("RCPT TO:<reader@example.net>").await;
            p.expect("DATA").await;
            p.reply("250 OK\r\n250 OK\r\n354 go ahead").await;
            let data = p.data().await;
            assert!(data.contains("From: Centre <news@example.org>"), "{data}");
            assert!(!data.contains("Return-Path"), "{data}");
            p.reply("250 2.0.0 queued").await;
        },
        channel.deliver(Job {
            delivery: &claimed,
            bulletin: &prepared,
        }),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}
