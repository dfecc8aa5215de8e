//! Importing and approving records: bad input is refused whole with a clear location and
//! stores nothing; approval freezes content; published records are immutable.

use crate::harness::*;
use bulletin::app::AppError;
use bulletin::domain::RecordState;
use bulletin::store::ImportOutcome;

async fn refused(t: &TestApp, name: &str, body: &str) -> String {
    let p = t.write_record(name, body);
    let e = t
        .app
        .import_record_file(&p)
        .await
        .expect_err("must be refused");
    assert!(matches!(e, AppError::Record(_)), "{e:?}");
    assert!(
        t.app.store.records(None).await.unwrap().is_empty(),
        "something was stored for {name}"
    );
    e.to_string()
}

#[tokio::test]
async fn bad_records_are_refused_whole_with_file_line_and_field() {
    let t = spawn_app(Options::default()).await;
    let good = small_record("s1", "Title");

    let e = refused(&t, "truncated.toml", &good[..good.len() / 2]).await;
    assert!(e.contains("truncated.toml:"), "{e}");

    let e = refused(
        &t,
        "missing.toml",
        &good.replace("attendees = \"Delegates.\"\n", ""),
    )
    .await;
    assert!(e.contains("missing field `attendees`"), "{e}");

    let e = refused(&t, "date.toml", &good.replace("2026-02-27", "2026-02-30")).await;
    assert!(e.contains("date.toml:5:"), "{e}");

    let e = refused(&t, "unknown.toml", &format!("{good}speakers = 3\n")).await;
    assert!(
        e.contains("unknown field `speakers`") && e.contains("unknown.toml:11:"),
        "{e}"
    );

    let e = refused(
        &t,
        "crlf.toml",
        &good.replace("title = \"Title\"", "title = \"Hi\\r\\nBcc: x@y.org\""),
    )
    .await;
    assert!(e.contains("crlf.toml:2:9: title: must be one line"), "{e}");

    let huge = "x".repeat(20_001);
    let e = refused(&t, "huge.toml", &good.replace("Summary of s1.", &huge)).await;
    assert!(
        e.contains("summary: is 20001 characters long; the limit is 20000"),
        "{e}"
    );

    let e = refused(&t, "format.toml", &good.replace("in-person", "virtual")).await;
    assert!(
        e.contains(
            "format.toml:6:10: format: unknown session format `virtual` (expected one of: online, in-person, hybrid)"
        ),
        "{e}"
    );

    let e = refused(
        &t,
        "badid.toml",
        &good.replace("id = \"s1\"", "id = \"S 1\""),
    )
    .await;
    assert!(e.contains("badid.toml:1:6: id:"), "{e}");

    // Two problems at once: both reported.
    let e = refused(
        &t,
        "two.toml",
        &good.replace("Title", "").replace("Kunming", "a\\nb"),
    )
    .await;
    assert!(
        e.contains("title: must not be empty") && e.contains("venue:"),
        "{e}"
    );

    // Invalid UTF-8.
    let p = t.dir.path().join("latin1.toml");
    std::fs::write(&p, b"id = \"s1\"\ntitle = \"caf\xe9\"\n").unwrap();
    let e = t.app.import_record_file(&p).await.unwrap_err().to_string();
    assert!(
        e.contains("latin1.toml:2:") && e.contains("not valid UTF-8"),
        "{e}"
    );

    // A missing image names the field.
    let e = refused(
        &t,
        "img.toml",
        &format!("{good}[[images]]\nfile = \"nope.png\"\nalt = \"A photo\"\n"),
    )
    .await;
    assert!(
        e.contains("images[1].file") && e.contains("nope.png"),
        "{e}"
    );
}

#[tokio::test]
async fn approval_is_frozen_and_published_records_are_immutable() {
    let t = spawn_app(Options::default()).await;
    let path = t.write_record("r.toml", &small_record("r1", "First"));
    assert_eq!(
        t.app.import_record_file(&path).await.unwrap().1,
        ImportOutcome::Created
    );
    assert_eq!(
        t.app.import_record_file(&path).await.unwrap().1,
        ImportOutcome::Unchanged
    );
    t.app
        .store
        .approve_record("r1", "Ms. Approver", t.clock_now())
        .await
        .unwrap();
    let r = t.app.store.record("r1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Approved);
    assert_eq!(r.approved_by.as_deref(), Some("Ms. Approver"));
    assert!(r.approved_at.is_some());

    // Re-importing the same content keeps the approval; a change sends it back to draft.
    assert_eq!(
        t.app.import_record_file(&path).await.unwrap().1,
        ImportOutcome::Unchanged
    );
    std::fs::write(&path, small_record("r1", "First, corrected")).unwrap();
    assert_eq!(
        t.app.import_record_file(&path).await.unwrap().1,
        ImportOutcome::ReturnedToDraft
    );
    let r = t.app.store.record("r1").await.unwrap().unwrap();
    assert_eq!((r.state, r.approved_by), (RecordState::Draft, None));

    // A draft is not sent by a firing.
    t.list_with("partners", &[("a@example.org", None)]).await;
    let out = t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(
        out,
        bulletin::scheduler::FireOutcome::Fired {
            bulletins: vec![],
            deliveries: 0
        }
    );

    // Once published, a changed import is refused and the stored record stays as it was.
    t.app
        .store
        .approve_record("r1", "Ms. Approver", t.clock_now())
        .await
        .unwrap();
    t.clock.advance(chrono::Duration::seconds(5));
    t.app.fire_now("weekday-morning").await.unwrap();
    let r = t.app.store.record("r1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Published);
    std::fs::write(&path, small_record("r1", "Rewritten history")).unwrap();
    let e = t
        .app
        .import_record_file(&path)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("published and cannot change"), "{e}");
    assert_eq!(
        t.app
            .store
            .record("r1")
            .await
            .unwrap()
            .unwrap()
            .record
            .title,
        "First, corrected"
    );
}

#[tokio::test]
async fn record_images_are_loaded_and_checked() {
    let t = spawn_app(Options::default()).await;
    // A 1x1 PNG.
    let png: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0,
        0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
    std::fs::write(t.dir.path().join("photo.png"), png).unwrap();
    std::fs::write(t.dir.path().join("fake.png"), b"not an image").unwrap();
    let with = |file: &str| {
        format!(
            "{}[[images]]\nfile = \"{file}\"\nalt = \"Delegates\"\ncaption = \"The room\"\n",
            small_record("img", "With image")
        )
    };
    let e = t
        .app
        .import_record_file(&t.write_record("bad.toml", &with("fake.png")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("images[1].file") && e.contains("not a PNG, JPEG or GIF"),
        "{e}"
    );
    let e = t
        .app
        .import_record_file(&t.write_record("esc.toml", &with("../photo.png")))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("inside the record's folder"), "{e}");
    t.app
        .import_record_file(&t.write_record("ok.toml", &with("photo.png")))
        .await
        .unwrap();
    let images = t.app.store.record_images("img").await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        (
            images[0].content_type.as_str(),
            images[0].width,
            images[0].height
        ),
        ("image/png", 1, 1)
    );
}
