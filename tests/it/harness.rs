//! Test harness: `spawn_app()` builds the real application on a fresh store in a temp
//! folder, with a `ManualClock`, pointed at a real SMTP server (`SmtpSink`, Postfix's
//! smtp-sink on a free loopback port, dumping every message it accepts to files).

use bulletin::app::App;
use bulletin::clock::ManualClock;
use bulletin::config::Config;
use bulletin::domain::subscriber::NewSubscriber;
use bulletin::domain::ListName;
use chrono::{TimeZone, Utc};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The admin bearer token every test app is configured with (as if from BULLETIN_ADMIN_TOKEN).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The bounce webhook's secret (BULLETIN_BOUNCE_WEBHOOK_SECRET) when a test's
/// `[bounces.webhook]` section takes it from the environment.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";

/// The IMAP password (BULLETIN_IMAP_PASSWORD) of a test's `[bounces.imap]` section.
pub const IMAP_PASSWORD: &str = "test-imap-password-42";

pub const SEED_RECORD: &str = "config/examples/records/lmc-2020-parallel-session-2.toml";

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn smtp_sink_binary() -> PathBuf {
    for p in ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "Postfix's smtp-sink is not installed, so the SMTP tests cannot run. \
         Run `tests/run` (it installs the `postfix` package) or `apt-get install postfix`."
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A message as smtp-sink received it.
pub struct Received {
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("a parsable message")
    }
}

/// Postfix's smtp-sink: a real SMTP server that accepts and dumps every message.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dump: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::start_on(free_port(), &[])
    }

    /// Starts on `port`, with extra smtp-sink flags (e.g. `-R`, `-Q`).
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let bin = smtp_sink_binary();
        let dump = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dump.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let mut cmd = Command::new(bin);
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.arg("-d")
            .arg(format!("{}/m.", dump.path().display()))
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dump }
    }

    /// aiosmtpd with a per-recipient policy (tests/smtpd/policy.py): `hard*` addresses get
    /// 550 on RCPT, `soft*` get 450 once, the rest are accepted, in the same session.
    pub fn policy() -> Self {
        Self::policy_with(&[])
    }

    /// [`Self::policy`] with extra environment for policy.py (e.g. `POLICY_ONE_EHLO`).
    pub fn policy_with(env: &[(&str, &str)]) -> Self {
        let ok = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "Python's aiosmtpd is not installed, so the per-recipient SMTP tests cannot run. \
             Run `tests/run` (it installs it) or `pip install aiosmtpd`."
        );
        let port = free_port();
        let dump = tempfile::tempdir().unwrap();
        let child = Command::new("python3")
            .envs(env.iter().copied())
            .arg(repo_path("tests/smtpd/policy.py"))
            .arg(port.to_string())
            .arg(dump.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dump }
    }

    /// Messages received so far (complete dumps only), in the order they arrived.
    pub fn messages(&self) -> Vec<Received> {
        let mut out = Vec::new();
        let mut paths: Vec<_> = std::fs::read_dir(self.dump.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_none_or(|x| x != "tmp"))
            .collect();
        // In the order the server finished writing them. Each time is read once: the
        // server may still be writing (or deleting) a file while we sort.
        paths.sort_by_cached_key(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        });
        for p in paths {
            // smtp-sink deletes the dump of a transaction its client abandoned (a killed
            // daemon): a file listed a moment ago may be gone.
            let Ok(raw) = std::fs::read(&p) else { continue };
            let text = String::from_utf8_lossy(&raw);
            let recipients = text
                .lines()
                .take_while(|l| l.starts_with("X-"))
                .filter_map(|l| l.strip_prefix("X-Rcpt-Args: <"))
                .map(|l| l.trim_end_matches('>').to_string())
                .collect();
            out.push(Received { recipients, raw });
        }
        out
    }

    /// Waits (bounded) until `n` messages have been dumped.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The application under test.
pub struct TestApp {
    pub app: App,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

pub struct Options {
    pub smtp_port: u16,
    pub mode: &'static str,
    pub extra: &'static str,
    pub channels: &'static str,
    /// A `[wechat]` section, if any.
    pub wechat: Option<String>,
    /// email.smtp.timeout_seconds
    pub smtp_timeout: u64,
    /// email.smtp.data_timeout_seconds; None: the same as `smtp_timeout`.
    pub data_timeout: Option<u64>,
    /// More lines for `[email.smtp]`.
    pub smtp_extra: &'static str,
    /// The store URL; None: SQLite in the test folder.
    pub store_url: Option<String>,
    /// A `[bounces]` section, if any.
    pub bounces: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            smtp_port: 25,
            mode: "per_record",
            extra: "",
            channels: r#"["email"]"#,
            wechat: None,
            smtp_timeout: 5,
            data_timeout: None,
            smtp_extra: "",
            store_url: None,
            bounces: None,
        }
    }
}

pub fn config_text(store: &Path, o: &Options) -> String {
    format!(
        r#"
[store]
url = "{store}"

[publisher]
names = ["Lancang-Mekong Environmental Cooperation Center", "Foreign Environmental Cooperation Center"]
address = ["No. 5 Houyingfang Hutong,", "Xicheng District, Beijing 100035, P.R. China"]
phone = "+86-010-82268277/8221"
fax = "+86-010-82200579"
emails = ["tang.huaqing@fecomee.org.cn", "li.xia@fecomee.org.cn"]
website = "http://www.mepfeco.org.cn"
wechat_id = "lancang-mekongec"

[email]
from = "LMEC Bulletin <bulletin@example.org>"
transport = "smtp"
[email.smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
pool_size = 2
timeout_seconds = {smtp_timeout}
data_timeout_seconds = {data_timeout}
{smtp_extra}

[unsubscribe]
base_url = "https://news.example.org"

[delivery]
retry_base_seconds = 60
max_attempts = 5
{extra}

[[schedules]]
name = "weekday-morning"
cron = "0 0 9 * * Mon-Fri"
timezone = "Asia/Shanghai"
lists = ["partners"]
mode = "{mode}"
channels = {channels}

{wechat}

{bounces}
"#,
        store = o
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", store.display())),
        port = o.smtp_port,
        mode = o.mode,
        extra = o.extra,
        channels = o.channels,
        wechat = o.wechat.as_deref().unwrap_or(""),
        bounces = o.bounces.as_deref().unwrap_or(""),
        smtp_timeout = o.smtp_timeout,
        data_timeout = o.data_timeout.unwrap_or(o.smtp_timeout),
        smtp_extra = o.smtp_extra,
    )
}

/// Starts the real application on a fresh store. The clock starts on a Monday 00:00 UTC.
pub async fn spawn_app(o: Options) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap());
    let app = build_app(dir.path(), &o, &clock).await;
    TestApp { app, clock, dir }
}

/// Builds an `App` on the store in `dir` (again: a restart of the daemon on the same store).
pub async fn build_app(dir: &Path, o: &Options, clock: &ManualClock) -> App {
    let text = config_text(&dir.join("bulletin.db"), o);
    let env = |name: &str| match name {
        "BULLETIN_WECHAT_SECRET" => Some(crate::fake_wechat::SECRET.to_string()),
        "BULLETIN_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_string()),
        "BULLETIN_BOUNCE_WEBHOOK_SECRET" => Some(WEBHOOK_SECRET.to_string()),
        "BULLETIN_IMAP_PASSWORD" => Some(IMAP_PASSWORD.to_string()),
        _ => None,
    };
    let config = Config::parse(&text, Path::new("test.toml"), &env).expect("test config is valid");
    App::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .unwrap()
}

/// The admin and public HTTP servers of a test app, on loopback ports chosen by the OS.
pub struct Http {
    pub admin: String,
    pub public: String,
    pub client: reqwest::Client,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Http {
    /// An authorised request to the admin API.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
    }
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Starts the real admin and public routers on 127.0.0.1:0 (no scheduler or
    /// dispatcher: tests call `run_pending` to send).
    pub async fn start_http(&self) -> Http {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let ctx = self.app.http_context();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let urls = (
            format!("http://{}", admin.local_addr().unwrap()),
            format!("http://{}", public.local_addr().unwrap()),
        );
        tokio::spawn(bulletin::http::serve(
            admin,
            bulletin::http::admin_router(ctx.clone()),
            shutdown.clone(),
        ));
        tokio::spawn(bulletin::http::serve(
            public,
            bulletin::http::public_router(ctx),
            shutdown.clone(),
        ));
        Http {
            admin: urls.0,
            public: urls.1,
            // Loopback only: never through a proxy from the environment.
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            shutdown,
        }
    }

    pub async fn import(&self, path: &Path) -> String {
        self.app
            .import_record_file(path)
            .await
            .expect("record imports")
            .0
    }

    pub async fn import_seed_approved(&self) -> String {
        let id = self.import(&repo_path(SEED_RECORD)).await;
        self.app
            .store
            .approve_record(&id, "approver", self.clock_now())
            .await
            .unwrap();
        id
    }

    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        use bulletin::clock::Clock;
        self.clock.now()
    }

    /// Creates `list` with the given (email, name) subscribers; returns its id.
    pub async fn list_with(&self, list: &str, people: &[(&str, Option<&str>)]) -> i64 {
        let name = ListName::parse(list).unwrap();
        self.app
            .store
            .create_list(&name, "", self.clock_now())
            .await
            .unwrap();
        let id = self.app.store.list(&name).await.unwrap().unwrap().id;
        let subs: Vec<_> = people
            .iter()
            .map(|(e, n)| NewSubscriber::parse(e, *n, None).unwrap())
            .collect();
        self.app
            .store
            .upsert_subscribers(id, &subs, self.clock_now())
            .await
            .unwrap();
        id
    }

    /// Writes a record file into the test folder and returns its path.
    pub fn write_record(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    }
}

/// A small valid record, for tests that need one that is not the seed.
pub fn small_record(id: &str, title: &str) -> String {
    format!(
        r#"id = "{id}"
title = "{title}"
event = "Lancang-Mekong Roundtable"
session = "Session {id}"
held_on = 2026-02-27
format = "in-person"
venue = "Kunming"
summary = "Summary of {id}."
attendees = "Delegates."
topics = ["Water"]
"#
    )
}

/// A claimed e-mail row to `reader@example.org` (list 1, subscriber 9), for tests that
/// drive a channel directly.
pub fn email_row(id: i64) -> bulletin::store::Claimed {
    let now = Utc::now();
    bulletin::store::Claimed {
        id,
        bulletin_id: 1,
        channel: bulletin::domain::ChannelKind::Email,
        recipient: "reader@example.org".into(),
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
    }
}

/// Delivers one row through an outbox channel and returns the one file it wrote.
pub async fn deliver_to_outbox(
    channel: &bulletin::channel::email::EmailChannel,
    bulletin: &bulletin::channel::PreparedBulletin,
    row: &bulletin::store::Claimed,
    outbox: &Path,
) -> Vec<u8> {
    use bulletin::channel::Channel;
    channel
        .deliver(bulletin::channel::Job {
            delivery: row,
            bulletin,
        })
        .await
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::read(&files[0]).unwrap()
}
