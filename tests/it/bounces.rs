//! The bounce classifier over a corpus of real-format messages (tests/bounces/*.eml,
//! written for this project after RFC 3464, 3834, 5965 and 6533 and the shapes Postfix,
//! Exchange, Gmail and qmail produce): one test per sample, asserting the kind, status,
//! recipient, the VERP row id and the original Message-ID.

use bulletin::bounce::{classify, BounceKind, Classification, Evidence, ReturnPath, Verp, VerpKey};
use std::path::PathBuf;

/// The key the corpus's VERP tokens were made with (`bounces+<row>-<tag>@bounces.example.org`).
const CORPUS_KEY: &[u8] = b"bulletin-bounce-corpus-test-key!";

fn corpus_verp() -> Verp {
    Verp::new(
        ReturnPath::parse("bounces+{token}@bounces.example.org").unwrap(),
        VerpKey::new(CORPUS_KEY.to_vec()).unwrap(),
    )
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bounces")
}

fn raw(file: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn classified(file: &str) -> Classification {
    classify(&raw(file), Some(&corpus_verp()), None)
}

struct Expect {
    kind: BounceKind,
    evidence: Evidence,
    status: Option<&'static str>,
    recipient: Option<&'static str>,
    row_id: Option<i64>,
    message_id: Option<&'static str>,
}

fn check(file: &str, e: Expect) -> Classification {
    let c = classified(file);
    assert_eq!(c.kind, e.kind, "{file}: {c:#?}");
    assert_eq!(c.evidence, e.evidence, "{file}: {c:#?}");
    assert_eq!(
        c.status.map(|s| s.to_string()).as_deref(),
        e.status,
        "{file}: {c:#?}"
    );
    assert_eq!(c.recipient.as_deref(), e.recipient, "{file}: {c:#?}");
    assert_eq!(c.row_id, e.row_id, "{file}: {c:#?}");
    assert_eq!(c.message_id.as_deref(), e.message_id, "{file}: {c:#?}");
    c
}

/// Every sample in the corpus, so that a new one without a test fails.
const CASES: &[&str] = &[
    "postfix-hard.eml",
    "postfix-soft.eml",
    "postfix-delayed.eml",
    "postfix-relayed.eml",
    "exchange-ndr.eml",
    "exchange-text-ndr.eml",
    "gmail-550-511.eml",
    "arf-complaint.eml",
    "arf-redacted.eml",
    "vacation-auto-submitted.eml",
    "ooo-x-autoreply.eml",
    "qmail-plain-text.eml",
    "cjk-utf8-dsn.eml",
    "garbage.eml",
];

#[test]
fn every_corpus_sample_has_a_case() {
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn postfix_dsn_hard_5_1_1() {
    let c = check(
        "postfix-hard.eml",
        Expect {
            kind: BounceKind::Hard,
            evidence: Evidence::Dsn,
            status: Some("5.1.1"),
            recipient: Some("ana.li@dead.example.net"),
            row_id: Some(101),
            message_id: Some("b17.r101.4f2a9c@bulletin.example.org"),
        },
    );
    // Postfix marks its DSNs `Auto-Submitted: auto-replied`: the report decides, not that.
    assert_eq!(c.envelope_id.as_deref(), Some("bulletin-101"));
    assert_eq!(c.reporting_mta.as_deref(), Some("mx.example.org"));
    assert_eq!(
        c.diagnostic.as_deref(),
        Some(
            "550 5.1.1 <ana.li@dead.example.net>: Recipient address rejected: \
             User unknown in virtual mailbox table"
        )
    );
}

#[test]
fn postfix_dsn_soft_4_2_2_after_giving_up() {
    check(
        "postfix-soft.eml",
        Expect {
            kind: BounceKind::Soft,
            evidence: Evidence::Dsn,
            status: Some("4.2.2"),
            recipient: Some("bo.chen@full.example.com"),
            row_id: Some(102),
            message_id: Some("b17.r102.77c1d0@bulletin.example.org"),
        },
    );
}

#[test]
fn postfix_delay_warning_is_delayed_not_a_bounce() {
    let c = check(
        "postfix-delayed.eml",
        Expect {
            kind: BounceKind::Delayed,
            evidence: Evidence::Dsn,
            status: Some("4.4.1"),
            recipient: Some("cai.wen@slow.example.com"),
            row_id: Some(103),
            message_id: Some("b17.r103.0d9e3a@bulletin.example.org"),
        },
    );
    assert!(!c.kind.is_bounce());
}

#[test]
fn postfix_relayed_report_is_delivered_not_a_bounce() {
    let c = check(
        "postfix-relayed.eml",
        Expect {
            kind: BounceKind::Delivered,
            evidence: Evidence::Dsn,
            status: Some("2.0.0"),
            recipient: Some("jin.yu@relay.example.net"),
            row_id: Some(112),
            message_id: None,
        },
    );
    assert!(!c.kind.is_bounce());
}

#[test]
fn exchange_ndr_with_a_dsn_part() {
    let c = check(
        "exchange-ndr.eml",
        Expect {
            kind: BounceKind::Hard,
            evidence: Evidence::Dsn,
            status: Some("5.1.10"),
            recipient: Some("dana.wu@contoso.example"),
            row_id: Some(104),
            message_id: Some("b17.r104.5e0b2c@bulletin.example.org"),
        },
    );
    assert_eq!(
        c.reporting_mta.as_deref(),
        Some("DM6PR11MB1234.namprd11.prod.outlook.example")
    );
    assert!(c
        .diagnostic
        .unwrap()
        .contains("RESOLVER.ADR.RecipientNotFound"));
}

#[test]
fn exchange_ndr_without_a_report_part_best_effort() {
    check(
        "exchange-text-ndr.eml",
        Expect {
            kind: BounceKind::Hard,
            evidence: Evidence::Text,
            status: Some("5.1.1"),
            recipient: Some("hu.min@legacy.example.org"),
            row_id: Some(111),
            message_id: Some("b17.r111.3c4d5e@bulletin.example.org"),
        },
    );
}

#[test]
fn gmail_style_550_5_1_1() {
    let c = check(
        "gmail-550-511.eml",
        Expect {
            kind: BounceKind::Hard,
            evidence: Evidence::Dsn,
            status: Some("5.1.1"),
            recipient: Some("erin.zhou@gmail.example"),
            row_id: Some(105),
            message_id: Some("b17.r105.9a8b7c@bulletin.example.org"),
        },
    );
    // The folded multi-line Diagnostic-Code is one line.
    let d = c.diagnostic.unwrap();
    assert!(
        d.starts_with("550-5.1.1 The email account that you tried to reach does not exist."),
        "{d}"
    );
    assert!(!d.contains('\n'));
}

#[test]
fn arf_complaint_names_the_row_by_its_original_mail_from() {
    let c = check(
        "arf-complaint.eml",
        Expect {
            kind: BounceKind::Complaint,
            evidence: Evidence::Arf,
            status: None,
            recipient: Some("fei.huang@mail.example.net"),
            row_id: Some(106),
            message_id: Some("b17.r106.2b3c4d@bulletin.example.org"),
        },
    );
    assert_eq!(c.reporting_mta.as_deref(), Some("mail.example.net"));
    assert_eq!(
        c.diagnostic.as_deref(),
        Some("feedback-type abuse (ExampleFBL/2.1)")
    );
}

#[test]
fn arf_complaint_without_original_rcpt_to_takes_the_originals_to() {
    check(
        "arf-redacted.eml",
        Expect {
            kind: BounceKind::Complaint,
            evidence: Evidence::Arf,
            status: None,
            recipient: Some("guo.yan@fbl.example.com"),
            row_id: Some(113),
            message_id: Some("b17.r113.aa01@bulletin.example.org"),
        },
    );
}

#[test]
fn vacation_reply_with_auto_submitted_is_an_auto_reply() {
    let c = check(
        "vacation-auto-submitted.eml",
        Expect {
            kind: BounceKind::AutoReply,
            evidence: Evidence::Header,
            status: None,
            recipient: Some("gao.ming@example.edu"),
            row_id: Some(107),
            message_id: Some("b17.r107.6e7f80@bulletin.example.org"),
        },
    );
    assert!(!c.kind.is_bounce());
    assert_eq!(
        c.diagnostic.as_deref(),
        Some("Auto-Submitted: auto-replied (vacation)")
    );
}

#[test]
fn out_of_office_with_x_autoreply_only_is_an_auto_reply() {
    let c = check(
        "ooo-x-autoreply.eml",
        Expect {
            kind: BounceKind::AutoReply,
            evidence: Evidence::Header,
            status: None,
            recipient: Some("han.jie@corp.example.com"),
            row_id: Some(108),
            message_id: None,
        },
    );
    assert_eq!(c.diagnostic.as_deref(), Some("X-Autoreply: yes"));
}

#[test]
fn out_of_office_subject_alone_is_the_last_resort() {
    // The X-Autoreply sample without its header: only the subject says what it is.
    let text = String::from_utf8(raw("ooo-x-autoreply.eml")).unwrap();
    let stripped = text.replace("X-Autoreply: yes\n", "");
    assert_ne!(stripped, text);
    let c = classify(stripped.as_bytes(), Some(&corpus_verp()), None);
    assert_eq!(
        (c.kind, c.evidence),
        (BounceKind::AutoReply, Evidence::Subject),
        "{c:?}"
    );
    assert_eq!(c.row_id, Some(108));
}

#[test]
fn plain_text_qmail_bounce_best_effort() {
    let c = check(
        "qmail-plain-text.eml",
        Expect {
            kind: BounceKind::Hard,
            evidence: Evidence::Text,
            status: Some("5.1.1"),
            recipient: Some("gu.lei@old.example.com"),
            row_id: Some(109),
            message_id: Some("b17.r109.1f2e3d@bulletin.example.org"),
        },
    );
    assert_eq!(
        c.diagnostic.as_deref(),
        Some("Sorry, no mailbox here by that name. (#5.1.1)")
    );
}

#[test]
fn cjk_recipient_in_a_global_dsn() {
    check(
        "cjk-utf8-dsn.eml",
        Expect {
            kind: BounceKind::Hard,
            evidence: Evidence::Dsn,
            status: Some("5.1.1"),
            recipient: Some("张伟@例子.中国"),
            row_id: Some(110),
            message_id: Some("b17.r110.c3d4e5@bulletin.example.org"),
        },
    );
}

#[test]
fn garbage_is_unmatched_and_kept() {
    check(
        "garbage.eml",
        Expect {
            kind: BounceKind::Unmatched,
            evidence: Evidence::Nothing,
            status: None,
            recipient: None,
            row_id: None,
            message_id: None,
        },
    );
}

#[test]
fn a_forged_or_foreign_token_marks_no_row() {
    let text = String::from_utf8(raw("postfix-hard.eml")).unwrap();
    // The same DSN with the row id changed: the tag no longer verifies anywhere.
    let forged = text.replace("bounces+101-", "bounces+100-");
    let c = classify(forged.as_bytes(), Some(&corpus_verp()), None);
    assert_eq!((c.kind, c.row_id), (BounceKind::Hard, None), "{c:?}");
    // The genuine DSN checked with another key.
    let other = Verp::new(
        ReturnPath::parse("bounces+{token}@bounces.example.org").unwrap(),
        VerpKey::new(b"not the corpus key, 32 bytes ok!".to_vec()).unwrap(),
    );
    let c = classify(text.as_bytes(), Some(&other), None);
    assert_eq!(c.row_id, None);
    // Without VERP configured, everything but the row is still read.
    let c = classify(text.as_bytes(), None, None);
    assert_eq!((c.kind, c.row_id), (BounceKind::Hard, None));
    assert_eq!(c.recipient.as_deref(), Some("ana.li@dead.example.net"));
}

#[test]
fn the_envelope_recipient_names_the_row_first_even_for_garbage() {
    let v = corpus_verp();
    let c = classify(
        &raw("garbage.eml"),
        Some(&v),
        Some(&v.address(120).to_uppercase()),
    );
    assert_eq!((c.kind, c.row_id), (BounceKind::Unmatched, Some(120)));
    let c = classify(
        &raw("postfix-hard.eml"),
        Some(&v),
        Some(&format!("<{}>", v.address(121))),
    );
    assert_eq!(c.row_id, Some(121));
}

#[test]
fn truncated_samples_never_panic_nor_bounce_without_a_status() {
    let v = corpus_verp();
    for file in CASES {
        let raw = raw(file);
        for cut in (0..raw.len()).step_by(23) {
            let c = classify(&raw[..cut], Some(&v), None);
            assert!(
                !c.kind.is_bounce() || c.status.is_some(),
                "{file}[..{cut}]: {c:?}"
            );
        }
    }
}

/// `GET /api/bounces` lists what was ingested (typed, filtered by kind) and
/// `POST /api/bounces/{id}/undo` undoes one; an unknown kind or id is refused; the
/// metrics and `status` count them.
#[tokio::test]
async fn the_admin_api_lists_and_undoes_bounces() {
    use bulletin::store::BounceSource;
    let t = crate::harness::spawn_app(crate::harness::Options::default()).await;
    let ops = t.app.ops();
    let got = ops
        .ingest_bounce(&raw("garbage.eml"), BounceSource::Ingest, None)
        .await
        .unwrap();
    assert_eq!(got.classification.kind, BounceKind::Unmatched);
    ops.ingest_bounce(
        &raw("vacation-auto-submitted.eml"),
        BounceSource::Ingest,
        None,
    )
    .await
    .unwrap();
    let http = t.start_http().await;
    let all: Vec<serde_json::Value> = http
        .get("/api/bounces")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["kind"], "auto_reply");
    assert_eq!(all[1]["kind"], "unmatched");
    assert_eq!(all[1]["delivery_id"], serde_json::Value::Null);
    let r = http
        .get("/api/bounces?kind=unmatched")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let one: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["id"], got.recorded.id);
    let r = http.get("/api/bounces?kind=spam").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(&format!("/api/bounces/{}/undo", got.recorded.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let u: serde_json::Value = r.json().await.unwrap();
    assert_eq!(u["undone"], true);
    // Metrics count what the store holds (whichever process ingested it); `status`
    // shows the last 24 h.
    let m = http
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("bulletin_bounces_total{kind=\"unmatched\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("bulletin_bounces_total{kind=\"auto_reply\"} 1"),
        "{m}"
    );
    assert!(m.contains("bulletin_bounces_total{kind=\"hard\"} 0"), "{m}");
    let status = ops.status().await.unwrap();
    assert_eq!(status.bounces_last_24h["unmatched"], 1);
    assert_eq!(status.bounces_last_24h["hard"], 0);
    t.clock.advance(chrono::Duration::hours(25));
    let status = ops.status().await.unwrap();
    assert_eq!(status.bounces_last_24h["unmatched"], 0);
    let r = http.post("/api/bounces/9999/undo").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "bounce_not_found", "{e}");
}

/// With `[bounces] return_path`, an outbox file records the row's VERP envelope sender
/// as its Return-Path; the From header is unchanged.
#[tokio::test]
async fn outbox_files_record_the_verp_envelope_sender() {
    use bulletin::channel::email::EmailChannel;
    use bulletin::channel::PreparedBulletin;
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let o = crate::harness::Options {
        bounces: Some("[bounces]\nreturn_path = \"bounces+{token}@bounces.example.org\"\n".into()),
        ..Default::default()
    };
    let text = crate::harness::config_text(&dir.path().join("b.db"), &o).replace(
        "transport = \"smtp\"",
        &format!(
            "transport = \"outbox\"\noutbox_dir = \"{}\"",
            outbox.display()
        ),
    );
    let config = bulletin::config::Config::parse(&text, std::path::Path::new("t.toml"), &|n| {
        (n == "BULLETIN_VERP_SECRET").then(|| "outbox-verp-key-0123456789".to_string())
    })
    .unwrap();
    let verp = config.bounces.verp.clone().unwrap();
    let signer = std::sync::Arc::new(bulletin::unsubscribe::UnsubscribeSigner::new(
        vec![7; 32],
        "https://news.example.org",
    ));
    let channel = EmailChannel::new(&config.email, signer, "tag".into())
        .unwrap()
        .with_verp(Some(verp.clone()));
    let prepared = PreparedBulletin {
        id: 1,
        kind: bulletin::store::BulletinKind::Record,
        language: "en".into(),
        subject: "Outbox".into(),
        web_url: None,
        html: "<p>Hello</p>".into(),
        text: "Hello\n".into(),
        images: vec![],
        wechat: None,
        email_bodies: Default::default(),
        versions: vec![],
        reader_versions: Default::default(),
    };
    let claimed = crate::harness::email_row(77);
    let raw = crate::harness::deliver_to_outbox(&channel, &prepared, &claimed, &outbox).await;
    let text = String::from_utf8_lossy(&raw);
    let want = format!("Return-Path: <{}>", verp.address(77));
    assert!(text.contains(&want), "{text}");
    assert!(
        text.contains("From: \"LMEC Bulletin\" <bulletin@example.org>"),
        "{text}"
    );
    assert_eq!(verp.row_id(&verp.address(77)), Some(77));
}
