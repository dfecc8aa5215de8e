//! End to end: approved records → firing → ledger → a real SMTP server, and the MIME it got.

use crate::harness::*;
use bulletin::domain::subscriber::SubscriberStatus;
use bulletin::domain::DeliveryStatus;
use bulletin::scheduler::FireOutcome;
use bulletin::store::BulletinState;
use bulletin::store::DeliveryFilter;
use mail_parser::MimeHeaders;

const PEOPLE: &[(&str, Option<&str>)] = &[
    ("li.mingyu@example.org", Some("李明宇")),
    ("siriporn@example.net", Some("ศิริพร แก้วมณี")),
    ("press@example.com", None),
];

#[tokio::test]
async fn seed_bulletin_reaches_a_real_smtp_server_with_every_section() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", PEOPLE).await;
    t.import_seed_approved().await;

    let fired = t.app.fire_now("weekday-morning").await.unwrap();
    let FireOutcome::Fired {
        bulletins,
        deliveries,
    } = fired
    else {
        panic!("did not fire: {fired:?}")
    };
    assert_eq!((bulletins.len(), deliveries), (1, 3));
    let report = t.app.run_pending(None).await.unwrap();
    assert_eq!(report.sent, 3, "{report:?}");

    // The ledger: every row sent, with the server's reply and a Message-ID.
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r.status, DeliveryStatus::Sent);
        assert_eq!(r.attempts, 1);
        assert_eq!(r.last_code, Some(250));
        assert!(r.message_id.as_deref().unwrap().ends_with("@example.org>"));
    }

    let received = sink.wait_for(3);
    assert_eq!(received.len(), 3);
    let mut rcpts: Vec<_> = received.iter().flat_map(|m| m.recipients.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "li.mingyu@example.org",
            "press@example.com",
            "siriporn@example.net"
        ]
    );

    let seed = std::fs::read_to_string(repo_path(SEED_RECORD)).unwrap();
    let record = bulletin::domain::record::parse_record(&seed, "seed", "en").unwrap();
    for m in &received {
        assert_eq!(m.recipients.len(), 1, "one recipient per message");
        let msg = m.parsed();
        assert_eq!(msg.subject(), Some(record.title.as_str()));
        assert_eq!(
            msg.from().unwrap().first().unwrap().address(),
            Some("bulletin@example.org")
        );
        let to = msg.to().unwrap().first().unwrap();
        assert_eq!(to.address(), Some(m.recipients[0].as_str()));
        if m.recipients[0] == "li.mingyu@example.org" {
            assert_eq!(to.name(), Some("李明宇"));
        }
        assert!(msg.message_id().is_some());

        // One-click unsubscribe, signed per recipient.
        let lu = msg.header_raw("List-Unsubscribe").unwrap().trim();
        let url = lu.trim_start_matches('<').trim_end_matches('>');
        assert!(
            url.starts_with("https://news.example.org/unsubscribe/"),
            "{url}"
        );
        let token = url.rsplit('/').next().unwrap();
        assert!(
            t.app
                .signer
                .parse(token)
                .is_some_and(|p| t.app.signer.issued_for(&p, &m.recipients[0])),
            "token does not verify"
        );
        assert_eq!(
            msg.header_raw("List-Unsubscribe-Post").unwrap().trim(),
            "List-Unsubscribe=One-Click"
        );

        // multipart/alternative: text then HTML.
        let ct = msg.content_type().unwrap();
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("multipart", Some("alternative"))
        );
        let text = msg.body_text(0).unwrap();
        let html = msg.body_html(0).unwrap();
        assert!(
            html.contains(url),
            "HTML carries this recipient's unsubscribe link"
        );
        assert!(
            text.contains(url),
            "text carries this recipient's unsubscribe link"
        );
        assert!(!html.contains("<style"), "CSS is inlined");
        assert!(html.contains("style=\""), "CSS is inlined");

        let must_have = [
            "30 July 2020",
            record.event.as_str(),
            "Ministry of Ecology and Environment (MEE)",
            "Lancang-Mekong Cooperation China Secretariat",
            "Yunnan Department of Ecology and Environment",
            "No. 5 Houyingfang Hutong,",
            "Xicheng District, Beijing 100035, P.R. China",
            "+86-010-82268277/8221",
            "+86-010-82200579",
            "tang.huaqing@fecomee.org.cn",
            "li.xia@fecomee.org.cn",
            "http://www.mepfeco.org.cn",
            "lancang-mekongec",
        ];
        assert!(text.contains("CONTACT US") && html.contains("Contact Us"));
        let unwrapped_text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let unwrapped_html = html.split_whitespace().collect::<Vec<_>>().join(" ");
        let html_plain = unwrapped_html
            .replace("&amp;", "&")
            .replace("&#39;", "'")
            .replace("&quot;", "\"");
        for s in must_have
            .iter()
            .copied()
            .chain(record.topics.iter().map(String::as_str))
            .chain(
                record
                    .highlights
                    .iter()
                    .flat_map(|h| [h.speaker.as_str(), h.role.as_str()]),
            )
        {
            let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(unwrapped_text.contains(&s), "text part lacks {s:?}");
            assert!(html_plain.contains(&s), "HTML part lacks {s:?}");
        }
        // Every expert's view, and the attendees, in full.
        for h in &record.highlights {
            let first_words: String = h
                .view
                .split_whitespace()
                .take(8)
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                unwrapped_text.contains(&first_words),
                "text lacks view {first_words:?}"
            );
            assert!(
                html_plain.contains(&first_words),
                "HTML lacks view {first_words:?}"
            );
        }
        let attendees = record
            .attendees
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(unwrapped_text.contains(&attendees));
    }

    // Running again sends nothing more: one row per recipient, already sent.
    let again = t.app.run_pending(None).await.unwrap();
    assert_eq!(again.claimed, 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 3, "the server got a message twice");
}

#[tokio::test]
async fn chinese_and_thai_subjects_are_rfc2047_encoded() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("a@example.org", Some("Nguyễn Thị Hồng"))])
        .await;
    let title = "澜湄合作圆桌对话 การประชุมโต๊ะกลมแม่โขง-ล้านช้าง";
    let path = t.write_record("zh.toml", &small_record("zh-th", title));
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
    let subject_line = raw.lines().find(|l| l.starts_with("Subject:")).unwrap();
    assert!(
        subject_line.contains("=?utf-8?"),
        "subject not encoded: {subject_line}"
    );
    assert!(
        raw.is_ascii()
            || !raw
                .lines()
                .take_while(|l| !l.is_empty())
                .any(|l| !l.is_ascii()),
        "raw 8-bit header"
    );
    let msg = m.parsed();
    assert_eq!(msg.subject(), Some(title));
    assert_eq!(
        msg.to().unwrap().first().unwrap().name(),
        Some("Nguyễn Thị Hồng")
    );
    assert!(msg.body_text(0).unwrap().contains(title));
    assert!(msg.body_html(0).unwrap().contains(title));
}

#[tokio::test]
async fn a_subscriber_who_leaves_after_fan_out_is_suppressed_not_sent() {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    let list = t.list_with("partners", PEOPLE).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app
        .store
        .set_subscriber_status(
            list,
            "press@example.com",
            SubscriberStatus::Unsubscribed,
            t.clock_now(),
        )
        .await
        .unwrap();
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!((r.sent, r.suppressed), (2, 1));
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let press = rows
        .iter()
        .find(|r| r.recipient == "press@example.com")
        .unwrap();
    assert_eq!(press.status, DeliveryStatus::Suppressed);
    assert!(press
        .last_error
        .as_deref()
        .unwrap()
        .contains("unsubscribed"));
    let got: Vec<_> = sink
        .wait_for(2)
        .iter()
        .flat_map(|m| m.recipients.clone())
        .collect();
    assert!(!got.contains(&"press@example.com".to_string()));
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn smtp_server_down_means_retry_later_then_delivered_once() {
    let port = free_port();
    let t = spawn_app(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", PEOPLE).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();

    // Nobody listens: every row is retrying, with a next attempt time and the error kept.
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (0, 3, 0), "{r:?}");
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    for row in &rows {
        assert_eq!(row.status, DeliveryStatus::Retrying);
        let next = row.next_attempt_at.unwrap();
        let wait = next - t.clock_now();
        assert!(
            wait >= chrono::Duration::seconds(30) && wait <= chrono::Duration::seconds(60),
            "{wait}"
        );
        assert!(row.last_error.is_some());
    }
    // Not due yet: nothing is attempted.
    assert_eq!(t.app.run_pending(None).await.unwrap().claimed, 0);

    // The server comes back; time passes; everything goes out once.
    let sink = SmtpSink::start_on(port, &[]);
    t.clock.advance(chrono::Duration::seconds(61));
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!(r.sent, 3, "{r:?}");
    assert_eq!(sink.wait_for(3).len(), 3);
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert!(rows
        .iter()
        .all(|r| r.status == DeliveryStatus::Sent && r.attempts == 2));
}

#[tokio::test]
async fn hard_rejects_fail_at_once_with_the_server_answer() {
    // smtp-sink -f RCPT: reject every RCPT TO with the hard reply given by -B.
    let port = free_port();
    let sink = SmtpSink::start_on(
        port,
        &[
            "-f",
            "RCPT",
            "-B",
            "550 5.1.1 Recipient address rejected: no such user",
        ],
    );
    let _ = &sink;
    let t = spawn_app(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", &[("gone@example.org", None)]).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let r = t.app.run_pending(None).await.unwrap();
    let row = &t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap()[0];
    assert_eq!((r.sent, r.failed), (0, 1), "{r:?} {row:?}");
    assert_eq!(row.status, DeliveryStatus::Failed);
    assert_eq!(row.last_code, Some(550), "{row:?}");
    assert!(
        row.last_error.as_deref().unwrap().contains("no such user"),
        "{row:?}"
    );
    assert_eq!(row.attempts, 1);
}

#[tokio::test]
async fn an_operator_can_retry_failed_deliveries() {
    let port = free_port();
    let hard = SmtpSink::start_on(port, &["-f", "RCPT"]);
    let t = spawn_app(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", PEOPLE).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().failed, 3);
    let b = t.app.store.bulletins(10).await.unwrap();
    assert_eq!(b[0].state, BulletinState::Done);

    // The relay is fixed; the operator retries the bulletin's failed rows.
    drop(hard);
    let sink = SmtpSink::start_on(port, &[]);
    let n = t
        .app
        .store
        .requeue(
            Some(b[0].id),
            None,
            &[bulletin::domain::DeliveryStatus::Failed],
            t.clock_now(),
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        t.app.store.bulletin(b[0].id).await.unwrap().unwrap().state,
        BulletinState::Sending
    );
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 3);
    assert_eq!(sink.wait_for(3).len(), 3);
    assert_eq!(
        t.app.store.bulletin(b[0].id).await.unwrap().unwrap().state,
        BulletinState::Done
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_claims_the_next_batch_while_one_sends_and_when_told_to_stop_hands_back_what_it_has_not_started(
) {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        extra: "batch_size = 20",
        ..Default::default()
    })
    .await;
    let people: Vec<String> = (0..1500).map(|i| format!("r{i}@example.org")).collect();
    let list: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    t.list_with("partners", &list).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();

    let sending = DeliveryFilter {
        status: Some(bulletin::domain::DeliveryStatus::Sending),
        ..Default::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let (d, s) = (t.app.dispatcher.clone(), stop.clone());
    let drain = tokio::spawn(async move { d.drain_until(&s).await });
    // Rows claimed at once: above one batch only if the next batch is claimed before the
    // current one has finished sending.
    let mut most_claimed = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sink.messages().len() < 300 {
        assert!(std::time::Instant::now() < deadline, "sending stalled");
        let n = t.app.store.count_deliveries(&sending).await.unwrap();
        most_claimed = most_claimed.max(n);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stop.cancel();
    let r = drain.await.unwrap().unwrap();
    assert!(
        most_claimed > 20,
        "the next batch was claimed while one was sending (at most {most_claimed} rows claimed at once)"
    );
    // Told to stop, it claimed nothing more, finished the sends it had started and handed
    // the rows it had claimed but not started back to the queue (none is left `sending`).
    assert_eq!(t.app.store.count_deliveries(&sending).await.unwrap(), 0);
    assert_eq!((r.failed, r.retrying), (0, 0), "{r:?}");
    assert!(r.sent <= r.claimed, "{r:?}");
    assert!(r.sent < 1500, "stopped before the end: {r:?}");
    let queued = t
        .app
        .store
        .count_deliveries(&DeliveryFilter {
            status: Some(bulletin::domain::DeliveryStatus::Queued),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(queued as usize, 1500 - r.sent);
    assert_eq!(sink.wait_for(r.sent).len(), r.sent);
}

/// A bulletin to `n` readers (r0…), fired.
async fn fired_to(n: usize, o: Options) -> TestApp {
    let t = spawn_app(o).await;
    let people: Vec<String> = (0..n).map(|i| format!("r{i}@example.org")).collect();
    let list: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    t.list_with("partners", &list).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_about_to_expire_is_given_back_unsent() {
    // Once a claim expires, another pass or instance may claim the row and send it too;
    // so a row whose claim is in its last quarter is not started but made due again.
    let port = free_port();
    let slow = SmtpSink::start_on(port, &["-w", "1"]); // 1 s before answering DATA
    let t = fired_to(
        6,
        Options {
            smtp_port: port,
            extra: "lease_seconds = 60",
            ..Default::default()
        },
    )
    .await;
    let d = t.app.dispatcher.clone();
    let pass = tokio::spawn(async move { d.run_once().await });
    // Once the rows are claimed, the first sends (as many as are let in flight) start at
    // once; the rest wait for them, a second at least.
    let sending = DeliveryFilter {
        status: Some(bulletin::domain::DeliveryStatus::Sending),
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while t.app.store.count_deliveries(&sending).await.unwrap() < 6 {
        assert!(std::time::Instant::now() < deadline, "nothing was claimed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    t.clock.advance(chrono::Duration::seconds(50)); // 10 s of the 60 s lease left
    let r = pass.await.unwrap().unwrap();
    assert!(
        r.sent > 0 && r.sent < 6 && r.sent + r.retrying == 6,
        "the sends already started finish, the rest are given back: {r:?}"
    );
    let all = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let given_back: Vec<_> = all
        .iter()
        .filter(|d| d.status != DeliveryStatus::Sent)
        .collect();
    assert_eq!(given_back.len(), r.retrying);
    for d in &given_back {
        assert_eq!(d.attempts, 0, "no attempt spent: {d:?}");
        assert!(
            d.last_error
                .as_deref()
                .unwrap_or("")
                .contains("about to expire"),
            "{d:?}"
        );
    }
    assert_eq!(slow.wait_for(r.sent).len(), r.sent);

    // They are due at once, and go out once.
    let again = t.app.run_pending(None).await.unwrap();
    assert_eq!(again.sent, r.retrying, "{again:?}");
    let mut got: Vec<String> = slow
        .wait_for(6)
        .iter()
        .flat_map(|m| m.recipients.clone())
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(
        (got.len(), slow.messages().len()),
        (6, 6),
        "each reader once"
    );
}

#[tokio::test]
async fn a_rate_limit_shrinks_the_claim_to_what_it_can_send_within_half_the_lease() {
    let sink = SmtpSink::start();
    let t = fired_to(
        25,
        Options {
            smtp_port: sink.port,
            smtp_extra: "rate_per_second = 2",
            smtp_timeout: 1,
            // The shortest lease the 1 s timeouts allow: twice the longest send (6 s).
            extra: "lease_seconds = 12",
            ..Default::default()
        },
    )
    .await;
    // 2 a second for half of a 12 s lease: 12 rows, not the default batch of 200.
    let r = t.app.dispatcher.run_once().await.unwrap();
    assert_eq!((r.claimed, r.sent), (12, 12), "{r:?}");
}
