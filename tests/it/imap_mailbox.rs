//! The IMAP bounce path (issue 15) against a real IMAP server: a private Dovecot instance
//! (its own configuration and state in a temporary folder, IMAP on a free loopback port,
//! one passwd-file user, a maildir) started and stopped by the test. Messages are
//! delivered into the maildir as an MTA's maildir delivery would (a file in `new/`); the
//! daemon's poller reads them over IMAP. The maildir is read afterwards to see where each
//! message went and with which flags.

use crate::harness::{free_port, spawn_app, Options, IMAP_PASSWORD};
use bulletin::domain::{DeliveryStatus, SubscriberStatus};
use bulletin::store::DeliveryFilter;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOVECOT: &str = "/usr/sbin/dovecot";
const USER: &str = "bounces";

/// Why a private Dovecot cannot run here, if it cannot: as another user than root it
/// cannot switch to the mail user or chroot its login processes (it says "Fatal:
/// setgid(...) failed ... Operation not permitted"). A missing package is an
/// installation to make.
fn cannot_run() -> Option<String> {
    assert!(
        Path::new(DOVECOT).exists(),
        "Dovecot is not installed, so the IMAP bounce test cannot run. Run `tests/run` \
         (it installs the `dovecot-imapd` package) or `apt-get install dovecot-imapd`."
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return None;
    }
    Some(format!(
        "a private Dovecot instance needs root (to run its mail processes as `nobody` and \
         chroot its login processes), and this is uid {euid}"
    ))
}

/// The server, or None after saying SKIPPED when it cannot run here and
/// BULLETIN_SKIP_DOVECOT=1 asks to skip knowingly; otherwise the test fails rather than
/// pass without having run (CI runs as root).
fn dovecot_or_skip() -> Option<Dovecot> {
    if let Some(why) = cannot_run() {
        if std::env::var_os("BULLETIN_SKIP_DOVECOT").is_some() {
            eprintln!("SKIPPED (BULLETIN_SKIP_DOVECOT): IMAP bounce test: {why}");
            return None;
        }
        panic!("{why}; run as root, or set BULLETIN_SKIP_DOVECOT=1 to skip it knowingly");
    }
    Some(Dovecot::start())
}

/// A running private Dovecot; stopped on drop.
struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

fn id_of(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").arg(flag).arg(name).output().unwrap();
    assert!(out.status.success(), "id {flag} {name}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl Dovecot {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = dir.path();
        fs::set_permissions(r, fs::Permissions::from_mode(0o755)).unwrap();
        let (uid, gid) = (id_of("-u", "nobody"), id_of("-g", "nobody"));
        let home = r.join("home");
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(home.join("Maildir").join(sub)).unwrap();
        }
        for d in ["run", "state"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        let chown = Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(&home)
            .status()
            .unwrap();
        assert!(chown.success());
        fs::write(
            r.join("passwd"),
            format!("{USER}:{{PLAIN}}{IMAP_PASSWORD}::::::\n"),
        )
        .unwrap();
        let port = free_port();
        let d = r.display();
        fs::write(
            r.join("dovecot.conf"),
            format!(
                "base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"
            ),
        )
        .unwrap();
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(r.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dovecot");
        let d = Self { dir, child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Dovecot did not listen on 127.0.0.1:{port}:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("home/Maildir")
    }

    /// Delivers a message as an MTA's maildir delivery does: written in `tmp/`, then
    /// renamed into `new/`, owned by the mail user.
    fn deliver(&self, name: &str, raw: &str) {
        let tmp = self.maildir().join("tmp").join(name);
        fs::write(&tmp, raw).unwrap();
        let chown = Command::new("chown")
            .arg("nobody:nogroup")
            .arg(&tmp)
            .status()
            .unwrap();
        assert!(chown.success());
        fs::rename(&tmp, self.maildir().join("new").join(name)).unwrap();
    }

    /// Every message file of a folder (`""`: INBOX; else `.Name`): its content and the
    /// maildir flags in its name (after `:2,`; none while it is in `new/`).
    fn folder(&self, folder: &str) -> Vec<(String, String)> {
        let base = self.maildir().join(folder);
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(base.join(sub)) else {
                continue;
            };
            for e in entries {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                let flags = name
                    .split_once(":2,")
                    .map(|x| x.1.to_string())
                    .unwrap_or_default();
                out.push((fs::read_to_string(&p).unwrap(), flags));
            }
        }
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM: the master stops its children and exits.
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Postfix-style DSN: the hard bounce (5.1.1) of `rcpt` for the message `to_mid`.
pub fn dsn(to_mid: &str, rcpt: &str) -> String {
    format!(
        "Return-Path: <>\r\n\
         From: Mail Delivery System <MAILER-DAEMON@relay.example.net>\r\n\
         To: <bounces@example.org>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: Tue, 01 Dec 2026 01:15:00 +0000\r\n\
         Message-ID: <dsn.1@relay.example.net>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; relay.example.net\r\n\
         \r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Original-Recipient: rfc822; {rcpt}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: no such user\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         From: Council Bulletin <news@example.org>\r\n\
         To: {rcpt}\r\n\
         Subject: Council session\r\n\
         Message-ID: {to_mid}\r\n\
         \r\n\
         --B1--\r\n"
    )
}

fn arf(to_mid: &str, rcpt: &str) -> String {
    format!(
        "From: Feedback Loop <fbl@mail.example.net>\r\n\
         To: <bounces@example.org>\r\n\
         Subject: FW: Council session\r\n\
         Date: Tue, 01 Dec 2026 02:00:00 +0000\r\n\
         Message-ID: <fbl.1@mail.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"B2\"\r\n\
         \r\n\
         --B2\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         This is an email abuse report.\r\n\
         \r\n\
         --B2\r\n\
         Content-Type: message/feedback-report\r\n\
         \r\n\
         Feedback-Type: abuse\r\n\
         User-Agent: ExampleFBL/2.1\r\n\
         Version: 1\r\n\
         Original-Rcpt-To: <{rcpt}>\r\n\
         \r\n\
         --B2\r\n\
         Content-Type: message/rfc822\r\n\
         \r\n\
         From: Council Bulletin <news@example.org>\r\n\
         To: {rcpt}\r\n\
         Subject: Council session\r\n\
         Message-ID: {to_mid}\r\n\
         \r\n\
         The council met.\r\n\
         \r\n\
         --B2--\r\n"
    )
}

fn vacation(to_mid: &str, from: &str) -> String {
    format!(
        "From: <{from}>\r\n\
         To: <bounces@example.org>\r\n\
         Subject: Out of office: Council session\r\n\
         Date: Tue, 01 Dec 2026 01:16:00 +0000\r\n\
         Message-ID: <vac.1@example.edu>\r\n\
         In-Reply-To: {to_mid}\r\n\
         Auto-Submitted: auto-replied\r\n\
         \r\n\
         I am on leave until 14 December.\r\n"
    )
}

const PERSON: &str = "From: Li Wei <li.wei@example.edu>\r\n\
    To: <bounces@example.org>\r\n\
    Subject: Question about the next session\r\n\
    Date: Tue, 01 Dec 2026 03:00:00 +0000\r\n\
    Message-ID: <person.1@example.edu>\r\n\
    \r\n\
    Hello, could you tell me when the next session is? Thanks.\r\n";

/// Issue 15's IMAP path end to end: a DSN, an ARF complaint, a vacation reply and a
/// person's mail land in the bounce mailbox of a real Dovecot; one poll records the
/// three reports through the ingest path (the hard-bounced row `bounced` and its
/// subscriber marked, the complainer unsubscribed, the vacation changing nothing) and
/// moves exactly those three to `Processed`, which it creates; the person's mail stays
/// in INBOX, unseen. A second poll changes nothing. The pipe then ingesting the same DSN
/// finds it already recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_records_and_moves_bounces_and_leaves_a_persons_mail_unseen() {
    let Some(dovecot) = dovecot_or_skip() else {
        return;
    };
    let sink = crate::harness::SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        bounces: Some(format!(
            "[bounces.imap]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             user = \"{USER}\"\ninterval_seconds = 3600\n",
            dovecot.port
        )),
        ..Default::default()
    })
    .await;
    let list = t
        .list_with(
            "partners",
            &[
                ("gone@example.net", None),
                ("angry@example.net", None),
                ("away@example.net", None),
                ("fine@example.net", None),
            ],
        )
        .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let report = t.app.run_pending(None).await.unwrap();
    assert_eq!(report.sent, 4, "{report:?}");
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let row = |who: &str| rows.iter().find(|r| r.recipient == who).unwrap().clone();
    let mid = |who: &str| row(who).message_id.expect("a Message-ID");

    dovecot.deliver("1.dsn", &dsn(&mid("gone@example.net"), "gone@example.net"));
    dovecot.deliver(
        "2.arf",
        &arf(&mid("angry@example.net"), "angry@example.net"),
    );
    dovecot.deliver(
        "3.vacation",
        &vacation(&mid("away@example.net"), "away@example.net"),
    );
    dovecot.deliver("4.person", PERSON);

    let poller = t.app.mailbox.clone().expect("[bounces.imap] configured");
    let r = poller
        .poll_now()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log()));
    assert_eq!(
        (r.fetched, r.recorded, r.moved, r.left, r.not_recorded),
        (4, 3, 3, 1, 0),
        "{r:?}"
    );

    // The store: the hard bounce's row bounced, its address marked; the complainer
    // unsubscribed; the vacation recorded, changing nothing.
    let status = |who: &str| {
        let store = t.app.store.clone();
        let id = row(who).id;
        async move { store.delivery(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status("gone@example.net").await, DeliveryStatus::Bounced);
    for who in ["angry@example.net", "away@example.net", "fine@example.net"] {
        assert_eq!(status(who).await, DeliveryStatus::Sent, "{who}");
    }
    let subs: BTreeMap<String, SubscriberStatus> = t
        .app
        .store
        .subscribers_page(list, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.email, s.status))
        .collect();
    assert_eq!(subs["gone@example.net"], SubscriberStatus::Bounced);
    assert_eq!(subs["angry@example.net"], SubscriberStatus::Unsubscribed);
    assert_eq!(subs["away@example.net"], SubscriberStatus::Active);
    assert_eq!(subs["fine@example.net"], SubscriberStatus::Active);
    let bounces = t.app.ops().bounces(None, 10).await.unwrap();
    let mut kinds: Vec<String> = bounces.iter().map(|b| b.kind.to_string()).collect();
    kinds.sort();
    assert_eq!(kinds, ["auto_reply", "complaint", "hard"], "{bounces:?}");
    let hard = bounces
        .iter()
        .find(|b| b.kind == bulletin::bounce::BounceKind::Hard)
        .unwrap();
    assert_eq!(hard.delivery_id, Some(row("gone@example.net").id));
    assert!(bounces
        .iter()
        .all(|b| b.source == bulletin::store::BounceSource::Imap));

    // The mailbox: the three reports in Processed, the person's mail alone in INBOX and
    // unseen (no S flag).
    let processed = dovecot.folder(".Processed");
    assert_eq!(processed.len(), 3, "{processed:?}\n{}", dovecot.log());
    for needle in ["<dsn.1@", "<fbl.1@", "<vac.1@"] {
        assert!(
            processed.iter().any(|(m, _)| m.contains(needle)),
            "{needle} not in Processed"
        );
    }
    let inbox = dovecot.folder("");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(inbox[0].0.contains("<person.1@example.edu>"));
    assert!(
        !inbox[0].1.contains('S'),
        "the person's mail was marked seen: {inbox:?}"
    );

    // A second poll reads nothing new and changes nothing.
    let again = poller.poll_now().await.unwrap();
    assert_eq!(again, bulletin::mailbox::PollReport::default(), "{again:?}");
    assert_eq!(t.app.ops().bounces(None, 10).await.unwrap().len(), 3);
    assert_eq!(dovecot.folder(".Processed").len(), 3);
    let inbox = dovecot.folder("");
    assert_eq!(inbox.len(), 1);
    assert!(!inbox[0].1.contains('S'), "{inbox:?}");

    // The same DSN through the pipe too: already recorded, nothing changes.
    let dup = t
        .app
        .ops()
        .ingest_bounce(
            dsn(&mid("gone@example.net"), "gone@example.net").as_bytes(),
            bulletin::store::BounceSource::Ingest,
            None,
        )
        .await
        .unwrap();
    assert!(dup.recorded.duplicate, "{dup:?}");
    assert_eq!(dup.recorded.id, hard.id);
    assert_eq!(t.app.ops().bounces(None, 10).await.unwrap().len(), 3);
}

/// A store that cannot record (its bounces table gone for a while, on PostgreSQL) leaves
/// the message in the mailbox for the next poll; once the store records again, the next
/// poll records and moves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_leaves_the_bounce_in_place_for_the_next_poll() {
    let Some(dovecot) = dovecot_or_skip() else {
        return;
    };
    let Some(db) = crate::pg::fresh().await else {
        return;
    };
    let t = spawn_app(Options {
        store_url: Some(db.url.clone()),
        bounces: Some(format!(
            "[bounces.imap]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             user = \"{USER}\"\nprocessed_folder = \"Done\"\n",
            dovecot.port
        )),
        ..Default::default()
    })
    .await;
    dovecot.deliver(
        "1.dsn",
        &dsn("<x.1@bulletin.example.org>", "gone@example.net"),
    );
    let poller = t.app.mailbox.clone().unwrap();
    db.exec("ALTER TABLE bounces RENAME TO bounces_away").await;
    let r = poller.poll_now().await.unwrap();
    assert_eq!((r.fetched, r.not_recorded, r.moved), (1, 1, 0), "{r:?}");
    assert_eq!(dovecot.folder("").len(), 1, "left in INBOX");
    assert!(dovecot.folder(".Done").is_empty());
    db.exec("ALTER TABLE bounces_away RENAME TO bounces").await;
    let r = poller.poll_now().await.unwrap();
    assert_eq!((r.fetched, r.recorded, r.moved), (1, 1, 1), "{r:?}");
    assert_eq!(dovecot.folder(".Done").len(), 1);
    assert!(dovecot.folder("").is_empty());
    assert_eq!(t.app.ops().bounces(None, 10).await.unwrap().len(), 1);
}
