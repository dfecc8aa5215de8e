//! The binary as a user runs it: the demo, and configuration errors.

use std::process::Command;

fn bulletin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bulletin"))
}

#[test]
fn demo_delivers_to_the_outbox_on_a_fresh_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo");
    let out = bulletin()
        .arg("demo")
        .arg("--dir")
        .arg(&out_dir)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("7 sent"),
        "6 e-mails and 1 WeChat article: {stdout}"
    );
    let emls = std::fs::read_dir(out_dir.join("outbox")).unwrap().count();
    assert_eq!(emls, 6);
    assert!(
        stdout.contains("in 2 language versions (en, zh-Hans)"),
        "{stdout}"
    );
    // The reader in Chinese got the Chinese version; the others the English one.
    for e in std::fs::read_dir(out_dir.join("outbox")).unwrap() {
        let raw = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let want = if raw.contains("li.mingyu@example.org") {
            "\r\nContent-Language: zh-Hans\r\n"
        } else {
            "\r\nContent-Language: en\r\n"
        };
        assert!(raw.contains(want), "{want:?} not in\n{raw}");
        // Each reader's web version is the one of their language.
        let web = if want.contains("zh-Hans") {
            "Archived-At: <http://127.0.0.1:8081/archive/1/zh-Hans>"
        } else {
            "Archived-At: <http://127.0.0.1:8081/archive/1/en>"
        };
        assert!(raw.contains(web), "{web:?} not in\n{raw}");
    }
    // The demo prints where the archive shows each version.
    for url in [
        "http://127.0.0.1:8081/archive lists it",
        "http://127.0.0.1:8081/archive/1/en\n",
        "http://127.0.0.1:8081/archive/1/zh-Hans\n",
    ] {
        assert!(stdout.contains(url), "{url:?} not in {stdout}");
    }
    let article = std::fs::read_to_string(out_dir.join("wechat/bulletin-1/article.html")).unwrap();
    // The account publishes the Chinese version.
    assert!(article.contains("Kittiphan Taparugssanagorn") && article.contains("style=\""));
    assert!(article.contains("潘海啸"), "{article}");
    let calls: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("wechat/bulletin-1/calls.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call"].as_str().unwrap())
        .collect();
    assert!(
        names[0].contains("stable_token")
            && names.iter().any(|n| n.contains("draft/add"))
            && names.iter().any(|n| n.contains("freepublish/submit")),
        "{names:?}"
    );
    // Running it again starts afresh.
    let out = bulletin()
        .arg("demo")
        .arg("--dir")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_dir(out_dir.join("outbox")).unwrap().count(),
        6
    );
}

#[test]
fn check_config_names_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    let good =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")).unwrap();
    std::fs::write(&cfg, good.replace("Asia/Shanghai", "Asia/Nowhere")).unwrap();
    let out = bulletin()
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:")
            && err.contains("schedules[1].timezone")
            && err.contains("Asia/Nowhere"),
        "{err}"
    );

    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, &good).unwrap();
    let out = bulletin()
        .arg("--config")
        .arg(&ok)
        .arg("check-config")
        .env_remove("BULLETIN_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("admin API on 127.0.0.1:8080 (no token: set BULLETIN_ADMIN_TOKEN")
            && said.contains("unsubscribe on 127.0.0.1:8081"),
        "{said}"
    );
}

#[test]
fn secrets_never_reach_output() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .unwrap()
        .replace("outbox_dir = \"demo-output/outbox\"\n", "")
        .replace("transport = \"outbox\"", "transport = \"smtp\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nusername = \"u\"")
        .replace("demo-output/", &format!("{}/", dir.path().display()))
        .replacen(
            "base_url = \"http://127.0.0.1:8081\"",
            "base_url = \"http://127.0.0.1:8081\"\nallow_loopback = true",
            1,
        );
    std::fs::write(&cfg, text).unwrap();
    let out = bulletin()
        .arg("--config")
        .arg(&cfg)
        .args(["--log-format", "json", "serve", "--once"])
        .env("BULLETIN_SMTP_PASSWORD", "pa55-word-never-shown")
        .env("BULLETIN_UNSUBSCRIBE_SECRET", "unsub-secret-never-shown")
        .env("BULLETIN_ADMIN_TOKEN", "admin-token-never-shown")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        !all.contains("pa55-word-never-shown")
            && !all.contains("unsub-secret-never-shown")
            && !all.contains("admin-token-never-shown"),
        "a secret leaked"
    );
}

#[test]
fn demo_never_empties_a_folder_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("outbox")).unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let out = bulletin()
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("was not made by `bulletin demo`"));
    assert!(dir.path().join("precious.txt").exists());
}

/// Issue 18, item 6: a command other than `serve`, `demo` and `store init` on a store file
/// that does not exist (a mistyped `store.url`) refuses, names the path and says how to
/// create one, and creates nothing; `store init` creates it.
#[test]
fn only_store_init_creates_a_store_other_commands_refuse_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    let db = folder.join("b.db");
    let cfg = dir.path().join("bulletin.toml");
    std::fs::write(
        &cfg,
        crate::harness::config_text(&db, &crate::harness::Options::default()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        bulletin()
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["lists", "all"][..],
        &["lists", "create", "partners"][..],
        &["deliveries"][..],
        &["status"][..],
        &["store", "migrate"][..],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran on a missing store");
        assert!(
            err.contains(&format!("there is no store at {}", db.display()))
                && err.contains("bulletin store init"),
            "{args:?}: {err}"
        );
        assert!(!folder.exists(), "{args:?} created {}", folder.display());
    }

    let out = run(&["store", "init"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created"), "{stdout}");
    assert!(db.is_file());
    let out = run(&["lists", "create", "partners"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Again on the existing store: nothing lost, nothing recreated.
    let out = run(&["store", "init"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready"));
    let out = run(&["lists", "all", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("partners"));
}

#[test]
fn retry_without_a_scope_refuses_and_names_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = bulletin()
        .arg("--config")
        .arg(dir.path().join("none.toml"))
        .arg("retry")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--bulletin ID, --delivery ID, or --all"),
        "{err}"
    );
    // --all with a scope is a contradiction clap refuses.
    let out = bulletin()
        .args(["retry", "--all", "--bulletin", "3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Issue 13, item 1: the CLI runs the operations the admin API runs, so it refuses what
/// the API refuses, in the options' words. Deliberate changes from the CLI's own rules:
/// a page of more than 1,000 ledger rows is refused (the API's limit), and a retry of a
/// bulletin or delivery that does not exist is an error instead of "0 ... queued again".
#[test]
fn the_cli_applies_the_operations_rules_and_names_the_option_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let cfg = dir.path().join("bulletin.toml");
    std::fs::write(
        &cfg,
        crate::harness::config_text(&db, &crate::harness::Options::default()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = bulletin()
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, _, err) = run(&["store", "init"]);
    assert!(ok, "{err}");

    let (ok, _, err) = run(&["deliveries", "--limit", "1001"]);
    assert!(!ok);
    assert!(err.contains("--limit: must be 1 to 1000"), "{err}");
    let (ok, out, err) = run(&["deliveries", "--limit", "1000"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(&["deliveries", "--since", "yesterday"]);
    assert!(!ok);
    assert!(
        err.contains("--since: `yesterday`: give an RFC 3339 time"),
        "{err}"
    );
    let (ok, _, err) = run(&["deliveries", "--status", "lost"]);
    assert!(!ok);
    assert!(err.contains("--status: "), "{err}");

    let (ok, _, err) = run(&["retry", "--bulletin", "99"]);
    assert!(!ok);
    assert!(err.contains("no bulletin 99"), "{err}");
    let (ok, _, err) = run(&["retry", "--delivery", "99"]);
    assert!(!ok);
    assert!(err.contains("no delivery 99"), "{err}");
    let (ok, out, err) = run(&["retry", "--all", "--held"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("0 held deliveries queued again; the daemon sends them"),
        "{out}"
    );

    let (ok, _, err) = run(&["records", "--state", "lost"]);
    assert!(!ok);
    assert!(err.contains("--state: "), "{err}");
    let (ok, _, err) = run(&["approve", "no-such-record", "--by", "two\nlines"]);
    assert!(!ok);
    assert!(err.contains("--by: "), "{err}");
    let (ok, _, err) = run(&["approve", "no-such-record", "--by", "editor"]);
    assert!(!ok);
    assert!(err.contains("no record `no-such-record`"), "{err}");
    // A positional argument is named by its message alone, as before.
    let (ok, _, err) = run(&["lists", "show", "nobody-here"]);
    assert!(!ok);
    assert!(
        err.contains("no list `nobody-here` (create it with `bulletin lists create nobody-here`)"),
        "{err}"
    );
    let (ok, _, err) = run(&["lists", "create", "Not A Name"]);
    assert!(!ok);
    assert!(!err.contains("--list"), "{err}");
}

#[test]
fn every_subcommand_and_option_has_a_one_line_description() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() {
                missing.push(format!("{path} <{id}>"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let p = format!("{path} {}", sub.get_name());
            let about = sub.get_about().map(|h| h.to_string()).unwrap_or_default();
            if about.trim().is_empty() {
                missing.push(p.clone());
            }
            walk(sub, &p, missing);
        }
    }
    let mut missing = Vec::new();
    let cmd = bulletin::cli::Cli::command();
    cmd.clone().debug_assert();
    walk(&cmd, "bulletin", &mut missing);
    assert!(missing.is_empty(), "no --help text for: {missing:#?}");
}

/// Commands that do not send run without the SMTP password and the WeChat AppSecret;
/// `serve` refuses without them, and refuses to send over SMTP with an unsubscribe link
/// to this machine; `check-config` warns of both.
#[test]
fn only_sending_needs_the_secrets_and_a_public_unsubscribe_link() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .unwrap()
        .replace("outbox_dir = \"demo-output/outbox\"\n", "")
        .replace("transport = \"outbox\"", "transport = \"smtp\"\n[email.smtp]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nusername = \"u\"")
        .replace("demo-output/", &format!("{}/", dir.path().display()));
    std::fs::write(&cfg, text).unwrap();
    let run = |args: &[&str], password: bool| {
        let mut c = bulletin();
        c.arg("--config")
            .arg(&cfg)
            .args(args)
            .env_remove("BULLETIN_SMTP_PASSWORD")
            .env_remove("BULLETIN_ADMIN_TOKEN")
            .env("BULLETIN_UNSUBSCRIBE_SECRET", "0123456789abcdef0123");
        if password {
            c.env("BULLETIN_SMTP_PASSWORD", "pa55-word");
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, said) = run(&["check-config"], false);
    assert!(ok, "{said}");
    assert!(
        said.contains("warning: ")
            && said.contains("email.smtp.username: a username is set but no password")
            && said
                .contains("unsubscribe.base_url: `http://127.0.0.1:8081` points at this machine"),
        "{said}"
    );
    // A run without the sender role sends nothing and needs no password (it also
    // creates the store for what follows).
    let (ok, said) = run(&["serve", "--once", "--roles", "scheduler"], false);
    assert!(ok, "{said}");
    for args in [
        &["status"][..],
        &["records"],
        &["lists", "all"],
        &["deliveries"],
        &["bulletins"],
    ] {
        let (ok, said) = run(args, false);
        assert!(ok, "{args:?}: {said}");
    }
    let (ok, said) = run(&["serve", "--once"], false);
    assert!(!ok);
    assert!(
        said.contains("email.smtp.username: a username is set but no password"),
        "{said}"
    );
    let (ok, said) = run(&["serve", "--once"], true);
    assert!(!ok);
    assert!(
        said.contains("unsubscribe.base_url: `http://127.0.0.1:8081` points at this machine")
            && said.contains("unsubscribe.allow_loopback = true"),
        "{said}"
    );
}

/// A relative SQLite path is read from the configuration file's folder: run from another
/// folder, a command opens (and here creates) the same store, not a new one there.
#[test]
fn a_relative_store_path_is_resolved_against_the_configuration_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (conf_dir, elsewhere) = (dir.path().join("etc"), dir.path().join("elsewhere"));
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .unwrap()
        .replace(
            "sqlite://demo-output/bulletin.db",
            "sqlite://data/bulletin.db",
        )
        .replace("demo-output/", &format!("{}/", dir.path().display()))
        .replace(
            "config/examples/cover.png",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/cover.png"),
        );
    let cfg = conf_dir.join("bulletin.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = bulletin()
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--once", "--roles", "scheduler"])
        .current_dir(&elsewhere)
        .env("BULLETIN_UNSUBSCRIBE_SECRET", "0123456789abcdef0123")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        conf_dir.join("data/bulletin.db").exists(),
        "store beside the configuration"
    );
    assert!(
        !elsewhere.join("data").exists(),
        "no store in the working folder"
    );
    let said = bulletin()
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&said.stdout);
    assert!(
        said.contains(&format!(
            "store sqlite://{}",
            conf_dir.join("data/bulletin.db").display()
        )),
        "{said}"
    );
}

/// Issue 15: `bounces ingest` keeps every message (an unreadable one as `unmatched`,
/// exit 0) and exits 75 (EX_TEMPFAIL) when it cannot record it, so the MTA retries;
/// `bounces` lists them by kind; `bounces undo` of no such bounce fails.
#[test]
fn bounces_ingest_exits_by_sysexits_and_lists_what_it_kept() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let cfg = dir.path().join("bulletin.toml");
    std::fs::write(
        &cfg,
        crate::harness::config_text(&db, &crate::harness::Options::default()),
    )
    .unwrap();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bounces");
    let ingest = |stdin: &[u8]| {
        let mut child = bulletin()
            .arg("--config")
            .arg(&cfg)
            .args([
                "bounces",
                "ingest",
                "-",
                "--recipient",
                "bounces@example.org",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let garbage = std::fs::read(corpus.join("garbage.eml")).unwrap();
    // No store yet: not recorded, and the MTA is told to retry.
    let out = ingest(&garbage);
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("MTA should retry"));

    let out = bulletin()
        .arg("--config")
        .arg(&cfg)
        .args(["store", "init"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = ingest(&garbage);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("unmatched"));
    // The same message again (a retried pipe): already recorded, exit 0, kept once.
    let out = ingest(&garbage);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("already recorded as bounce 1"), "{said}");
    // A vacation reply from a file: recorded as such.
    let out = bulletin()
        .arg("--config")
        .arg(&cfg)
        .args(["bounces", "ingest"])
        .arg(corpus.join("vacation-auto-submitted.eml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("auto_reply"));

    let list = |kind: &str| {
        let out = bulletin()
            .arg("--config")
            .arg(&cfg)
            .args(["bounces", "--json", "--kind", kind])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    let unmatched = list("unmatched");
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert_eq!(unmatched[0]["size"], garbage.len());
    assert_eq!(unmatched[0]["source"], "ingest");
    assert_eq!(list("auto-reply").len(), 1);
    assert!(list("hard").is_empty());

    let out = bulletin()
        .arg("--config")
        .arg(&cfg)
        .args(["bounces", "undo", "999"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bounce 999"));
}
