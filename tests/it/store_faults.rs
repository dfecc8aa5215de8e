//! Fault test 7 of issue 5, with the real binary on a real SQLite file: a store on a
//! read-only or a full disk (a real tmpfs, mounted for the test) gives a clear error at
//! start that names the file and what is wrong, and leaves a store that works once the
//! disk is fixed; a second daemon on the same store refuses to run, while the other
//! commands keep working beside the first.

use crate::crash::{cli, daemon_config, run_ok, start_serve};
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
    let err = run_err(cli(&config).args(["lists", "create", "partners"]));
    assert!(
        err.contains(&format!("cannot prepare the store at {}", db.display()))
            && err.contains("the disk holding it is full"),
        "{err}"
    );
    tiny.remount("size=4m");
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
