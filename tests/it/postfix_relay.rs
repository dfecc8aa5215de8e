//! A real relay for the bounce path (issue 15): a private Postfix instance (its own
//! configuration, queue and data directories in a temporary folder, smtpd on a free
//! loopback port) whose transport map bounces one domain (`error:`), defers another
//! (`retry:`: given up at once, or warned about after a second), and hands the DSNs it
//! writes to the VERP return path's domain to a `pipe` transport command: for now a
//! script that files each message in a folder, or the built `bulletin bounces ingest`.
//! The tests prove that such DSNs, made by Postfix itself, classify with the right kind
//! and ledger row, and that a vacation reply arriving the same way is an auto-reply; and,
//! end to end, that a bulletin sent with VERP through the relay comes back through the
//! pipe into `bulletin bounces ingest` and marks exactly the right rows and subscribers.

use crate::harness::free_port;
use bulletin::bounce::{classify, BounceKind, ReturnPath, Verp, VerpKey};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Mail to this domain is accepted, then bounced by Postfix's `error` transport.
pub const HARD_DOMAIN: &str = "hard.example.net";
/// Mail to this domain is accepted, then deferred by the `retry` transport (4.2.2); see
/// [`Deferred`] for what follows.
pub const SOFT_DOMAIN: &str = "soft.example.net";
/// Mail to this domain is accepted and then discarded (delivered, as far as anyone knows).
pub const OK_DOMAIN: &str = "ok.example.net";
/// The VERP return path's domain: Postfix delivers it to the pipe transport.
pub const BOUNCE_DOMAIN: &str = "bounces.example.org";
/// The relay's host name (the DSNs' Reporting-MTA).
pub const RELAY_HOST: &str = "relay.bulletin-test.example";

const POSTFIX: &str = "/usr/sbin/postfix";

/// The pipe command: one message on standard input, filed atomically in the folder
/// `$1`, with the envelope recipient (`$2`, Postfix's `${recipient}`) beside it.
const DELIVER_SCRIPT: &str = r#"#!/bin/sh
umask 022
name="$1/$(date +%s%N)-$$"
cat > "$name.tmp" || exit 75
printf '%s\n' "$2" > "$name.rcpt" || exit 75
mv "$name.tmp" "$name.eml" || exit 75
"#;

/// What the instance does with a deferred message (the soft domain's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// Give up after the first try (`maximal_queue_lifetime = 0`): a DSN with
    /// Action failed and the 4.x.x status comes at once.
    GiveUpAtOnce,
    /// Keep retrying every second and send a delay warning (Action delayed) after one
    /// second (`delay_warning_time = 1s`).
    WarnAfterOneSecond,
}

/// A running private Postfix instance; stopped (and its folder removed) on drop.
pub struct PostfixRelay {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// A message the pipe transport delivered.
pub struct Piped {
    pub raw: Vec<u8>,
    /// The envelope recipient Postfix passed (`${recipient}`).
    pub recipient: String,
}

/// Why a private instance cannot run here, if it cannot: the `postfix` command refuses
/// anyone but root (as another user it says "postfix: fatal: the postfix command is
/// reserved for the superuser"). A missing package is an installation to make.
fn cannot_run() -> Option<String> {
    assert!(
        Path::new(POSTFIX).exists(),
        "Postfix is not installed, so the real-relay test cannot run. Run `tests/run` \
         (it installs the `postfix` package) or `apt-get install postfix`."
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return None;
    }
    // Postfix logs that refusal to syslog, not to a standard error that is not a tty,
    // so its words are quoted here rather than captured.
    Some(format!(
        "a private Postfix instance needs root, and this is uid {euid}: `postfix -c DIR \
         start` refuses other users (\"postfix: fatal: the postfix command is reserved for \
         the superuser\")"
    ))
}

/// The relay, or None after saying SKIPPED when it cannot run here and
/// BULLETIN_SKIP_POSTFIX_RELAY=1 asks to skip knowingly; otherwise the test fails
/// rather than pass without having run (CI runs as root).
pub fn relay_or_skip(deferred: Deferred) -> Option<PostfixRelay> {
    relay_or_skip_with(deferred, None)
}

/// [`relay_or_skip`] with another pipe command ([`PostfixRelay::start_with`]).
pub fn relay_or_skip_with(deferred: Deferred, pipe: Option<&str>) -> Option<PostfixRelay> {
    if let Some(why) = cannot_run() {
        if std::env::var_os("BULLETIN_SKIP_POSTFIX_RELAY").is_some() {
            eprintln!("SKIPPED (BULLETIN_SKIP_POSTFIX_RELAY): real-relay test: {why}");
            return None;
        }
        panic!("{why}; run as root, or set BULLETIN_SKIP_POSTFIX_RELAY=1 to skip it knowingly");
    }
    Some(PostfixRelay::start_with(deferred, pipe))
}

impl PostfixRelay {
    /// Writes the instance's configuration and starts it; panics with Postfix's log if
    /// it does not come up. Needs root (see [`relay_or_skip`]).
    /// `pipe`: the pipe command's argv before the envelope recipient (which Postfix
    /// appends as `${recipient}`), run as `nobody`; None: the filing script.
    pub fn start_with(deferred: Deferred, pipe: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let etc = root.join("etc");
        let inbox = root.join("inbox");
        for d in [&etc, &root.join("queue"), &root.join("data"), &inbox] {
            fs::create_dir_all(d).unwrap();
        }
        // The pipe command runs as `nobody`: it must reach the script and the folder.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&inbox, fs::Permissions::from_mode(0o1777)).unwrap();
        let script = root.join("deliver.sh");
        fs::write(&script, DELIVER_SCRIPT).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        // Postfix wants its data directory owned by its mail_owner.
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(root.join("data"))
            .status()
            .expect("run chown");
        assert!(
            chown.success(),
            "chown postfix {}",
            root.join("data").display()
        );

        let deferred_settings = match deferred {
            Deferred::GiveUpAtOnce => {
                "# Give up on a deferred message after its first try: its DSN comes at once.\n\
                 maximal_queue_lifetime = 0\n"
            }
            Deferred::WarnAfterOneSecond => {
                "# Retry deferred mail every second and warn its sender after one.\n\
                 delay_warning_time = 1s\n\
                 queue_run_delay = 1s\n\
                 minimal_backoff_time = 1s\n\
                 maximal_backoff_time = 1s\n"
            }
        };
        let port = free_port();
        let r = root.display();
        let pipe_argv = pipe
            .map(str::to_string)
            .unwrap_or_else(|| format!("{r}/deliver.sh {r}/inbox"));
        fs::write(
            etc.join("transport"),
            format!(
                "{HARD_DOMAIN} error:5.1.1 no such user\n\
                 {SOFT_DOMAIN} retry:4.2.2 mailbox full\n\
                 {OK_DOMAIN} discard:\n\
                 {BOUNCE_DOMAIN} bulletin-bounces:\n"
            ),
        )
        .unwrap();
        fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6
config_directory = {r}/etc
queue_directory = {r}/queue
data_directory = {r}/data
meta_directory = /etc/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {r}/postfix.log
maillog_file_prefixes = {r}
myhostname = {RELAY_HOST}
mydomain = bulletin-test.example
myorigin = $myhostname
# Nothing is delivered locally: every domain goes where transport_maps says.
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
# Accept mail for the error domain and bounce it afterwards (by a DSN), as a relay in
# front of a dead mailbox does, instead of refusing it during the SMTP conversation.
smtpd_reject_unlisted_recipient = no
smtpd_peername_lookup = no
transport_maps = texthash:{r}/etc/transport
{deferred_settings}# The DSN goes to the envelope sender only; no postmaster copies.
notify_classes =
"
            ),
        )
        .unwrap();
        fs::write(
            etc.join("master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000 0 flush
proxymap  unix - - n - - proxymap
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
bulletin-bounces unix - n n - - pipe flags=DRq user=nobody argv={pipe_argv} ${{recipient}}
"
            ),
        )
        .unwrap();

        let relay = Self { dir, port };
        let out = Command::new(POSTFIX)
            .arg("-c")
            .arg(&etc)
            .arg("start")
            .output()
            .expect("run postfix start");
        assert!(
            out.status.success(),
            "postfix -c {} start failed ({}): {}{}\n{}",
            etc.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            relay.log()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Postfix did not listen on 127.0.0.1:{port}:\n{}",
                relay.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        relay
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Postfix's own log (maillog_file), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("postfix.log")).unwrap_or_default()
    }

    /// Waits until the pipe transport has delivered `n` messages; panics with the log
    /// after `timeout`.
    pub fn wait_for_piped(&self, n: usize, timeout: Duration) -> Vec<Piped> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut names: Vec<PathBuf> = fs::read_dir(self.path("inbox"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect();
            if names.len() >= n {
                names.sort();
                return names
                    .into_iter()
                    .map(|p| Piped {
                        raw: fs::read(&p).unwrap(),
                        recipient: fs::read_to_string(p.with_extension("rcpt"))
                            .unwrap()
                            .trim()
                            .to_string(),
                    })
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "the pipe transport delivered {} of {n} messages in {timeout:?}:\n{}",
                names.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn master_pid(&self) -> Option<i32> {
        fs::read_to_string(self.path("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for PostfixRelay {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let etc = self.path("etc");
        let stopped = Command::new(POSTFIX)
            .arg("-c")
            .arg(&etc)
            .arg("stop")
            .output()
            .is_ok_and(|o| o.status.success());
        if !stopped {
            let _ = Command::new(POSTFIX)
                .arg("-c")
                .arg(&etc)
                .arg("abort")
                .output();
        }
        // Wait for the master (and so its children) to exit before the folder goes.
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            // SAFETY: kill with signal 0 only checks that the process exists.
            while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Sends one raw message through the relay; `mail_from` None is the null sender `<>`.
fn send_raw(port: u16, mail_from: Option<&str>, to: &str, raw: &str) {
    use lettre::address::Envelope;
    use lettre::Transport;
    let envelope = Envelope::new(
        mail_from.map(|a| a.parse().unwrap()),
        vec![to.parse().unwrap()],
    )
    .unwrap();
    let smtp = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .build();
    smtp.send_raw(&envelope, raw.as_bytes())
        .unwrap_or_else(|e| panic!("the relay refused {to}: {e}"));
}

/// Sends a bulletin-like message with `mail_from` (a VERP address) as envelope sender.
fn send(port: u16, mail_from: &str, to: &str, message_id: &str) {
    let raw = format!(
        "From: Council Bulletin <news@example.org>\r\n\
         To: {to}\r\n\
         Subject: Council session of 30 November\r\n\
         Date: Tue, 01 Dec 2026 01:14:04 +0000\r\n\
         Message-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         The council met on 30 November.\r\n"
    );
    send_raw(port, Some(mail_from), to, &raw);
}

#[test]
fn postfix_bounces_come_back_through_the_pipe_and_classify_to_their_rows() {
    let Some(relay) = relay_or_skip(Deferred::GiveUpAtOnce) else {
        return;
    };
    let verp = Verp::new(
        ReturnPath::parse(&format!("bounces+{{token}}@{BOUNCE_DOMAIN}")).unwrap(),
        VerpKey::new(b"postfix-relay-test-key-0123456789".to_vec()).unwrap(),
    );
    let hard = format!("ana@{HARD_DOMAIN}");
    let soft = format!("bo@{SOFT_DOMAIN}");
    send(
        relay.port,
        &verp.address(501),
        &hard,
        "b1.r501@bulletin.example.org",
    );
    send(
        relay.port,
        &verp.address(502),
        &soft,
        "b1.r502@bulletin.example.org",
    );

    // A vacation responder answering the envelope sender (RFC 3834: from <>).
    let vacation = format!(
        "From: Gao Ming <gao.ming@example.edu>\r\n\
         To: {}\r\n\
         Subject: Re: Council session of 30 November\r\n\
         Date: Tue, 01 Dec 2026 01:14:30 +0000\r\n\
         Message-ID: <vac.1@example.edu>\r\n\
         In-Reply-To: <b1.r503@bulletin.example.org>\r\n\
         Auto-Submitted: auto-replied\r\n\
         \r\n\
         I am on leave until 14 December.\r\n",
        verp.address(503)
    );
    send_raw(relay.port, None, &verp.address(503), &vacation);

    let piped = relay.wait_for_piped(3, Duration::from_secs(30));
    let mut by_row = BTreeMap::new();
    for p in &piped {
        // Postfix delivered each DSN to the VERP address of the message that failed.
        assert!(
            p.recipient.ends_with(&format!("@{BOUNCE_DOMAIN}")),
            "{}",
            p.recipient
        );
        let c = classify(&p.raw, Some(&verp), Some(&p.recipient));
        // The headers alone (Delivered-To, To) name the row too.
        let from_headers = classify(&p.raw, Some(&verp), None);
        assert_eq!(from_headers, c, "{}", String::from_utf8_lossy(&p.raw));
        let row = c
            .row_id
            .unwrap_or_else(|| panic!("no row in {}", String::from_utf8_lossy(&p.raw)));
        by_row.insert(row, c);
    }
    let hard_c = &by_row[&501];
    assert_eq!(hard_c.kind, BounceKind::Hard, "{hard_c:?}");
    assert_eq!(
        hard_c.status.map(|s| s.to_string()).as_deref(),
        Some("5.1.1")
    );
    assert_eq!(hard_c.recipient.as_deref(), Some(hard.as_str()));
    assert_eq!(
        hard_c.message_id.as_deref(),
        Some("b1.r501@bulletin.example.org")
    );
    assert_eq!(hard_c.reporting_mta.as_deref(), Some(RELAY_HOST));
    assert!(
        hard_c
            .diagnostic
            .as_deref()
            .is_some_and(|d| d.contains("no such user")),
        "{hard_c:?}"
    );
    let soft_c = &by_row[&502];
    assert_eq!(soft_c.kind, BounceKind::Soft, "{soft_c:?}");
    assert_eq!(
        soft_c.status.map(|s| s.to_string()).as_deref(),
        Some("4.2.2")
    );
    assert_eq!(soft_c.recipient.as_deref(), Some(soft.as_str()));

    let auto = &by_row[&503];
    assert_eq!(auto.kind, BounceKind::AutoReply, "{auto:?}");
    assert!(!auto.kind.is_bounce());
    assert_eq!(auto.recipient.as_deref(), Some("gao.ming@example.edu"));
    assert_eq!(
        auto.message_id.as_deref(),
        Some("b1.r503@bulletin.example.org")
    );

    // The same DSN checked with another key names no row: a forged token marks nobody.
    let other = Verp::new(
        ReturnPath::parse(&format!("bounces+{{token}}@{BOUNCE_DOMAIN}")).unwrap(),
        VerpKey::new(b"some-other-key-entirely-0123456789".to_vec()).unwrap(),
    );
    for p in &piped {
        let c = classify(&p.raw, Some(&other), Some(&p.recipient));
        assert_eq!(c.row_id, None, "{c:?}");
    }
}

#[test]
fn a_postfix_delay_warning_is_delayed_not_a_bounce() {
    let Some(relay) = relay_or_skip(Deferred::WarnAfterOneSecond) else {
        return;
    };
    let verp = Verp::new(
        ReturnPath::parse(&format!("bounces+{{token}}@{BOUNCE_DOMAIN}")).unwrap(),
        VerpKey::new(b"postfix-relay-test-key-0123456789".to_vec()).unwrap(),
    );
    let slow = format!("cai@{SOFT_DOMAIN}");
    send(
        relay.port,
        &verp.address(504),
        &slow,
        "b1.r504@bulletin.example.org",
    );
    let piped = relay.wait_for_piped(1, Duration::from_secs(30));
    let c = classify(&piped[0].raw, Some(&verp), Some(&piped[0].recipient));
    assert_eq!(c.kind, BounceKind::Delayed, "{c:?}");
    assert!(!c.kind.is_bounce());
    assert_eq!(c.status.map(|s| s.to_string()).as_deref(), Some("4.2.2"));
    assert_eq!(c.recipient.as_deref(), Some(slow.as_str()));
    assert_eq!(c.row_id, Some(504));
    assert_eq!(
        c.message_id.as_deref(),
        Some("b1.r504@bulletin.example.org")
    );
}

/// Issue 15, end to end: a bulletin sent with VERP through the private Postfix; Postfix
/// accepts every recipient, then bounces the hard domain and gives up on the soft one;
/// its DSNs go to each row's VERP address, which its pipe hands to the built
/// `bulletin bounces ingest` with this test's configuration. The hard row ends
/// `bounced` and its address is bounced on every list; the soft bounce is counted and
/// changes nothing yet; the rows delivered stay `sent`; a vacation reply changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulletin_sent_with_verp_bounces_through_the_pipe_into_bulletin_bounces_ingest() {
    use crate::harness::{config_text, Options, TestApp, ADMIN_TOKEN};
    use bulletin::domain::{DeliveryStatus, SubscriberStatus};
    use bulletin::store::DeliveryFilter;

    // The pipe runs as `nobody`: the configuration and key must be readable by it.
    let work = tempfile::tempdir().unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let key = work.path().join("verp.key");
    fs::write(&key, "e2e-verp-key-0123456789abcdef\n").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = work.path().join("bulletin.toml");
    let pipe = format!(
        "{} --config {} bounces ingest - --recipient",
        env!("CARGO_BIN_EXE_bulletin"),
        cfg.display()
    );
    let Some(relay) = relay_or_skip_with(Deferred::GiveUpAtOnce, Some(&pipe)) else {
        return;
    };
    // PostgreSQL: the pipe's process (another user) and this test share the store.
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    let o = Options {
        smtp_port: relay.port,
        store_url: Some(db.url.clone()),
        bounces: Some(format!(
            "[bounces]\nreturn_path = \"bounces+{{token}}@{BOUNCE_DOMAIN}\"\n\
             verp_secret_file = \"{}\"\n",
            key.display()
        )),
        ..Default::default()
    };
    let text = config_text(&work.path().join("unused.db"), &o);
    fs::write(&cfg, &text).unwrap();
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
    let config = bulletin::config::Config::parse(&text, &cfg, &|n: &str| {
        (n == "BULLETIN_ADMIN_TOKEN").then(|| ADMIN_TOKEN.to_string())
    })
    .unwrap();
    let verp = config.bounces.verp.clone().expect("VERP configured");
    let clock = bulletin::clock::ManualClock::new(chrono::Utc::now());
    let app = bulletin::app::App::build_with_clock(config, std::sync::Arc::new(clock.clone()))
        .await
        .unwrap();
    let t = TestApp {
        app,
        clock,
        dir: work,
    };

    let ana = format!("ana@{HARD_DOMAIN}");
    let bo = format!("bo@{OK_DOMAIN}");
    let cai = format!("cai@{OK_DOMAIN}");
    let dan = format!("dan@{SOFT_DOMAIN}");
    let partners = t
        .list_with(
            "partners",
            &[(&ana, None), (&bo, None), (&cai, None), (&dan, None)],
        )
        .await;
    let staff = t.list_with("staff", &[(&ana, None)]).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let report = t.app.run_pending(None).await.unwrap();
    assert_eq!(report.sent, 4, "{report:?}\n{}", relay.log());

    let ops = t.app.ops();
    let wait_for_bounces = |n: usize| {
        let ops = ops.clone();
        let relay = &relay;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let got = ops.bounces(None, 100).await.unwrap();
                if got.len() >= n {
                    return got;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {n} bounces ingested:\n{}",
                    got.len(),
                    relay.log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let got = wait_for_bounces(2).await;
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let row = |who: &str| rows.iter().find(|r| r.recipient == who).unwrap().clone();
    let status_now = |who: String| {
        let store = t.app.store.clone();
        async move { store.delivery(row(&who).id).await.unwrap().unwrap().status }
    };
    let subscribers = |list: i64| {
        let store = t.app.store.clone();
        async move {
            store
                .subscribers_page(list, 0, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|s| (s.email, s.status))
                .collect::<BTreeMap<_, _>>()
        }
    };

    let hard = got
        .iter()
        .find(|b| b.kind == BounceKind::Hard)
        .unwrap_or_else(|| panic!("no hard bounce in {got:?}"));
    assert_eq!(hard.delivery_id, Some(row(&ana).id), "{hard:?}");
    assert_eq!(hard.status_code.as_deref(), Some("5.1.1"));
    let soft = got
        .iter()
        .find(|b| b.kind == BounceKind::Soft)
        .unwrap_or_else(|| panic!("no soft bounce in {got:?}"));
    assert_eq!(soft.delivery_id, Some(row(&dan).id), "{soft:?}");

    assert_eq!(status_now(ana.clone()).await, DeliveryStatus::Bounced);
    for who in [&bo, &cai, &dan] {
        assert_eq!(status_now(who.clone()).await, DeliveryStatus::Sent, "{who}");
    }
    let p = subscribers(partners).await;
    assert_eq!(p[&ana], SubscriberStatus::Bounced);
    for who in [&bo, &cai, &dan] {
        assert_eq!(p[who], SubscriberStatus::Active, "{who}: {p:?}");
    }
    assert_eq!(subscribers(staff).await[&ana], SubscriberStatus::Bounced);

    // A vacation reply to bo's envelope sender, through the same pipe: recorded as an
    // auto-reply matched to bo's row, and nothing changes.
    let vacation = format!(
        "From: Bo <{bo}>\r\n\
         To: {}\r\n\
         Subject: Out of office: {}\r\n\
         Date: Tue, 01 Dec 2026 01:14:30 +0000\r\n\
         Message-ID: <vac.2@{OK_DOMAIN}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         \r\n\
         I am on leave until 14 December.\r\n",
        verp.address(row(&bo).id),
        "Bulletin"
    );
    send_raw(relay.port, None, &verp.address(row(&bo).id), &vacation);
    let got = wait_for_bounces(3).await;
    let auto = got
        .iter()
        .find(|b| b.kind == BounceKind::AutoReply)
        .unwrap_or_else(|| panic!("no auto-reply in {got:?}"));
    assert_eq!(auto.delivery_id, Some(row(&bo).id), "{auto:?}");
    assert_eq!(status_now(bo.clone()).await, DeliveryStatus::Sent);
    assert_eq!(subscribers(partners).await[&bo], SubscriberStatus::Active);
    // Every message is kept whole.
    for b in &got {
        let raw = t.app.store.bounce_raw(b.id).await.unwrap().unwrap();
        assert_eq!(raw.len() as i64, b.size);
        assert!(raw.len() > 100, "{b:?}");
    }
}
