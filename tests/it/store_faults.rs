//! Fault test 7 of issue 5, with the real binary on a real SQLite file: a store on a
//! read-only or a full disk (a real tmpfs, mounted for the test) gives a clear error at
//! start that names the file and what is wrong, and leaves a store that works once the
//! disk is fixed; a second daemon on the same store refuses to run, while the other
//! commands keep working beside the first. Issue 18, items 5 and 6: a disk that fills
//! while the daemon runs fails writes (and `/readyz`) only until space is freed, with no
//! restart; `/readyz` notices the store file being deleted or replaced.

use crate::crash::{cli, daemon_config, run_ok, start_serve};
use crate::harness::{spawn_app, Options, SmtpSink};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tmpfs of a given size mounted on a fresh folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one, or says why it cannot: mounting needs root (CI runs as root). With
    /// `BULLETIN_SKIP_MOUNT_TESTS=1` a test that needs it says so and stops; otherwise it
    /// fails rather than pass without having run.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        if out.status.success() {
            return Some(Self { dir });
        }
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if std::env::var_os("BULLETIN_SKIP_MOUNT_TESTS").is_some() {
            eprintln!("SKIPPED (BULLETIN_SKIP_MOUNT_TESTS): cannot mount a tmpfs: {why}");
            return None;
        }
        panic!(
            "this test mounts a small tmpfs to make a real read-only or full disk, and mount \
             failed ({why}); run it as root, or set BULLETIN_SKIP_MOUNT_TESTS=1 to skip it knowingly"
        );
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(ok.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

/// Runs a command that must fail; returns its standard error.
fn run_err(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

fn lists(config: &Path) -> Vec<String> {
    let v: Value =
        serde_json::from_str(&run_ok(cli(config).args(["lists", "all", "--json"]))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

/// The configuration lives outside the mount; the store inside it.
fn setup(mount: &Tmpfs) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = mount.path().join("b.db");
    let (config, _) = daemon_config(dir.path(), &db, 25, "pool_size = 2", "");
    (dir, config, db)
}

#[test]
fn a_read_only_disk_is_named_at_start_and_changes_nothing() {
    let Some(mount) = Tmpfs::mount("2m") else {
        return;
    };
    let (_dir, config, db) = setup(&mount);
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    mount.remount("ro");

    for args in [
        &["serve", "--once"][..],
        &["lists", "create", "press"][..],
        &["deliveries"][..],
    ] {
        let err = run_err(cli(&config).args(args));
        assert!(
            err.contains(&format!(
                "the store file {} cannot be opened for writing",
                db.display()
            )) && err.contains("read-only"),
            "{args:?}: {err}"
        );
    }

    mount.remount("rw");
    assert_eq!(lists(&config), ["partners"], "nothing changed");
}

#[test]
fn a_read_only_folder_is_named_even_when_the_file_is_writable() {
    // Run as an unprivileged user where the test is root, so permissions apply.
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    let db = store_dir.join("b.db");
    let (config, _) = daemon_config(dir.path(), &db, 25, "pool_size = 2", "");
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(dir.path(), 0o755).unwrap();
    mode(&config, 0o644).unwrap();
    mode(&db, 0o666).unwrap();
    mode(&store_dir, 0o555).unwrap();
    let mut c = cli(&config);
    c.args(["serve", "--once"]);
    if is_root() {
        use std::os::unix::process::CommandExt;
        c.uid(65534).gid(65534);
    }
    let err = run_err(&mut c);
    assert!(
        err.contains(&format!(
            "the store folder {} cannot be written",
            store_dir.display()
        )) && err.contains("-wal and -shm"),
        "{err}"
    );
    mode(&store_dir, 0o755).unwrap();
    assert_eq!(lists(&config), ["partners"]);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn a_full_disk_is_named_at_start_and_leaves_a_store_that_works_after() {
    // A fresh store on a disk too small for its tables: the migration is refused whole.
    let Some(tiny) = Tmpfs::mount("64k") else {
        return;
    };
    let (_dir, config, db) = setup(&tiny);
    let err = run_err(cli(&config).args(["store", "init"]));
    assert!(
        err.contains(&format!("cannot prepare the store at {}", db.display()))
            && err.contains("the disk holding it is full"),
        "{err}"
    );
    assert!(
        !db.exists(),
        "a store that could not be prepared is not left behind"
    );
    tiny.remount("size=4m");
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    assert_eq!(
        lists(&config),
        ["partners"],
        "the store works once there is room"
    );

    // An existing store on a disk that filled up: `serve` refuses to start.
    let filler = tiny.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    // Whichever notices first (SQLite, which needs room for its -shm file, or the daemon's
    // own check of the free space) names the store and says the disk is full.
    let err = run_err(cli(&config).args(["serve", "--once"]));
    assert!(
        (err.contains(&format!("the disk holding the store {}", db.display()))
            && err.contains("bytes free"))
            || (err.contains(&format!("cannot open the store at {}", db.display()))
                && err.contains("the disk holding it is full")),
        "{err}"
    );
    // A write from the CLI is refused whole. (Depending on whether SQLite still has room
    // for its -shm file, the store does not open, or the write itself fails.)
    let err = run_err(cli(&config).args(["lists", "create", "press"]));
    assert!(
        err.contains("the disk holding it is full") || err.contains("database or disk is full"),
        "{err}"
    );

    std::fs::remove_file(&filler).unwrap();
    run_ok(cli(&config).args(["serve", "--once"]));
    run_ok(cli(&config).args(["lists", "create", "press"]));
    assert_eq!(lists(&config), ["partners", "press"]);
}

#[test]
fn a_second_daemon_on_the_same_store_refuses_and_the_cli_works_beside_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let (config, public) = daemon_config(dir.path(), &db, 25, "pool_size = 2", "");
    let mut first = start_serve(&config, public);

    for args in [&["serve"][..], &["serve", "--once"][..]] {
        let out = cli(&config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let out = out.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} ran beside the first: {err}"
        );
        assert!(
            err.contains(&format!(
                "another `bulletin serve` is already running on the store {}",
                db.display()
            )) && err.contains(&format!("process {}", first.id())),
            "{args:?}: {err}"
        );
    }
    // Everything else works beside the daemon.
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    run_ok(cli(&config).args(["lists", "add", "partners", "a@example.org"]));
    run_ok(cli(&config).args(["deliveries"]));
    run_ok(cli(&config).args(["status"]));

    // The lock dies with its holder, even by kill -9: the next start runs.
    first.kill9();
    assert!(db.with_file_name("b.db.lock").exists());
    let mut second = start_serve(&config, public);
    assert!(second.still_running(), "the restart runs");
    second.kill9();
}

/// Fills the file system holding `path` to the last byte (tmpfs allocates whole pages, so
/// after the large writes, page-sized ones take the rest).
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [vec![0u8; 64 * 1024], vec![0u8; 4096], vec![0u8; 512]] {
        while f.write_all(&chunk).and_then(|_| f.flush()).is_ok() {}
    }
    let _ = f.sync_all();
}

/// The `/readyz` answer: status and body.
async fn readyz(http: &crate::harness::Http) -> (u16, String) {
    let r = http.get("/readyz").send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_while_running_fails_writes_until_freed_then_sending_resumes() {
    let Some(mount) = Tmpfs::mount("8m") else {
        return;
    };
    let sink = SmtpSink::start();
    let db = mount.path().join("b.db");
    let t = spawn_app(Options {
        smtp_port: sink.port,
        store_url: Some(format!("sqlite://{}", db.display())),
        ..Default::default()
    })
    .await;
    t.list_with(
        "partners",
        &[("a@example.org", None), ("b@example.org", None)],
    )
    .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let http = t.start_http().await;
    assert_eq!(readyz(&http).await.0, 200);

    // Empty the write-ahead log (so the next write needs new room), then fill the disk.
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let filler = mount.path().join("filler");
    fill(&filler);

    // A pass cannot claim (its commit finds no room), and /readyz says why.
    for pass in 0..3 {
        let err = t.app.run_pending(None).await.unwrap_err().to_string();
        assert!(
            err.contains("full") && !err.contains("transaction depth"),
            "pass {pass}: {err}"
        );
        let (status, body) = readyz(&http).await;
        assert_eq!(status, 503, "pass {pass}: {body}");
        assert!(
            body.contains("store writes are failing") && body.contains("full"),
            "{body}"
        );
    }

    // Room again: the same process sends, without a restart, and is ready again.
    std::fs::remove_file(&filler).unwrap();
    let report = t.app.run_pending(None).await.unwrap();
    assert_eq!(report.sent, 2, "{report:?}");
    assert_eq!(sink.wait_for(2).len(), 2);
    let (status, body) = readyz(&http).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_notices_the_store_file_replaced_or_deleted() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    assert_eq!(readyz(&http).await.0, 200);
    let db = t.dir.path().join("bulletin.db");

    // Another file moved into its place (a restore, a deploy script, a mistaken copy).
    let other = t.dir.path().join("other.db");
    std::fs::copy(&db, &other).unwrap();
    std::fs::rename(&other, &db).unwrap();
    let (status, body) = readyz(&http).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("the store file {} was replaced", db.display())),
        "{body}"
    );

    std::fs::remove_file(&db).unwrap();
    let (status, body) = readyz(&http).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("the store file {} was deleted", db.display())),
        "{body}"
    );
}

/// The real daemon: a disk that fills while `serve` runs refuses the admin API's writes
/// and `/readyz` says why; once space is freed the same process takes and sends the next
/// notice, without a restart (before, every later transaction failed with "attempted to
/// call begin_with at non-zero transaction depth" until a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_running_through_a_full_disk_and_sends_once_there_is_room() {
    const TOKEN: &str = "store-faults-admin-token-0123456789";
    let Some(mount) = Tmpfs::mount("8m") else {
        return;
    };
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let db = mount.path().join("b.db");
    let (config, public) = daemon_config(dir.path(), &db, sink.port, "pool_size = 2", "");
    let text = std::fs::read_to_string(&config).unwrap();
    let admin = text
        .split("[admin]\nbind = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    run_ok(cli(&config).args(["lists", "add", "partners", "a@example.org"]));
    run_ok(cli(&config).args(["lists", "add", "partners", "b@example.org"]));
    let child = cli(&config)
        .env("BULLETIN_ADMIN_TOKEN", TOKEN)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = crate::crash::Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", public)).is_err() {
        assert!(daemon.still_running(), "serve exited at start");
        assert!(Instant::now() < deadline, "serve did not start listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = reqwest::Client::new();
    let notice = |key: &str| {
        client
            .post(format!("http://{admin}/api/notices"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({
                "title": format!("Notice {key}"),
                "body": "Session 2 moves to **Hall B**.",
                "severity": "urgent",
                "lists": ["partners"],
                "key": key,
                "by": "duty officer",
            }))
            .send()
    };
    let readyz = || async {
        let r = client
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(notice("first").await.unwrap().status(), 201);
    assert_eq!(sink.wait_for(2).len(), 2);
    assert_eq!(readyz().await.0, 200);

    // Empty the write-ahead log (so the next write needs new room), then fill the disk.
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let filler = mount.path().join("filler");
    fill(&filler);
    let r = notice("while-full").await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_server_error(), "{status} {body}");
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store writes are failing"), "{body}");

    std::fs::remove_file(&filler).unwrap();
    let r = notice("after").await.unwrap();
    let status = r.status();
    assert_eq!(status, 201, "{}", r.text().await.unwrap());
    assert_eq!(
        sink.wait_for(4).len(),
        4,
        "the same daemon sent the next notice"
    );
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    assert!(daemon.still_running());
}
