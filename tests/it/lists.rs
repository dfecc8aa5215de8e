//! Mailing lists: CSV import reports bad rows by line, merges duplicates, and never
//! re-activates someone who left.

use crate::harness::*;
use bulletin::domain::subscriber::{CsvSubscribers, SubscriberStatus};
use bulletin::domain::ListName;

#[tokio::test]
async fn csv_import_skips_bad_rows_merges_duplicates_and_respects_unsubscribes() {
    let t = spawn_app(Options::default()).await;
    let list = t
        .list_with("partners", &[("left@example.org", Some("Left"))])
        .await;
    t.app
        .store
        .set_subscriber_status(
            list,
            "left@example.org",
            SubscriberStatus::Unsubscribed,
            t.clock_now(),
        )
        .await
        .unwrap();
    let csv = "email,name,language\n\
               a@example.org,Alice,en\n\
               not-an-address,Bad,en\n\
               B@Example.org,Bob,\n\
               a@example.org,Alice Updated,fr\n\
               left@example.org,Left Again,en\n\
               c@example.org,\"Evil\r\nBcc: x@y.org\",en\n\
               d@example.org,Dee,xx-not-a-tag-!\n";
    let rows = CsvSubscribers::new(csv.as_bytes()).unwrap();
    let bulletin::ops::lists::SubscriberImport {
        counts,
        rejected: errors,
        ..
    } = t
        .app
        .ops()
        .import_csv(&bulletin::domain::Actor::local("test"), "partners", rows)
        .await
        .unwrap();
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 7, 9], "{errors:?}");
    assert!(errors[1].message.contains("one line"), "{}", errors[1]);
    assert_eq!((counts.added, counts.updated), (2, 2), "{counts:?}");

    let summary = t
        .app
        .store
        .list(&ListName::parse("partners").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.active, summary.unsubscribed), (2, 1));
    let subs = t.app.store.subscribers_page(list, 0, 100).await.unwrap();
    let a = subs.iter().find(|s| s.email == "a@example.org").unwrap();
    assert_eq!(
        (a.name.as_deref(), a.language.as_deref()),
        (Some("Alice Updated"), Some("fr"))
    );
    assert!(
        subs.iter().any(|s| s.email == "b@example.org"),
        "addresses are normalised"
    );
    let left = subs.iter().find(|s| s.email == "left@example.org").unwrap();
    assert_eq!(
        left.status,
        SubscriberStatus::Unsubscribed,
        "an import never re-subscribes"
    );

    assert!(t
        .app
        .store
        .remove_subscriber(list, "b@example.org")
        .await
        .unwrap());
    assert!(!t
        .app
        .store
        .remove_subscriber(list, "b@example.org")
        .await
        .unwrap());
}

#[tokio::test]
async fn subscribers_are_paged() {
    let t = spawn_app(Options::default()).await;
    let people: Vec<String> = (0..25).map(|i| format!("p{i}@example.org")).collect();
    let refs: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    let list = t.list_with("partners", &refs).await;
    let mut seen = 0;
    let mut after = 0;
    loop {
        let page = t.app.store.subscribers_page(list, after, 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        seen += page.len();
        after = page.last().unwrap().id;
    }
    assert_eq!(seen, 25);
}

/// Through the binary: a `;`-separated export from a spreadsheet with extra columns is
/// imported (the extra columns named in a notice), and `lists export` writes it back as
/// CSV with each subscriber's status and the time it last changed.
#[test]
fn semicolon_csv_with_extra_columns_imports_and_exports_with_status() {
    use crate::crash::{cli, run_ok};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulletin.toml");
    std::fs::write(
        &config,
        config_text(&dir.path().join("b.db"), &Options::default()),
    )
    .unwrap();
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    let csv = dir.path().join("partners.csv");
    std::fs::write(
        &csv,
        "\u{feff}Organisation;email;Name;phone\n\
         MRC;a@example.org;\"Dupont, Anne\";+66 1\n\
         LMC;b@example.org;Bao;+86 2\n",
    )
    .unwrap();
    let out = cli(&config)
        .args(["lists", "import", "partners"])
        .arg(&csv)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("2 added"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{}: line 1: column(s) ignored (only email, name and language are read): Organisation, phone",
            csv.display()
        )),
        "{stderr}"
    );
    run_ok(cli(&config).args([
        "lists",
        "set-status",
        "partners",
        "b@example.org",
        "unsubscribed",
    ]));

    let exported = run_ok(cli(&config).args(["lists", "export", "partners"]));
    let mut lines = exported.lines();
    assert_eq!(
        lines.next(),
        Some("email,name,language,status,status_changed_at")
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| {
            csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(l.as_bytes())
                .records()
                .next()
                .unwrap()
                .unwrap()
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{exported}");
    assert_eq!(
        rows[0][..4],
        ["a@example.org", "Dupont, Anne", "", "active"]
    );
    assert_eq!(rows[1][..4], ["b@example.org", "Bao", "", "unsubscribed"]);
    for r in &rows {
        chrono::DateTime::parse_from_rfc3339(&r[4]).expect("an RFC 3339 time");
    }
    // The same to a file with -o.
    let file = dir.path().join("out.csv");
    let said = run_ok(
        cli(&config)
            .args(["lists", "export", "partners", "-o"])
            .arg(&file),
    );
    assert!(said.contains("2 subscriber(s) written"), "{said}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exported);
}

/// `status_changed_at` moves when the status changes, and only then (not when a name
/// is updated, nor when the same status is set again).
#[tokio::test]
async fn status_changed_at_follows_status_changes_only() {
    let t = spawn_app(Options::default()).await;
    let list = t
        .list_with("partners", &[("a@example.org", Some("A"))])
        .await;
    let created = t.clock_now();
    let row = |t: &TestApp| {
        let store = t.app.store.clone();
        async move { store.subscribers_page(list, 0, 10).await.unwrap().remove(0) }
    };
    assert_eq!(row(&t).await.status_changed_at, created);
    let later = created + chrono::Duration::hours(1);
    let s = bulletin::domain::subscriber::NewSubscriber::parse("a@example.org", Some("A B"), None)
        .unwrap();
    t.app
        .store
        .upsert_subscribers(list, &[s], later)
        .await
        .unwrap();
    assert_eq!(
        row(&t).await.status_changed_at,
        created,
        "a name change is not a status change"
    );
    t.app
        .store
        .set_subscriber_status(list, "a@example.org", SubscriberStatus::Bounced, later)
        .await
        .unwrap();
    assert_eq!(row(&t).await.status_changed_at, later);
    let even_later = later + chrono::Duration::hours(1);
    t.app
        .store
        .set_subscriber_status(list, "a@example.org", SubscriberStatus::Bounced, even_later)
        .await
        .unwrap();
    assert_eq!(
        row(&t).await.status_changed_at,
        later,
        "same status: unchanged"
    );
}

/// A FIFO given as the CSV file is refused at once, never opened for a blocking read
/// (a plain open waits forever for a writer).
#[test]
fn a_fifo_given_as_the_csv_is_refused_without_waiting() {
    use crate::crash::{cli, run_ok};
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bulletin.toml");
    std::fs::write(
        &config,
        config_text(&dir.path().join("b.db"), &Options::default()),
    )
    .unwrap();
    run_ok(cli(&config).args(["store", "init"]));
    run_ok(cli(&config).args(["lists", "create", "partners"]));
    let fifo = dir.path().join("people.csv");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut child = cli(&config)
        .args(["lists", "import", "partners"])
        .arg(&fifo)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("lists import hung on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("FIFO") && err.contains("people.csv"), "{err}");
}
