//! Language versions of one record (issue 16): one file per version with the same id,
//! approval over every version, each reader getting the version of their language (with
//! that version's labels, date and subject) through a real SMTP server, schedules that
//! send only some languages, notices in several languages, and WeChat's version.

use crate::harness::*;
use bulletin::domain::subscriber::NewSubscriber;
use bulletin::domain::Actor;
use bulletin::domain::ListName;
use bulletin::ops::records::{PreviewFormat, PreviewInput};
use bulletin::ops::OpsError;
use bulletin::store::ImportOutcome;
use std::collections::BTreeMap;
use std::path::PathBuf;

const ID: &str = "lmc-2020-versions";

/// One version of the test record: (language, title, summary).
fn version(language: &str, title: &str, summary: &str) -> String {
    format!(
        r#"id = "{ID}"
language = "{language}"
title = "{title}"
event = "Lancang-Mekong Roundtable"
session = "Parallel Session 2"
held_on = 2020-07-30
format = "online"
summary = "{summary}"
attendees = "Delegates of the six countries."
topics = ["Water"]
"#
    )
}

const EN: (&str, &str, &str) = (
    "en",
    "Parallel Session 2 held",
    "The session on sustainable infrastructure was held online.",
);
const ZH: (&str, &str, &str) = (
    "zh-Hans",
    "平行分会二成功举办",
    "可持续基础设施平行分会在线上举行。",
);
const TH: (&str, &str, &str) = (
    "th",
    "การประชุมย่อยที่ 2 จัดขึ้นสำเร็จ",
    "การประชุมย่อยด้านโครงสร้างพื้นฐานที่ยั่งยืนจัดขึ้นทางออนไลน์",
);

fn write_versions(t: &TestApp, versions: &[(&str, &str, &str)]) -> Vec<PathBuf> {
    versions
        .iter()
        .map(|(l, title, summary)| {
            t.write_record(&format!("{ID}.{l}.toml"), &version(l, title, summary))
        })
        .collect()
}

/// The readers of the issue's test: (address, language).
const READERS: &[(&str, Option<&str>)] = &[
    ("en@example.org", Some("en")),
    ("zh-cn@example.org", Some("zh-CN")),
    ("zh-tw@example.org", Some("zh-TW")),
    ("th@example.org", Some("th")),
    ("km@example.org", Some("km")),
    ("none@example.org", None),
];

async fn readers(t: &TestApp) {
    let name = ListName::parse("partners").unwrap();
    t.app
        .store
        .create_list(&name, "", t.clock_now())
        .await
        .unwrap();
    let id = t.app.store.list(&name).await.unwrap().unwrap().id;
    let subs: Vec<_> = READERS
        .iter()
        .map(|(e, l)| NewSubscriber::parse(e, None, *l).unwrap())
        .collect();
    t.app
        .store
        .upsert_subscribers(id, &subs, t.clock_now())
        .await
        .unwrap();
}

/// What one reader received: (subject, Content-Language, HTML, text).
fn by_reader(received: &[Received]) -> BTreeMap<String, (String, String, String, String)> {
    received
        .iter()
        .map(|m| {
            let msg = m.parsed();
            (
                m.recipients[0].clone(),
                (
                    msg.subject().unwrap_or_default().to_string(),
                    msg.header_raw("Content-Language")
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    msg.body_html(0).unwrap().to_string(),
                    msg.body_text(0).unwrap().to_string(),
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn one_record_in_three_languages_reaches_each_reader_in_theirs() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    readers(&t).await;
    let ops = t.app.ops();
    let files = write_versions(&t, &[EN, ZH, TH]);
    let out = ops
        .import_records(&Actor::local("editor"), &files)
        .await
        .unwrap();
    for f in &out {
        let r = f.outcome.as_ref().unwrap();
        assert_eq!(r.id, ID);
    }
    let record = ops.record(ID).await.unwrap();
    assert_eq!(record.languages(), ["en", "th", "zh-Hans"]);
    ops.approve(&Actor::local("approver"), ID).await.unwrap();
    t.app.fire_now("weekday-morning").await.unwrap();
    let report = t.app.run_pending(None).await.unwrap();
    assert_eq!(report.sent, 6, "{report:?}");
    let got = by_reader(&sink.wait_for(6));
    assert_eq!(got.len(), 6);

    // (reader, version language, title, a label, the date)
    let en = ("en", EN.1, "Attendees", "30 July 2020");
    let zh = ("zh-Hans", ZH.1, "参会人员", "2020年7月30日");
    let th = ("th", TH.1, "ผู้เข้าร่วม", "30 กรกฎาคม 2563");
    for (reader, (lang, title, label, date)) in [
        ("en@example.org", en),
        ("zh-cn@example.org", zh),
        // No Traditional version: a Chinese reader still gets Chinese.
        ("zh-tw@example.org", zh),
        ("th@example.org", th),
        // No Khmer version: the primary, with the primary's (English) labels.
        ("km@example.org", en),
        ("none@example.org", en),
    ] {
        let (subject, content_language, html, text) = &got[reader];
        assert_eq!(subject, title, "{reader}: subject");
        assert_eq!(content_language, lang, "{reader}: Content-Language");
        assert!(
            html.contains(&format!("<html lang=\"{lang}\">")),
            "{reader}: <html lang>"
        );
        for (part, body) in [("HTML", html), ("text", text)] {
            assert!(body.contains(date), "{reader}: the {part} lacks {date}");
            assert!(body.contains(title), "{reader}: the {part} lacks its title");
        }
        assert!(html.contains(label), "{reader}: no label {label}");
        // Nothing of the other versions' text.
        for (other, other_title, _, _) in [en, zh, th] {
            if other != lang {
                assert!(!html.contains(other_title), "{reader}: {other} text in it");
            }
        }
    }
    // Rendered once per version: the bulletin holds the primary and two versions.
    let b = t.app.store.bulletins(10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].language, "en");
    let mut langs: Vec<_> = b[0].versions.iter().map(|v| v.language.as_str()).collect();
    langs.sort();
    assert_eq!(langs, ["th", "zh-Hans"]);

    // The archive lists the bulletin once per language version, and each web version is
    // that version's text with no personal link.
    let page = ops.archive_page(None, None).await.unwrap();
    let mut listed: Vec<_> = page
        .entries
        .iter()
        .map(|e| (e.id, e.language.as_str(), e.subject.as_str()))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [(1, "en", EN.1), (1, "th", TH.1), (1, "zh-Hans", ZH.1)]
    );
    let zh_only = ops.archive_page(Some("zh-Hans"), None).await.unwrap();
    assert_eq!(zh_only.entries.len(), 1);
    assert_eq!(zh_only.entries[0].path, "/archive/1/zh-Hans");
    for (lang, (_, title, label, date)) in [("en", en), ("zh-Hans", zh), ("th", th)] {
        let web = ops.archive_web_version(1, Some(lang)).await.unwrap();
        assert_eq!(web.language, lang);
        assert!(
            web.html.contains(&format!("<html lang=\"{lang}\">")),
            "{lang}"
        );
        for want in [title, label, date] {
            assert!(web.html.contains(want), "{lang}: web version lacks {want}");
        }
        assert!(
            !web.html.contains("/unsubscribe/"),
            "{lang}: a personal link"
        );
    }
    assert!(ops.archive_web_version(1, Some("km")).await.is_err());
}

#[tokio::test]
async fn approval_covers_every_version_and_preview_shows_one() {
    let t = spawn_app(Options::default()).await;
    let ops = t.app.ops();
    let files = write_versions(&t, &[TH, EN]);
    // Thai first, then English: English is `[defaults] language`, so it becomes the
    // primary when it arrives.
    let out = ops
        .import_records(&Actor::local("editor"), &files[..1])
        .await
        .unwrap();
    assert_eq!(
        out[0].outcome.as_ref().unwrap().outcome,
        ImportOutcome::Created
    );
    ops.approve(&Actor::local("approver"), ID).await.unwrap();
    let before = ops.record(ID).await.unwrap().content_hash;
    // Adding a version to an approved record sends it back to draft.
    let out = ops
        .import_records(&Actor::local("editor"), &files[1..])
        .await
        .unwrap();
    let r = out[0].outcome.as_ref().unwrap();
    assert_eq!(r.outcome, ImportOutcome::ReturnedToDraft);
    assert_eq!(r.versions, ["en", "th"]);
    let record = ops.record(ID).await.unwrap();
    assert_eq!(record.state.as_str(), "draft");
    assert_eq!(
        record.record.language, "en",
        "the default language is primary"
    );
    assert_ne!(record.content_hash, before, "the hash spans every version");
    // The listing shows the versions.
    let list = ops.records(None).await.unwrap();
    assert_eq!(list[0].versions, ["en", "th"]);
    // The same files again change nothing; an approved record stays approved.
    ops.approve(&Actor::local("approver"), ID).await.unwrap();
    for f in ops
        .import_records(&Actor::local("editor"), &files)
        .await
        .unwrap()
    {
        assert_eq!(f.outcome.unwrap().outcome, ImportOutcome::Unchanged);
    }
    assert_eq!(ops.record(ID).await.unwrap().state.as_str(), "approved");
    // Changing one version sends it back to draft too.
    let changed = t.write_record(
        "changed.th.toml",
        &version("th", "การประชุมย่อยที่ 2 (แก้ไข)", TH.2),
    );
    let out = ops
        .import_records(&Actor::local("editor"), &[changed])
        .await
        .unwrap();
    assert_eq!(
        out[0].outcome.as_ref().unwrap().outcome,
        ImportOutcome::ReturnedToDraft
    );

    // Preview shows one version; an unknown one is named.
    let preview = |language| {
        let ops = ops.clone();
        async move {
            ops.preview(PreviewInput {
                id: ID,
                channel: bulletin::domain::ChannelKind::Email,
                format: PreviewFormat::Text,
                language,
            })
            .await
        }
    };
    let th = preview(Some("th")).await.unwrap();
    assert!(
        th.body.starts_with("Subject: การประชุมย่อยที่ 2 (แก้ไข)"),
        "{}",
        th.body
    );
    let en = preview(None).await.unwrap();
    assert!(en.body.starts_with(&format!("Subject: {}", EN.1)));
    match preview(Some("km")).await {
        Err(OpsError::NotFound { message, .. }) => {
            assert!(message.contains("no version in `km`"), "{message}");
            assert!(message.contains("en, th"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // Two files of one import with the same id and language are both refused.
    let again = t.write_record("again.th.toml", &version("th", "อีกครั้ง", TH.2));
    let out = ops
        .import_records(&Actor::local("editor"), &[files[0].clone(), again])
        .await
        .unwrap();
    for f in &out {
        match &f.outcome {
            Err(OpsError::Invalid { field, message }) => {
                assert_eq!(field, "id");
                assert!(message.contains("in the same language (`th`)"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn every_version_shows_the_same_images() {
    let t = spawn_app(Options::default()).await;
    let ops = t.app.ops();
    std::fs::write(t.dir.path().join("a.png"), crate::wechat::PNG).unwrap();
    let with_image = |(l, title, summary): (&str, &str, &str), file: &str| {
        format!(
            "{}[[images]]\nfile = \"{file}\"\nalt = \"{l}\"\n",
            version(l, title, summary)
        )
    };
    let en = t.write_record("en.toml", &with_image(EN, "a.png"));
    ops.import_records(&Actor::local("editor"), &[en])
        .await
        .unwrap()[0]
        .outcome
        .as_ref()
        .unwrap();
    // Another image in the Thai version: refused, naming the field and the versions.
    let mut other = crate::wechat::PNG.to_vec();
    other.extend_from_slice(b"trailing bytes make another file");
    std::fs::write(t.dir.path().join("b.png"), &other).unwrap();
    let th = t.write_record("th.toml", &with_image(TH, "b.png"));
    let err = ops
        .import_records(&Actor::local("editor"), &[th])
        .await
        .unwrap()[0]
        .outcome
        .as_ref()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("th.toml: images: these 1 image(s) differ")
            && err.contains("other version(s) (en)"),
        "{err}"
    );
    // The same image, its own alt text: stored.
    let th = t.write_record("th2.toml", &with_image(TH, "a.png"));
    assert!(ops
        .import_records(&Actor::local("editor"), &[th])
        .await
        .unwrap()[0]
        .outcome
        .is_ok());
}

#[tokio::test]
async fn a_schedule_sends_only_its_languages() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        // A second schedule that sends Thai only.
        extra: "[[schedules]]\nname = \"thai\"\ncron = \"0 0 9 * * Mon-Fri\"\nlists = [\"partners\"]\nlanguages = [\"th\"]\n",
        ..Default::default()
    })
    .await;
    readers(&t).await;
    let ops = t.app.ops();
    ops.import_records(&Actor::local("editor"), &write_versions(&t, &[EN, ZH, TH]))
        .await
        .unwrap();
    ops.approve(&Actor::local("approver"), ID).await.unwrap();
    t.app.fire_now("thai").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    // Every reader gets the best version the schedule sends: here the Thai one.
    let got = by_reader(&sink.wait_for(6));
    assert_eq!(got.len(), 6);
    for (reader, (subject, lang, _, _)) in &got {
        assert_eq!((subject.as_str(), lang.as_str()), (TH.1, "th"), "{reader}");
    }
    let b = t.app.store.bulletins(10).await.unwrap();
    assert!(
        b[0].versions.is_empty(),
        "only the Thai version was rendered"
    );
}

#[test]
fn schedule_languages_are_checked_at_their_line() {
    let base = config_text(
        std::path::Path::new("/nonexistent/bulletin.db"),
        &Options::default(),
    );
    for (langs, key, want) in [
        ("[]", "schedules[1].languages", "names no language"),
        (
            "[\"en\", \"!!\"]",
            "schedules[1].languages[2]",
            "`!!` is not a BCP 47",
        ),
    ] {
        let text = base.replace(
            "channels = [\"email\"]",
            &format!("channels = [\"email\"]\nlanguages = {langs}"),
        );
        let line = text[..text.find("languages = ").unwrap()].lines().count() + 1;
        let e = bulletin::config::Config::parse(&text, std::path::Path::new("t.toml"), &|_| None)
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.to_string().contains(want), "{e}");
    }
}

#[tokio::test]
async fn a_notice_in_several_languages_reaches_each_reader_in_theirs() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    readers(&t).await;
    let ops = t.app.ops();
    let versions = [
        bulletin::notice::NoticeVersion {
            language: "th".into(),
            title: "เปลี่ยนสถานที่".into(),
            body: "ย้ายไปที่ **ห้อง B**".into(),
        },
        bulletin::notice::NoticeVersion {
            language: "zh-Hans".into(),
            title: "会场变更".into(),
            body: "会议改在 **B 厅** 举行。".into(),
        },
    ];
    let input = bulletin::ops::notices::NoticeInput {
        title: "Venue change",
        body: "The session moves to **Room B**.",
        severity: "urgent",
        lists: &["partners".to_string()],
        key: None,
        channels: &[],
        versions: &versions,
    };
    let req = ops.check_notice(&Actor::local("ops"), input).unwrap();
    ops.send_notice(&Actor::local("ops"), &req).await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let got = by_reader(&sink.wait_for(6));
    for (reader, subject, lang) in [
        ("en@example.org", "[Urgent] Venue change", "en"),
        ("zh-cn@example.org", "[紧急] 会场变更", "zh-Hans"),
        ("zh-tw@example.org", "[紧急] 会场变更", "zh-Hans"),
        ("th@example.org", "[ด่วน] เปลี่ยนสถานที่", "th"),
        ("km@example.org", "[Urgent] Venue change", "en"),
        ("none@example.org", "[Urgent] Venue change", "en"),
    ] {
        assert_eq!(
            (got[reader].0.as_str(), got[reader].1.as_str()),
            (subject, lang),
            "{reader}"
        );
    }
    // A version in the main text's language, or a bad tag, is refused by field.
    let twice = [bulletin::notice::NoticeVersion {
        language: "EN".into(),
        title: "t".into(),
        body: "b".into(),
    }];
    match ops.check_notice(
        &Actor::local("ops"),
        bulletin::ops::notices::NoticeInput {
            versions: &twice,
            ..input
        },
    ) {
        Err(OpsError::Invalid { field, .. }) => assert_eq!(field, "versions[1].language"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wechat_publishes_the_chinese_version() {
    let fake = crate::fake_wechat::FakeWechat::start().await;
    let t = spawn_app(crate::wechat::options(&fake, "draft")).await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    let ops = t.app.ops();
    ops.import_records(&Actor::local("editor"), &write_versions(&t, &[EN, ZH, TH]))
        .await
        .unwrap();
    ops.approve(&Actor::local("approver"), ID).await.unwrap();
    t.app.fire_now("weekday-morning").await.unwrap();
    for _ in 0..5 {
        t.app.run_pending(None).await.unwrap();
    }
    let titles: Vec<String> = fake.with(|s| {
        s.drafts
            .values()
            .map(|d| d["title"].as_str().unwrap_or("").to_string())
            .collect()
    });
    assert_eq!(titles, [ZH.1], "the zh-Hans version is the account's");
}
