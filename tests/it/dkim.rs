//! DKIM (issue 15): messages as the real SMTP server received them verify with an
//! independent verifier (Python's dkimpy, tests/dkim/verify.py, its DNS lookup stubbed to
//! the test key's record): ASCII and CJK subjects, quoted-printable and base64 parts, the
//! per-recipient unsubscribe link, RSA and Ed25519, a key made by `bulletin dkim keygen`;
//! and a tampered message fails.

use crate::harness::*;
use bulletin::dkim::{Algorithm, DkimKey};
use secrecy::ExposeSecret;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const SIGNED: &[&str] = &[
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// dkimpy's verdict on `raw` with `record` as the only DNS answer: Ok("ok d=… h=…") or
/// Err(why).
fn verify(raw: &[u8], record: &str) -> Result<String, String> {
    let mut child = Command::new("python3")
        .arg(repo_path("tests/dkim/verify.py"))
        .arg(record)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(raw).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(2) => panic!(
            "Python's dkimpy is not installed, so the DKIM tests cannot verify signatures. \
             Run `tests/run` (it installs it) or `pip install dkimpy pynacl`. {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        _ => Err(format!(
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// `[email.dkim]` lines for a key at `path` (appended after `[email.smtp]`).
fn dkim_section(path: &Path) -> &'static str {
    Box::leak(
        format!(
            "\n[email.dkim]\ndomain = \"example.org\"\nselector = \"s2026\"\nprivate_key_file = \"{}\"\n",
            path.display()
        )
        .into_boxed_str(),
    )
}

/// A new key written to `dir`, and its TXT record's value.
fn key_in(dir: &Path, alg: Algorithm) -> (std::path::PathBuf, String) {
    let (key, pem) = DkimKey::generate(alg).unwrap();
    let path = dir.join("dkim.pem");
    std::fs::write(&path, pem.expose_secret()).unwrap();
    (path, key.txt_value())
}

fn assert_covers_the_headers(verdict: &str) {
    assert!(verdict.contains("d=example.org s=s2026"), "{verdict}");
    assert!(verdict.contains("c=relaxed/relaxed"), "{verdict}");
    let h = verdict.split(" h=").nth(1).unwrap();
    let covered: Vec<String> = h.split(':').map(|s| s.to_ascii_lowercase()).collect();
    for name in SIGNED {
        assert!(covered.iter().any(|c| c == name), "{name} not signed: {h}");
    }
}

/// The raw message with its first body occurrence of `from` replaced by `to`.
fn tamper_body(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let body_at = text.find("\r\n\r\n").or_else(|| text.find("\n\n")).unwrap();
    let (head, body) = text.split_at(body_at);
    assert!(body.contains(from), "{from} not in the body");
    format!("{head}{}", body.replacen(from, to, 1)).into_bytes()
}

#[tokio::test]
async fn seed_bulletin_signed_with_rsa_verifies_for_each_recipient_and_tampering_fails() {
    let keys = tempfile::tempdir().unwrap();
    let (key, record) = key_in(keys.path(), Algorithm::Rsa);
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        smtp_extra: dkim_section(&key),
        ..Default::default()
    })
    .await;
    t.list_with(
        "partners",
        &[
            ("li.mingyu@example.org", Some("李明宇")),
            ("press@example.com", None),
        ],
    )
    .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 2);

    let received = sink.wait_for(2);
    assert_eq!(received.len(), 2);
    let mut links = Vec::new();
    for m in &received {
        let raw = String::from_utf8_lossy(&m.raw);
        assert!(raw.contains("Content-Transfer-Encoding: quoted-printable"));
        let msg = m.parsed();
        assert!(msg.subject().unwrap().is_ascii());
        let link = msg
            .header_raw("List-Unsubscribe")
            .unwrap()
            .trim()
            .to_string();
        let url = link.trim_start_matches('<').trim_end_matches('>');
        assert!(msg.body_text(0).unwrap().contains(url), "link spliced in");
        links.push(link);

        let verdict = verify(&m.raw, &record).unwrap_or_else(|e| panic!("{e}"));
        assert!(verdict.contains("a=rsa-sha256"), "{verdict}");
        assert_covers_the_headers(&verdict);

        // The check can fail: a changed word in the body, a changed link in a header.
        let tampered = tamper_body(&m.raw, "Session", "Sessiom");
        assert!(
            verify(&tampered, &record).is_err(),
            "tampered body verified"
        );
        let other = String::from_utf8_lossy(&m.raw)
            .replacen("/unsubscribe/", "/unsubscribe/x", 1)
            .into_bytes();
        assert!(verify(&other, &record).is_err(), "tampered header verified");
        // And a record with another key does not verify it.
        let (_, wrong) = key_in(tempfile::tempdir().unwrap().path(), Algorithm::Ed25519);
        assert!(verify(&m.raw, &wrong).is_err());
    }
    assert_ne!(links[0], links[1], "each recipient has their own link");
}

#[tokio::test]
async fn cjk_subject_and_an_inline_image_signed_with_ed25519_verify() {
    let keys = tempfile::tempdir().unwrap();
    let (key, record) = key_in(keys.path(), Algorithm::Ed25519);
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        smtp_extra: dkim_section(&key),
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("a@example.org", Some("Nguyễn Thị Hồng"))])
        .await;
    std::fs::copy(
        repo_path("config/examples/cover.png"),
        t.dir.path().join("cover.png"),
    )
    .unwrap();
    let title = "澜湄合作圆桌对话 การประชุมโต๊ะกลมแม่โขง-ล้านช้าง";
    let body =
        small_record("zh-th", title) + "\n[[images]]\nfile = \"cover.png\"\nalt = \"封面\"\n";
    let path = t.write_record("zh.toml", &body);
    let id = t.import(&path).await;
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 1);

    let m = &sink.wait_for(1)[0];
    let raw = String::from_utf8_lossy(&m.raw);
    assert!(raw.contains("Subject: =?utf-8?"), "RFC 2047 subject");
    assert!(
        raw.contains("Content-Transfer-Encoding: base64"),
        "image part"
    );
    assert!(raw.contains("Content-Transfer-Encoding: quoted-printable"));
    assert_eq!(m.parsed().subject(), Some(title));
    let verdict = verify(&m.raw, &record).unwrap_or_else(|e| panic!("{e}"));
    assert!(verdict.contains("a=ed25519-sha256"), "{verdict}");
    assert_covers_the_headers(&verdict);
    let (_, wrong) = key_in(tempfile::tempdir().unwrap().path(), Algorithm::Ed25519);
    assert!(verify(&m.raw, &wrong).is_err());
}

#[tokio::test]
async fn keygen_writes_a_private_key_whose_printed_record_verifies() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("bulletin.pem");
    let keygen = |out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .args(["dkim", "keygen", "--domain", "example.org"])
            .args(["--selector", "s2026", "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let out = keygen(&key);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        printed.starts_with("s2026._domainkey.example.org IN TXT \"v=DKIM1; k=rsa; p="),
        "{printed}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // An existing file is never overwritten.
    let before = std::fs::read(&key).unwrap();
    let again = keygen(&key);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&key).unwrap(), before);

    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        smtp_extra: dkim_section(&key),
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    let path = t.write_record("r.toml", &small_record("plain", "A plain ASCII title"));
    let id = t.import(&path).await;
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 1);
    let m = &sink.wait_for(1)[0];
    let verdict = verify(&m.raw, &printed).unwrap_or_else(|e| panic!("{e}"));
    assert_covers_the_headers(&verdict);
}

#[test]
fn check_config_reports_the_key_type_and_dns_name_and_refuses_a_short_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = key_in(dir.path(), Algorithm::Rsa);
    let check = |key: &Path| {
        let cfg = dir.path().join("bulletin.toml");
        let text = config_text(
            &dir.path().join("bulletin.db"),
            &Options {
                smtp_extra: dkim_section(key),
                ..Default::default()
            },
        );
        std::fs::write(&cfg, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(&cfg)
            .arg("check-config")
            .output()
            .unwrap()
    };
    let out = check(&key);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("RSA 2048 bits"), "{said}");
    assert!(said.contains("s2026._domainkey.example.org"), "{said}");
    assert!(said.contains(&record[..40]), "{said}");

    use rsa::pkcs8::EncodePrivateKey;
    let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024)
        .unwrap()
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let short = dir.path().join("short.pem");
    std::fs::write(&short, small.as_bytes()).unwrap();
    let out = check(&short);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bulletin.toml:")
            && err.contains("email.dkim.private_key_file")
            && err.contains("1024 bits"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY") && !said.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn an_urgent_notice_is_signed_too() {
    let keys = tempfile::tempdir().unwrap();
    let (key, record) = key_in(keys.path(), Algorithm::Ed25519);
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        smtp_extra: dkim_section(&key),
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("a@example.org", Some("李明宇"))])
        .await;
    let http = t.start_http().await;
    let r = http
        .post("/api/notices")
        .json(&serde_json::json!({
            "title": "会场变更 Venue change",
            "body": "Session 2 moves to **Hall B** at 14:00.",
            "severity": "urgent",
            "lists": ["partners"],
            "by": "duty officer",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 1);
    let m = &sink.wait_for(1)[0];
    let verdict = verify(&m.raw, &record).unwrap_or_else(|e| panic!("{e}"));
    assert_covers_the_headers(&verdict);
}

#[tokio::test]
async fn messages_written_to_the_outbox_are_signed() {
    use bulletin::channel::email::EmailChannel;
    use bulletin::channel::PreparedBulletin;
    let dir = tempfile::tempdir().unwrap();
    let (key, record) = key_in(dir.path(), Algorithm::Rsa);
    let outbox = dir.path().join("outbox");
    let text = config_text(
        &dir.path().join("bulletin.db"),
        &Options {
            smtp_extra: dkim_section(&key),
            ..Default::default()
        },
    )
    .replace(
        "transport = \"smtp\"",
        &format!(
            "transport = \"outbox\"\noutbox_dir = \"{}\"",
            outbox.display()
        ),
    );
    let config = bulletin::config::Config::parse(&text, Path::new("t.toml"), &|_| None).unwrap();
    let signer = std::sync::Arc::new(bulletin::unsubscribe::UnsubscribeSigner::new(
        vec![7; 32],
        "https://news.example.org",
    ));
    let channel = EmailChannel::new(&config.email, signer, "tag".into()).unwrap();
    let mark = bulletin::render::UNSUBSCRIBE_MARK;
    let prepared = PreparedBulletin {
        id: 1,
        kind: bulletin::store::BulletinKind::Record,
        language: "en".into(),
        subject: "Outbox".into(),
        web_url: None,
        html: format!("<p>Hello</p><a href=\"{mark}\">leave</a>"),
        text: format!("Hello\nLeave: {mark}\n"),
        images: vec![],
        wechat: None,
        email_bodies: Default::default(),
        versions: vec![],
        reader_versions: Default::default(),
    };
    let claimed = crate::harness::email_row(9);
    let raw = crate::harness::deliver_to_outbox(&channel, &prepared, &claimed, &outbox).await;
    assert!(String::from_utf8_lossy(&raw).contains("/unsubscribe/"));
    let verdict = verify(&raw, &record).unwrap_or_else(|e| panic!("{e}"));
    assert_covers_the_headers(&verdict);
}
