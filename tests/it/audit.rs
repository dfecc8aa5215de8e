//! API parity and the audit log through real HTTP: lists and subscribers created,
//! searched and removed, a CSV import's per-line report and the export read back, a TOML
//! record uploaded (and a bad one refused by line and field), sent back and approved,
//! schedules listed and fired, and every one of those actions in `GET /api/audit` under
//! the name of the user who did it.

use crate::harness::*;
use crate::users::user_with_token;
use serde_json::{json, Value};

async fn call(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn lists_and_subscribers_by_api_with_a_csv_round_trip_all_audited() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    let op = user_with_token(&t, "otto", "operator").await;
    let a = http.admin.clone();
    let post = |p: &str| http.client.post(format!("{a}{p}")).bearer_auth(&op);
    let get = |p: &str| http.client.get(format!("{a}{p}")).bearer_auth(&op);

    let (s, v) =
        call(post("/api/lists").json(&json!({"name": "partners", "description": "Partners"})))
            .await;
    assert_eq!((s, v["created"].as_bool()), (201, Some(true)), "{v}");
    let (s, v) = call(post("/api/lists").json(&json!({"name": "partners"}))).await;
    assert_eq!((s, v["created"].as_bool()), (200, Some(false)), "{v}");
    let (s, v) = call(post("/api/lists").json(&json!({"name": "Not A Slug!"}))).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{v}"
    );

    // A CSV body: two good rows, one bad (line 3), one column ignored.
    let csv = "email,name,language,team\n\
               ana@example.org,Ana,pt,x\n\
               not-an-address,Bad,en,x\n\
               bo@lists.example.com,Bo,,x\n";
    let (s, v) = call(
        post("/api/lists/partners/import")
            .header("content-type", "text/csv")
            .body(csv),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["added"].as_u64(), v["updated"].as_u64()),
        (Some(2), Some(0)),
        "{v}"
    );
    assert_eq!(v["rejected"][0]["line"], 3, "{v}");
    let report: Vec<&str> = v["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(report.len(), 2, "{report:?}");
    assert!(
        report[0].contains("line 1: column(s) ignored") && report[0].contains("team"),
        "{report:?}"
    );
    assert!(
        report[1].starts_with("body: line 3: ") && report[1].ends_with(": skipped"),
        "{report:?}"
    );

    // One more by JSON, with a status; then search by substring and by domain, paged.
    let (s, v) = call(
        post("/api/lists/partners/subscribers")
            .json(&json!({"email": "cy@example.org", "name": "Cy", "status": "unsubscribed"})),
    )
    .await;
    assert_eq!(
        (
            s,
            v["added"]["outcome"].as_str(),
            v["status"]["status"].as_str()
        ),
        (200, Some("added"), Some("unsubscribed")),
        "{v}"
    );
    let (_, v) = call(get(
        "/api/lists/partners/subscribers?q=@example.org&limit=1",
    ))
    .await;
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["subscribers"].as_array().unwrap().len(), 1);
    assert_eq!(v["subscribers"][0]["email"], "ana@example.org");
    let (_, v) = call(get(
        "/api/lists/partners/subscribers?q=@example.org&limit=1&offset=1",
    ))
    .await;
    assert_eq!(v["subscribers"][0]["email"], "cy@example.org", "{v}");
    let (_, v) = call(get("/api/lists/partners/subscribers?q=BO")).await;
    let emails: Vec<&str> = v["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        vec!["bo@lists.example.com"],
        "by name or address, any case"
    );
    let (_, v) = call(get("/api/lists/partners/subscribers?q=50%25")).await;
    assert_eq!(v["total"], 0, "a % is a character, not a wildcard: {v}");

    // The export is what was stored, and imports back unchanged into another list.
    let r = get("/api/lists/partners/export").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let exported = r.text().await.unwrap();
    let lines: Vec<&str> = exported.lines().collect();
    assert_eq!(lines[0], "email,name,language,status,status_changed_at");
    assert_eq!(lines.len(), 4, "{exported}");
    assert!(
        lines[3].starts_with("cy@example.org,Cy,,unsubscribed,"),
        "{exported}"
    );
    call(post("/api/lists").json(&json!({"name": "copy"}))).await;
    let (_, v) = call(post("/api/lists/copy/import").body(exported.clone())).await;
    assert_eq!(
        (v["added"].as_u64(), v["rejected"].as_array().map(Vec::len)),
        (Some(3), Some(0)),
        "{v}"
    );
    let again = get("/api/lists/copy/export")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names = |csv: &str| {
        csv.lines()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&again), names(&exported));

    // Remove one; removing again is 404; an unknown list is named.
    let (s, v) = call(
        http.client
            .delete(format!(
                "{a}/api/lists/partners/subscribers?email=ana@example.org"
            ))
            .bearer_auth(&op),
    )
    .await;
    assert_eq!(
        (s, v["email"].as_str()),
        (200, Some("ana@example.org")),
        "{v}"
    );
    let (s, v) = call(
        http.client
            .delete(format!(
                "{a}/api/lists/partners/subscribers?email=ana@example.org"
            ))
            .bearer_auth(&op),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("subscriber_not_found")),
        "{v}"
    );
    let (s, v) = call(get("/api/lists/nope/subscribers")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("unknown_list")),
        "{v}"
    );
    let (_, v) = call(get("/api/lists")).await;
    let partners = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "partners")
        .unwrap();
    assert_eq!(
        (
            partners["active"].as_i64(),
            partners["unsubscribed"].as_i64()
        ),
        (Some(1), Some(1))
    );

    // Every change above, under the operator's name, filterable by action and object.
    let (_, v) = call(get("/api/audit?actor=otto&limit=100")).await;
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "list.create",
            "list.import",
            "subscriber.add",
            "subscriber.status",
            "list.create",
            "list.import",
            "subscriber.remove"
        ]
    );
    let (_, v) = call(get(
        "/api/audit?action=subscriber.remove&object=list:partners",
    ))
    .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["entries"][0]["before"]["email"], "ana@example.org");
    let (s, v) = call(get("/api/audit?since=yesterday")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{v}"
    );
}

#[tokio::test]
async fn records_by_toml_body_sent_back_and_approved_with_real_names() {
    let t = spawn_app(Options::default()).await;
    t.list_with("partners", &[("ana@example.org", None)]).await;
    let http = t.start_http().await;
    let ed = user_with_token(&t, "eda", "editor").await;
    let ap = user_with_token(&t, "abe", "approver").await;
    let op = user_with_token(&t, "otto", "operator").await;
    let a = http.admin.clone();
    let as_ = |tok: &str, p: &str| {
        http.client
            .post(format!("{a}{p}"))
            .bearer_auth(tok.to_string())
    };

    // A bad record: the CLI's errors, with the upload's name, line and field.
    let bad =
        small_record("up-1", "Uploaded").replace("held_on = 2026-02-27", "held_on = \"soon\"");
    let (s, v) = call(as_(&ed, "/api/records?name=session.toml").body(bad)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_record")),
        "{v}"
    );
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("session.toml:5") && m.contains("held_on"), "{m}");
    assert!(
        t.app.store.record("up-1").await.unwrap().is_none(),
        "nothing stored"
    );
    // Images cannot come in a TOML body: refused by line and field.
    let with_image = format!(
        "{}\n[[images]]\nfile = \"photo.png\"\nalt = \"x\"\n",
        small_record("up-2", "Img")
    );
    let (s, v) = call(as_(&ed, "/api/records").body(with_image)).await;
    assert_eq!(s, 422, "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("upload.toml:") && m.contains("images[1].file") && m.contains("bulletin import"),
        "{m}"
    );

    let (s, v) = call(as_(&ed, "/api/records").body(small_record("up-1", "Uploaded"))).await;
    assert_eq!((s, v["outcome"].as_str()), (201, Some("created")), "{v}");
    let (s, _) = call(as_(&ed, "/api/records").body(small_record("up-1", "Uploaded"))).await;
    assert_eq!(s, 200, "the same again: unchanged");

    // Sent back with a comment (kept), then approved: approved_by is the approver.
    let (s, v) =
        call(as_(&ap, "/api/records/up-1/send-back").json(&json!({"comment": "  "}))).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{v}"
    );
    let (s, v) =
        call(as_(&ap, "/api/records/up-1/send-back").json(&json!({"comment": "Wrong venue."})))
            .await;
    assert_eq!(
        (s, v["state"].as_str(), v["by"].as_str()),
        (200, Some("draft"), Some("abe")),
        "{v}"
    );
    let r = t.app.store.record("up-1").await.unwrap().unwrap();
    assert_eq!(
        (r.review_comment.as_deref(), r.reviewed_by.as_deref()),
        (Some("Wrong venue."), Some("abe"))
    );
    let (s, v) = call(as_(&ap, "/api/records/up-1/approve")).await;
    assert_eq!((s, v["by"].as_str()), (200, Some("abe")), "{v}");
    let (s, v) =
        call(as_(&ap, "/api/records/up-1/send-back").json(&json!({"comment": "One more thing."})))
            .await;
    assert_eq!((s, v["was"].as_str()), (200, Some("approved")), "{v}");
    assert_eq!(
        t.app
            .store
            .record("up-1")
            .await
            .unwrap()
            .unwrap()
            .approved_by,
        None
    );
    call(as_(&ap, "/api/records/up-1/approve")).await;

    // Schedules: listed with their next firing, fired by the operator.
    let (s, v) = call(
        http.client
            .get(format!("{a}/api/schedules"))
            .bearer_auth(&op),
    )
    .await;
    assert_eq!(
        (s, v[0]["name"].as_str()),
        (200, Some("weekday-morning")),
        "{v}"
    );
    assert!(v[0]["next_firing"].is_string(), "{v}");
    let (s, v) = call(as_(&op, "/api/schedules/weekday-morning/fire")).await;
    assert_eq!(
        (s, v["bulletins"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );
    let bulletin = v["bulletins"][0].as_i64().unwrap();
    let (s, v) = call(as_(&op, "/api/schedules/nope/fire")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("schedule_not_found")),
        "{v}"
    );
    // Sent by the operator: a notice's `by` is the operator, whatever the body says.
    let (s, v) = call(as_(&op, "/api/notices").json(&json!({
        "title": "Venue change", "body": "Room 4.", "lists": ["partners"], "by": "someone else"
    })))
    .await;
    assert_eq!(s, 201, "{v}");
    let notice = v["id"].as_i64().unwrap();
    call(as_(&op, &format!("/api/bulletins/{bulletin}/pause"))).await;

    // The audit log, newest first, each with the name of who did it.
    let (_, v) = call(
        http.client
            .get(format!("{a}/api/audit?limit=100"))
            .bearer_auth(&op),
    )
    .await;
    let seen: Vec<(String, String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| !e["action"].as_str().unwrap().starts_with("user."))
        .map(|e| {
            (
                e["actor"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["object"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("eda", "record.import", "record:up-1"),
        ("eda", "record.import", "record:up-1"),
        ("abe", "record.send_back", "record:up-1"),
        ("abe", "record.approve", "record:up-1"),
        ("abe", "record.send_back", "record:up-1"),
        ("abe", "record.approve", "record:up-1"),
        ("otto", "schedule.fire", "schedule:weekday-morning"),
        ("otto", "notice.send", &format!("bulletin:{notice}")),
        ("otto", "bulletin.pause", &format!("bulletin:{bulletin}")),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, want);
    let back = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "record.send_back")
        .unwrap();
    assert_eq!(back["after"]["comment"], "One more thing.");
    assert_eq!(back["before"]["state"], "approved");
}
