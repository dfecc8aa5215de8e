//! SMTP faults against a real server (Postfix's smtp-sink and its fault flags): soft and
//! hard rejects, a connection lost after the data, a refused sender, a slow server.

use crate::harness::*;
use bulletin::domain::DeliveryStatus;
use bulletin::store::BulletinState;
use bulletin::store::{DeliveryFilter, DeliveryRow};
use std::time::{Duration, Instant};

const PEOPLE: &[(&str, Option<&str>)] = &[
    ("a@example.org", Some("A")),
    ("b@example.org", Some("B")),
    ("c@example.org", Some("C")),
];

async fn rows(t: &TestApp) -> Vec<DeliveryRow> {
    t.app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap()
}

async fn fired(o: Options) -> TestApp {
    let t = spawn_app(o).await;
    t.list_with("partners", PEOPLE).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t
}

#[tokio::test]
async fn soft_rejects_are_retried_and_delivered_once_with_every_attempt_kept() {
    let port = free_port();
    let soft = SmtpSink::start_on(port, &["-r", "RCPT"]); // 450 on every RCPT TO
    let t = fired(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (0, 3, 0), "{r:?}");
    assert!(rows(&t)
        .await
        .iter()
        .all(|r| r.last_code == Some(450) && r.attempts == 1));
    drop(soft);

    let sink = SmtpSink::start_on(port, &[]);
    t.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 3);
    let got = sink.wait_for(3);
    let mut rcpts: Vec<_> = got.iter().flat_map(|m| m.recipients.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["a@example.org", "b@example.org", "c@example.org"],
        "each exactly once"
    );
    let ids: Vec<i64> = rows(&t).await.iter().map(|r| r.id).collect();
    let attempts = t.app.store.attempts(&ids).await.unwrap();
    assert_eq!(attempts.len(), 6, "both attempts of every row are kept");
    assert_eq!(attempts.iter().filter(|a| a.code == Some(450)).count(), 3);
    assert_eq!(attempts.iter().filter(|a| a.code == Some(250)).count(), 3);
}

#[tokio::test]
async fn a_connection_lost_after_the_data_is_retried_and_flagged_ambiguous() {
    let port = free_port();
    let cut = SmtpSink::start_on(port, &["-q", "."]); // hang up after the final "." unanswered
    let t = fired(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!(r.retrying, 3, "{r:?}");
    for row in rows(&t).await {
        assert!(row.ambiguous, "the message may have arrived: {row:?}");
        assert!(
            row.last_error
                .as_deref()
                .unwrap()
                .contains("may have been delivered"),
            "{row:?}"
        );
    }
    drop(cut);

    let sink = SmtpSink::start_on(port, &[]);
    t.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 3);
    assert_eq!(sink.wait_for(3).len(), 3);
    let ambiguous = t
        .app
        .store
        .deliveries(&DeliveryFilter {
            ambiguous_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ambiguous.len(), 3, "listed for `deliveries --ambiguous`");
    assert!(ambiguous.iter().all(|r| r.status == DeliveryStatus::Sent));
}

#[tokio::test]
async fn a_refused_sender_pauses_the_channel_instead_of_failing_the_list() {
    let port = free_port();
    let refusing = SmtpSink::start_on(
        port,
        &[
            "-f",
            "MAIL",
            "-B",
            "553 5.7.1 Sender address rejected: not owned by you",
        ],
    );
    let t = fired(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!(r.failed, 0, "nobody failed for the relay's policy: {r:?}");
    let before = rows(&t).await;
    for row in &before {
        assert_eq!(
            (row.status.as_str(), row.attempts),
            ("retrying", 0),
            "{row:?}"
        );
        let wait = row.next_attempt_at.unwrap() - t.clock_now();
        assert!(
            wait >= chrono::Duration::seconds(299),
            "rests for channel_pause_seconds: {wait}"
        );
    }
    assert!(before.iter().any(|r| r
        .last_error
        .as_deref()
        .unwrap()
        .contains("refuses our sender")));
    let tried = before.iter().filter(|r| r.last_code == Some(553)).count();
    assert!(
        (1..=4).contains(&tried),
        "only the sends already in flight (twice the pool of 2) met the refusal; the rest were not tried: {before:?}"
    );
    drop(refusing);

    let sink = SmtpSink::start_on(port, &[]);
    t.clock.advance(chrono::Duration::seconds(301));
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 3);
    assert_eq!(sink.wait_for(3).len(), 3);
}

#[tokio::test]
async fn a_slow_server_hits_the_timeout_instead_of_hanging() {
    let port = free_port();
    let _slow = SmtpSink::start_on(port, &["-w", "30"]); // 30 s before answering DATA
    let t = fired(Options {
        smtp_port: port,
        smtp_timeout: 1,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let r = t.app.run_pending(None).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r.retrying, 3, "{r:?}");
    assert!(rows(&t).await.iter().all(|r| r
        .last_error
        .as_deref()
        .unwrap()
        .contains("no answer within 1 s")));
}

#[tokio::test]
async fn an_error_storm_pauses_the_bulletin_and_resuming_continues_where_it_stopped() {
    let port = free_port();
    let hard = SmtpSink::start_on(port, &["-f", "RCPT"]); // every recipient refused (500)
    let t = spawn_app(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    let people: Vec<String> = (0..30).map(|i| format!("p{i}@example.org")).collect();
    let refs: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    t.list_with("partners", &refs).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();

    let r = t.app.run_pending(None).await.unwrap();
    let b = &t.app.store.bulletins(1).await.unwrap()[0];
    assert_eq!(b.state, BulletinState::Paused, "{r:?}");
    assert!(
        (20..=24).contains(&r.failed),
        "stopped after storm_min_attempts (+ sends in flight: twice the pool of 2): {r:?}"
    );
    let untouched = rows(&t)
        .await
        .into_iter()
        .filter(|r| r.attempts == 0)
        .count();
    assert_eq!(untouched, 30 - r.failed, "the rest were not attempted");
    drop(hard);

    let sink = SmtpSink::start_on(port, &[]);
    t.app.store.set_bulletin_paused(b.id, false).await.unwrap();
    let r2 = t.app.run_pending(None).await.unwrap();
    assert_eq!(r2.sent, 30 - r.failed, "{r2:?}");
    assert_eq!(sink.wait_for(untouched).len(), untouched);
}

#[tokio::test]
async fn repeated_hard_failures_mark_an_address_bounced() {
    let port = free_port();
    let _hard = SmtpSink::start_on(port, &["-f", "RCPT", "-B", "550 5.1.1 No such user"]);
    let t = spawn_app(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    let list = t.list_with("partners", &[("gone@example.org", None)]).await;
    for i in 1..=3 {
        let id = t
            .import(&t.write_record(&format!("r{i}.toml"), &small_record(&format!("r{i}"), "T")))
            .await;
        t.app
            .store
            .approve_record(&id, "approver", t.clock_now())
            .await
            .unwrap();
    }
    t.app.fire_now("weekday-morning").await.unwrap();
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!(r.failed, 3, "{r:?}");
    let subs = t.app.store.subscribers_page(list, 0, 10).await.unwrap();
    assert_eq!(
        subs[0].status,
        bulletin::domain::subscriber::SubscriberStatus::Bounced
    );

    // The next bulletin skips the bounced address (reversible with lists set-status).
    let id = t
        .import(&t.write_record("r4.toml", &small_record("r4", "T")))
        .await;
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();
    t.clock.advance(chrono::Duration::seconds(5));
    let out = t.app.fire_now("weekday-morning").await.unwrap();
    assert!(
        matches!(
            out,
            bulletin::scheduler::FireOutcome::Fired { deliveries: 0, .. }
        ),
        "{out:?}"
    );
}

#[tokio::test]
async fn in_one_session_some_recipients_are_refused_and_the_rest_delivered() {
    let server = SmtpSink::policy(); // aiosmtpd: hard* → 550, soft* → 450 once, others 250
    let t = spawn_app(Options {
        smtp_port: server.port,
        ..Default::default()
    })
    .await;
    t.list_with(
        "partners",
        &[
            ("ok1@example.org", None),
            ("soft1@example.org", None),
            ("hard1@example.org", None),
            ("ok2@example.org", None),
            ("soft2@example.org", None),
        ],
    )
    .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();

    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (2, 2, 1), "{r:?}");
    let hard = rows(&t)
        .await
        .into_iter()
        .find(|r| r.recipient == "hard1@example.org")
        .unwrap();
    assert_eq!(
        (hard.status.as_str(), hard.last_code),
        ("failed", Some(550))
    );
    assert!(
        hard.last_error.as_deref().unwrap().contains("no such user"),
        "{hard:?}"
    );

    t.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 2);
    let mut got: Vec<_> = server
        .wait_for(4)
        .iter()
        .flat_map(|m| m.recipients.clone())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "ok1@example.org",
            "ok2@example.org",
            "soft1@example.org",
            "soft2@example.org"
        ],
        "each once; hard1 never"
    );
    for r in rows(&t)
        .await
        .iter()
        .filter(|r| r.recipient.starts_with("soft"))
    {
        assert_eq!((r.status.as_str(), r.attempts), ("sent", 2), "{r:?}");
    }
}

#[tokio::test]
async fn a_relay_that_refuses_a_second_ehlo_is_used_without_asking_again() {
    // We ask EHLO once more to learn about PIPELINING (lettre keeps no record of it);
    // a relay that answers 503 to that must still get the mail.
    let server = SmtpSink::policy_with(&[("POLICY_ONE_EHLO", "1")]);
    let t = spawn_app(Options {
        smtp_port: server.port,
        ..Default::default()
    })
    .await;
    t.list_with(
        "partners",
        &[("ok1@example.org", None), ("ok2@example.org", None)],
    )
    .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (2, 0, 0), "{r:?}");
    assert_eq!(server.wait_for(2).len(), 2);
}

#[tokio::test]
async fn pipelined_messages_refused_at_rcpt_or_after_their_data_leave_their_neighbours_alone() {
    // With PIPELINING a message's data and the next message's MAIL, RCPT and DATA share
    // one write, so a refusal of either arrives in the middle of the other's replies.
    let server = SmtpSink::policy_with(&[("POLICY_PIPELINING", "1")]);
    let t = spawn_app(Options {
        smtp_port: server.port,
        ..Default::default()
    })
    .await;
    let people: Vec<String> = (0..24)
        .map(|i| match i % 8 {
            3 => format!("hard{i}@example.org"),
            6 => format!("refuse{i}@example.org"),
            _ => format!("ok{i}@example.org"),
        })
        .collect();
    let list: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    t.list_with("partners", &list).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();

    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (18, 0, 6), "{r:?}");
    for row in rows(&t).await {
        let want = match &row.recipient {
            p if p.starts_with("hard") => ("failed", Some(550), "no such user"),
            p if p.starts_with("refuse") => ("failed", Some(554), "content policy"),
            _ => ("sent", Some(250), ""),
        };
        assert_eq!(
            (row.status.as_str(), row.last_code, row.attempts),
            (want.0, want.1, 1),
            "{row:?}"
        );
        if row.status == DeliveryStatus::Failed {
            assert!(
                row.last_error.as_deref().unwrap_or("").contains(want.2),
                "{row:?}"
            );
        }
    }
    let received = server.wait_for(18);
    let mut got: Vec<String> = received.iter().flat_map(|m| m.recipients.clone()).collect();
    got.sort();
    let mut want: Vec<String> = people
        .iter()
        .filter(|p| p.starts_with("ok"))
        .cloned()
        .collect();
    want.sort();
    assert_eq!(got, want, "every accepted recipient once, no refused one");
    let pipelined = received
        .iter()
        .filter(|m| m.raw.starts_with(b"X-Next-Pipelined: yes"))
        .count();
    assert!(
        pipelined > 0,
        "no message's data came with the next message's commands: not pipelined"
    );
}

#[test]
fn the_pool_starts_new_connections_when_the_runtime_of_the_old_ones_is_gone() {
    // Connection tasks live on the runtime of the first send. If that runtime ends (or a
    // task dies), the next send must start new ones, not queue a message nobody takes.
    use bulletin::channel::smtp::SmtpPool;
    use bulletin::config::{SmtpConfig, TlsMode};
    let sink = SmtpSink::start();
    let pool = SmtpPool::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port: sink.port,
        tls: TlsMode::None,
        username: None,
        password: None,
        pool_size: 2,
        rate_per_second: None,
        timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
        hello_name: None,
        messages_per_connection: None,
    })
    .unwrap();
    let envelope = lettre::address::Envelope::new(
        Some("bulletin@example.org".parse().unwrap()),
        vec!["a@example.org".parse().unwrap()],
    )
    .unwrap();
    for round in 1..=2 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sent = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                pool.send(&envelope, b"Subject: round\r\n\r\nhello\r\n"),
            )
            .await
        });
        assert!(matches!(sent, Ok(Ok(_))), "round {round}: {sent:?}");
        drop(rt);
    }
    assert_eq!(sink.wait_for(2).len(), 2);
}

/// A number the policy server stamped on a dumped message (`X-Name: n`).
fn stamp(m: &Received, name: &str) -> u32 {
    let text = String::from_utf8_lossy(&m.raw);
    let found = text
        .lines()
        .take_while(|l| l.starts_with("X-"))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "));
    found
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} stamp on a received message"))
}

/// Sends a bulletin to 14 readers through a relay that takes 3 messages per session and
/// then answers MAIL FROM with 421 and hangs up; checks every reader got it once, at the
/// first attempt. Returns what the relay received.
async fn through_a_relay_of_three_per_session(smtp_extra: &'static str) -> Vec<Received> {
    let server =
        SmtpSink::policy_with(&[("POLICY_PIPELINING", "1"), ("POLICY_MAX_PER_SESSION", "3")]);
    let t = spawn_app(Options {
        smtp_port: server.port,
        smtp_extra,
        ..Default::default()
    })
    .await;
    let people: Vec<String> = (0..14).map(|i| format!("ok{i}@example.org")).collect();
    let list: Vec<(&str, Option<&str>)> = people.iter().map(|p| (p.as_str(), None)).collect();
    t.list_with("partners", &list).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();

    let r = t.app.run_pending(None).await.unwrap();
    assert_eq!((r.sent, r.retrying, r.failed), (14, 0, 0), "{r:?}");
    for row in rows(&t).await {
        assert_eq!((row.status.as_str(), row.attempts), ("sent", 1), "{row:?}");
    }
    let received = server.wait_for(14);
    let mut got: Vec<String> = received.iter().flat_map(|m| m.recipients.clone()).collect();
    got.sort();
    let mut want = people.clone();
    want.sort();
    assert_eq!(got, want, "each reader once");
    assert!(received.iter().all(|m| stamp(m, "X-Session-Message") <= 3));
    received
}

#[tokio::test]
async fn a_relay_that_ends_sessions_after_a_few_messages_costs_no_attempt() {
    // The 421 at MAIL FROM of the fourth message says the session is over, not that the
    // message failed: it goes again at once on a new connection, with no attempt spent.
    let received = through_a_relay_of_three_per_session("").await;
    assert!(
        received.iter().any(|m| stamp(m, "X-Refused-Sessions") > 0),
        "the relay never ended a session: the 421 path was not taken"
    );
}

#[tokio::test]
async fn messages_per_connection_starts_a_new_session_before_the_relay_ends_it() {
    let received = through_a_relay_of_three_per_session("messages_per_connection = 3").await;
    assert!(
        received.iter().all(|m| stamp(m, "X-Refused-Sessions") == 0),
        "the relay had to end a session: the limit was not kept"
    );
}
