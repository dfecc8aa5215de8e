//! The admin API through real HTTP against the real app: auth, each endpoint's happy path
//! and a bad-input path that changes nothing, and /metrics after real sends.

use crate::harness::*;
use bulletin::domain::RecordState;
use bulletin::store::BulletinState;
use serde_json::{json, Value};

const PEOPLE: &[(&str, Option<&str>)] = &[
    ("li.mingyu@example.org", Some("李明宇")),
    ("press@example.com", None),
];

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v = r.json::<Value>().await.expect("a JSON body");
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn auth_is_required_and_checked_except_for_health() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    for path in [
        "/api/records",
        "/api/bulletins",
        "/api/deliveries",
        "/metrics",
    ] {
        let url = format!("{}{path}", http.admin);
        let r = http.client.get(&url).send().await.unwrap();
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer",
            "{path} without a token"
        );
        let (s, v) = json_of(r).await;
        assert_eq!((s, code(&v)), (401, "unauthorized"), "{path}: {v}");
        let r = http
            .client
            .get(&url)
            .bearer_auth("test-admin-token-0123456780")
            .send()
            .await
            .unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!((s, code(&v)), (401, "unauthorized"), "{path}: {v}");
        assert!(
            !v.to_string().contains(ADMIN_TOKEN),
            "the token is never echoed"
        );
    }
    // The scheme is case-insensitive (RFC 9110); the token is not.
    let r = http
        .client
        .get(format!("{}/api/records", http.admin))
        .header("authorization", format!("bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .client
        .get(format!("{}/api/records", http.admin))
        .header(
            "authorization",
            format!("Bearer {}", ADMIN_TOKEN.to_uppercase()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A POST without a token changes nothing.
    let r = http
        .client
        .post(format!("{}/api/notices", http.admin))
        .json(&json!({"title": "t", "body": "b", "lists": ["partners"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(t.app.store.bulletins(10).await.unwrap().is_empty());

    let (s, v) = json_of(
        http.client
            .get(format!("{}/healthz", http.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = json_of(
        http.client
            .get(format!("{}/readyz", http.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["store"].as_str()), (200, Some("ok")), "{v}");
    let (s, v) = json_of(http.get("/api/nothing-here").send().await.unwrap()).await;
    assert_eq!((s, code(&v)), (404, "no_such_endpoint"));
}

#[tokio::test]
async fn records_list_show_preview_and_approve() {
    let t = spawn_app(Options::default()).await;
    let id = t.import(&repo_path(SEED_RECORD)).await;
    let http = t.start_http().await;

    let (s, v) = json_of(http.get("/api/records").send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["state"], "draft");
    let (s, v) = json_of(http.get("/api/records?state=bogus").send().await.unwrap()).await;
    assert_eq!((s, code(&v)), (400, "invalid_query"));
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("state:"));

    let (s, v) = json_of(
        http.get(&format!("/api/records/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["record"]["id"], id.as_str());
    let (s, v) = json_of(http.get("/api/records/no-such").send().await.unwrap()).await;
    assert_eq!((s, code(&v)), (404, "record_not_found"));

    let r = http
        .get(&format!("/api/records/{id}/preview?format=text"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.starts_with("Subject: "), "{text}");
    assert!(text.contains("/unsubscribe/PREVIEW"));
    let r = http
        .get(&format!("/api/records/{id}/preview"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("<html"));
    let (s, v) = json_of(
        http.get(&format!("/api/records/{id}/preview?format=pdf"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code(&v)), (400, "invalid_query"), "{v}");

    // The approver is the signed-in actor: a body naming someone else changes nothing
    // about who approved (it is ignored), and nothing is approved by the reads above.
    let stored = t.app.store.record(&id).await.unwrap().unwrap();
    assert_eq!(stored.state, RecordState::Draft, "nothing changed");
    let (s, v) = json_of(
        http.post("/api/records/no-such/approve")
            .json(&json!({"by": "Li Xia"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code(&v)), (404, "record_not_found"));

    let (s, v) = json_of(
        http.post(&format!("/api/records/{id}/approve"))
            .json(&json!({"by": "Li Xia"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["outcome"].as_str()), (200, Some("approved")), "{v}");
    let stored = t.app.store.record(&id).await.unwrap().unwrap();
    assert_eq!(stored.state, RecordState::Approved);
    // The bootstrap token's actor, not the free text of the body.
    assert_eq!(stored.approved_by.as_deref(), Some("admin-token"));
}

#[tokio::test]
async fn bulletins_deliveries_with_attempts_retry_pause_resume_and_metrics() {
    // Every RCPT is refused at first: the deliveries fail with the server's answer.
    let port = free_port();
    let hard = SmtpSink::start_on(
        port,
        &[
            "-f",
            "RCPT",
            "-B",
            "550 5.1.1 Recipient address rejected: no such user",
        ],
    );
    let t = spawn_app(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", PEOPLE).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().failed, 2);
    let http = t.start_http().await;

    let (s, v) = json_of(http.get("/api/bulletins").send().await.unwrap()).await;
    assert_eq!(s, 200);
    let bid = v[0]["id"].as_i64().unwrap();
    assert_eq!(v[0]["deliveries"]["by_channel"]["email"]["failed"], 2);
    let (s, v) = json_of(http.get("/api/bulletins?limit=0").send().await.unwrap()).await;
    assert_eq!((s, code(&v)), (400, "invalid_query"));

    let (s, v) = json_of(
        http.get(&format!("/api/bulletins/{bid}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["state"], "done");
    assert_eq!(v["deliveries"]["total"], 2);
    assert_eq!(v["deliveries"]["remaining"], 0);
    let (s, v) = json_of(http.get("/api/bulletins/999").send().await.unwrap()).await;
    assert_eq!((s, code(&v)), (404, "bulletin_not_found"));
    let (s, v) = json_of(http.get("/api/bulletins/abc").send().await.unwrap()).await;
    assert_eq!((s, code(&v)), (400, "invalid_path"));

    // Deliveries: filtered, paged, each with its attempts and the server's answer.
    let (s, v) = json_of(
        http.get(&format!(
            "/api/deliveries?bulletin={bid}&channel=email&status=failed&since=1h&limit=1"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 2);
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1);
    let d = &v["deliveries"][0];
    assert_eq!(d["history"][0]["code"], 550);
    // Who sent it: the claimer that attempted the row (this process's store).
    assert!(
        d["claimed_by"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("{}/", t.app.store.claimer().base()))),
        "{d}"
    );
    assert!(d["history"][0]["reply"]
        .as_str()
        .unwrap()
        .contains("no such user"));
    let (_, v2) = json_of(
        http.get(&format!("/api/deliveries?bulletin={bid}&limit=1&offset=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(v2["deliveries"][0]["id"], d["id"], "offset pages on");
    let (_, v3) = json_of(
        http.get("/api/deliveries?recipient=press@example.com")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v3["total"], 1);
    // The console's search: a domain finds only that domain, anything else a substring.
    for (q, want) in [
        ("%40example.com", vec!["press@example.com"]),
        ("MINGYU", vec!["li.mingyu@example.org"]),
        ("%40example", vec![]),
    ] {
        let (_, v) = json_of(
            http.get(&format!("/api/deliveries?bulletin={bid}&q={q}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let got: Vec<_> = v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["recipient"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "q={q}: {v}");
    }
    for bad in [
        "status=lost",
        "channel=fax",
        "since=yesterday",
        "limit=5000",
        "stauts=failed",
        "bulletin=x",
    ] {
        let (s, v) = json_of(
            http.get(&format!("/api/deliveries?{bad}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, code(&v)), (400, "invalid_query"), "{bad}: {v}");
    }

    // Pausing a finished bulletin is refused and changes nothing.
    let (s, v) = json_of(
        http.post(&format!("/api/bulletins/{bid}/pause"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code(&v)), (409, "bulletin_not_pausable"), "{v}");
    let (s, v) = json_of(http.post("/api/bulletins/999/resume").send().await.unwrap()).await;
    assert_eq!((s, code(&v)), (404, "bulletin_not_found"));

    // Retry: bad input first, then the bulletin's failed rows.
    let (s, v) = json_of(
        http.post("/api/deliveries/retry")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code(&v)), (422, "invalid_field"));
    let (s, v) = json_of(
        http.post("/api/deliveries/retry")
            .json(&json!({"delivery": 9999}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code(&v)), (404, "delivery_not_found"));
    assert_eq!(
        t.app.store.bulletin(bid).await.unwrap().unwrap().state,
        BulletinState::Done,
        "nothing requeued"
    );

    drop(hard);
    let sink = SmtpSink::start_on(port, &[]);
    let (s, v) = json_of(
        http.post("/api/deliveries/retry")
            .json(&json!({"bulletin": bid}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["requeued"].as_i64()), (200, Some(2)), "{v}");
    // The API does not send: nothing reached the server yet.
    assert!(sink.messages().is_empty());

    // Paused: the dispatcher leaves its rows alone.
    let (s, v) = json_of(
        http.post(&format!("/api/bulletins/{bid}/pause"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("paused")), "{v}");
    assert_eq!(t.app.run_pending(None).await.unwrap().claimed, 0);
    assert!(sink.messages().is_empty());
    let (s, v) = json_of(
        http.post(&format!("/api/bulletins/{bid}/resume"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("sending")), "{v}");
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 2);
    assert_eq!(sink.wait_for(2).len(), 2);

    // Metrics after real sends: outcomes, latency, retries, firings, ledger gauges.
    let r = http.get("/metrics").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let m = r.text().await.unwrap();
    for line in [
        "bulletin_deliveries_total{channel=\"email\",outcome=\"sent\"} 2",
        "bulletin_deliveries_total{channel=\"email\",outcome=\"failed\"} 2",
        "bulletin_send_duration_seconds_count{channel=\"email\"} 4",
        "bulletin_scheduler_firings_total{schedule=\"weekday-morning\",trigger=\"manual\"} 1",
        "bulletin_ledger_rows{channel=\"email\",status=\"sent\"} 2",
        "bulletin_ledger_rows{channel=\"email\",status=\"failed\"} 0",
        "bulletin_ledger_rows{channel=\"email\",status=\"queued\"} 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in:\n{m}");
    }
}

#[tokio::test]
async fn metrics_count_automatic_retries_and_scrape_needs_no_send() {
    // No server at first: a transient failure, retried once the server is up.
    let port = free_port();
    let t = spawn_app(Options {
        smtp_port: port,
        ..Default::default()
    })
    .await;
    t.list_with("partners", &PEOPLE[..1]).await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let http = t.start_http().await;
    let m = http
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l == "bulletin_ledger_rows{channel=\"email\",status=\"queued\"} 1"),
        "{m}"
    );
    let ready: Value = http
        .get("/readyz")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["channels"], json!({}), "no attempt yet: {ready}");
    assert_eq!(t.app.run_pending(None).await.unwrap().retrying, 1);
    let ready: Value = http
        .get("/readyz")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["channels"]["email"]["outcome"], "retrying", "{ready}");
    let sink = SmtpSink::start_on(port, &[]);
    t.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 1);
    assert_eq!(sink.wait_for(1).len(), 1);
    let ready: Value = http
        .get("/readyz")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["channels"]["email"]["outcome"], "sent", "{ready}");
    let m = http
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "bulletin_deliveries_total{channel=\"email\",outcome=\"retrying\"} 1",
        "bulletin_deliveries_total{channel=\"email\",outcome=\"sent\"} 1",
        "bulletin_delivery_retries_total{channel=\"email\"} 1",
        "bulletin_ledger_rows{channel=\"email\",status=\"sent\"} 1",
        "bulletin_ledger_rows{channel=\"email\",status=\"retrying\"} 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in:\n{m}");
    }
}
