//! `POST /webhooks/bounce` (issue 15) through real HTTP on the public listener: events
//! signed as README's recipe says (the signature made by `openssl dgst` in a shell, as an
//! operator would), refused when unsigned, wrongly signed, stale by the injected clock or
//! replayed; off (404) without a secret.

use crate::harness::{spawn_app, Options, SmtpSink, TestApp, WEBHOOK_SECRET};
use bulletin::clock::Clock;
use bulletin::domain::{DeliveryStatus, SubscriberStatus};
use bulletin::store::DeliveryFilter;
use std::process::Command;

/// README's signature recipe, run by bash with openssl: the hex HMAC-SHA256 of
/// `timestamp.body` under the secret.
fn openssl_signature(ts: i64, body: &str, secret: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.*= //'"#)
        .env("TS", ts.to_string())
        .env("BODY", body)
        .env("SECRET", secret)
        .output()
        .expect("run bash and openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn post(
    http: &crate::harness::Http,
    ts: Option<i64>,
    sig: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut req = http
        .client
        .post(format!("{}/webhooks/bounce", http.public))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(ts) = ts {
        req = req.header("X-Bulletin-Timestamp", ts.to_string());
    }
    if let Some(sig) = sig {
        req = req.header("X-Bulletin-Signature", sig);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

async fn app_with_a_sent_bulletin(sink: &SmtpSink) -> (TestApp, i64) {
    let t = spawn_app(Options {
        smtp_port: sink.port,
        bounces: Some("[bounces.webhook]\n".into()),
        ..Default::default()
    })
    .await;
    let list = t
        .list_with(
            "partners",
            &[
                ("gone@example.net", None),
                ("angry@example.net", None),
                ("fine@example.net", None),
            ],
        )
        .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 3);
    (t, list)
}

/// A signed hard bounce marks its row (by Message-ID) and subscriber; a signed
/// complaint naming only the address unsubscribes it (a signed event is trusted); the
/// same event again is a replay (409), also re-signed with a new timestamp; a wrong or
/// missing signature, or a timestamp more than five minutes off the clock, is 401; a
/// body that is not an event is 400. None of the refused ones changes anything.
#[tokio::test]
async fn signed_events_are_recorded_once_and_everything_else_is_refused() {
    let sink = SmtpSink::start();
    let (t, list) = app_with_a_sent_bulletin(&sink).await;
    let http = t.start_http().await;
    let rows = t
        .app
        .store
        .deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let row = |who: &str| rows.iter().find(|r| r.recipient == who).unwrap().clone();
    let now = t.clock.now().timestamp();

    let hard = serde_json::json!({
        "id": "evt-1",
        "recipient": "gone@example.net",
        "kind": "hard",
        "status": "5.1.1",
        "diagnostic": "550 5.1.1 no such user",
        "message_id": row("gone@example.net").message_id.unwrap(),
    })
    .to_string();
    let sig = format!("sha256={}", openssl_signature(now, &hard, WEBHOOK_SECRET));
    let (status, body) = post(&http, Some(now), Some(&sig), &hard).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivery_id"], row("gone@example.net").id);
    assert_eq!(body["row_bounced"], true);
    assert_eq!(body["duplicate"], false);
    let first = body["id"].as_i64().unwrap();

    // The same request again: a replay. Re-signed with a later timestamp: the same event.
    let (status, body) = post(&http, Some(now), Some(&sig), &hard).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("replay")),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&first.to_string()));
    let later = now + 30;
    let resigned = format!("sha256={}", openssl_signature(later, &hard, WEBHOOK_SECRET));
    let (status, _) = post(&http, Some(later), Some(&resigned), &hard).await;
    assert_eq!(status, 409);

    // Refused before anything is read: no, a wrong or a malformed signature; another
    // secret; a body changed after signing.
    let complaint = serde_json::json!({
        "recipient": "Angry@Example.net",
        "kind": "complaint",
    })
    .to_string();
    let good = format!(
        "sha256={}",
        openssl_signature(now, &complaint, WEBHOOK_SECRET)
    );
    let wrong = format!(
        "sha256={}",
        openssl_signature(now, &complaint, "another-secret-0123456789")
    );
    let altered = complaint.replace("complaint", "hard");
    for (ts, sig, body) in [
        (Some(now), None, complaint.as_str()),
        (None, Some(good.as_str()), complaint.as_str()),
        (Some(now), Some(wrong.as_str()), complaint.as_str()),
        (Some(now), Some("sha256=zz"), complaint.as_str()),
        (
            Some(now),
            Some(good.trim_start_matches("sha256=")),
            complaint.as_str(),
        ),
        (Some(now + 1), Some(good.as_str()), complaint.as_str()),
        (Some(now), Some(good.as_str()), altered.as_str()),
    ] {
        let (status, b) = post(&http, ts, sig, body).await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (401, Some("bad_signature")),
            "{ts:?} {sig:?} {body}: {b}"
        );
    }
    // Stale: signed correctly, but more than five minutes from the injected clock.
    let old = now - 301;
    let stale = format!(
        "sha256={}",
        openssl_signature(old, &complaint, WEBHOOK_SECRET)
    );
    let (status, b) = post(&http, Some(old), Some(&stale), &complaint).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (401, Some("stale_timestamp")),
        "{b}"
    );
    let ahead = now + 301;
    let future = format!(
        "sha256={}",
        openssl_signature(ahead, &complaint, WEBHOOK_SECRET)
    );
    assert_eq!(
        post(&http, Some(ahead), Some(&future), &complaint).await.0,
        401
    );
    // Signed, but not an event.
    for bad in [
        r#"{"recipient":"a@example.net","kind":"spam"}"#,
        r#"{"recipient":"not an address","kind":"hard"}"#,
        r#"{"recipient":"a@example.net","kind":"hard","status":"550"}"#,
        r#"{"recipient":"a@example.net","kind":"hard","colour":"red"}"#,
        "not json",
    ] {
        let sig = format!("sha256={}", openssl_signature(now, bad, WEBHOOK_SECRET));
        let (status, b) = post(&http, Some(now), Some(&sig), bad).await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (400, Some("invalid_event")),
            "{bad}: {b}"
        );
    }
    assert_eq!(
        t.app.ops().bounces(None, 10).await.unwrap().len(),
        1,
        "nothing refused was kept"
    );
    let subs = t.app.store.subscribers_page(list, 0, 10).await.unwrap();
    let sub = |who: &str| subs.iter().find(|s| s.email == who).unwrap().status;
    assert_eq!(sub("angry@example.net"), SubscriberStatus::Active);

    // The complaint, signed and fresh: matched by its address, unsubscribed.
    let (status, body) = post(&http, Some(now), Some(&good), &complaint).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivery_id"], row("angry@example.net").id);
    assert_eq!(body["subscribers_unsubscribed"], 1);
    // Without an id, the signature is its identity: the same request is a replay.
    assert_eq!(post(&http, Some(now), Some(&good), &complaint).await.0, 409);

    let status_of = |id| {
        let store = t.app.store.clone();
        async move { store.delivery(id).await.unwrap().unwrap().status }
    };
    assert_eq!(
        status_of(row("gone@example.net").id).await,
        DeliveryStatus::Bounced
    );
    assert_eq!(
        status_of(row("fine@example.net").id).await,
        DeliveryStatus::Sent
    );
    let subs = t.app.store.subscribers_page(list, 0, 10).await.unwrap();
    let sub = |who: &str| subs.iter().find(|s| s.email == who).unwrap().status;
    assert_eq!(sub("gone@example.net"), SubscriberStatus::Bounced);
    assert_eq!(sub("angry@example.net"), SubscriberStatus::Unsubscribed);
    assert_eq!(sub("fine@example.net"), SubscriberStatus::Active);
    let kept = t.app.ops().bounces(None, 10).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert!(kept
        .iter()
        .all(|b| b.source == bulletin::store::BounceSource::Webhook));
    // The event is kept whole, as posted.
    assert_eq!(
        t.app.ops().bounce_raw(first).await.unwrap(),
        hard.as_bytes()
    );
}

/// Without `[bounces.webhook]` (or with it and no secret) the endpoint is off: 404,
/// whatever is sent, and nothing is kept.
#[tokio::test]
async fn without_a_secret_the_webhook_is_off() {
    for bounces in [
        None,
        Some("[bounces.webhook]\nsecret_env = \"UNSET_IN_THIS_TEST\"\n"),
    ] {
        let t = spawn_app(Options {
            bounces: bounces.map(str::to_string),
            ..Default::default()
        })
        .await;
        let http = t.start_http().await;
        let now = t.clock.now().timestamp();
        let body = r#"{"recipient":"a@example.net","kind":"hard"}"#;
        let sig = format!("sha256={}", openssl_signature(now, body, WEBHOOK_SECRET));
        let (status, b) = post(&http, Some(now), Some(&sig), body).await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (404, Some("webhook_disabled")),
            "{b}"
        );
        assert!(t.app.ops().bounces(None, 10).await.unwrap().is_empty());
    }
}

/// The secret is refused when short, and never printed by the configuration's Debug.
#[test]
fn the_webhook_secret_is_checked_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let text = |section: &str| {
        crate::harness::config_text(
            &dir.path().join("b.db"),
            &Options {
                bounces: Some(section.into()),
                ..Default::default()
            },
        )
    };
    let env = |secret: &'static str| {
        move |n: &str| (n == "BULLETIN_BOUNCE_WEBHOOK_SECRET").then(|| secret.to_string())
    };
    let e = bulletin::config::Config::parse(
        &text("[bounces.webhook]\n"),
        std::path::Path::new("t.toml"),
        &env("short"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("bounces.webhook.secret_env") && e.contains("16"),
        "{e}"
    );
    assert!(!e.contains("short"), "{e}");
    let c = bulletin::config::Config::parse(
        &text("[bounces.webhook]\n"),
        std::path::Path::new("t.toml"),
        &env("a-long-enough-webhook-secret"),
    )
    .unwrap();
    assert!(c.bounces.webhook.is_some());
    let debug = format!("{c:?}");
    assert!(!debug.contains("a-long-enough-webhook-secret"), "{debug}");
}
