//! The WeChat channel against the fake WeChat server: the publish path, tokens, errcodes,
//! resuming after a restart, uploads remembered by hash, and article limits.

use crate::fake_wechat::{FakeWechat, Fault};
use crate::harness::*;
use bulletin::channel::Channel;
use bulletin::domain::ChannelKind;
use bulletin::store::{DeliveryFilter, DeliveryRow};

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];

fn options(fake: &FakeWechat, mode: &str) -> Options {
    Options {
        channels: r#"["wechat"]"#,
        wechat: Some(format!(
            r#"[wechat]
appid = "{appid}"
api_base = "{base}"
mode = "{mode}"
author = "澜湄环境合作中心新闻办公室"
cover_image = "{cover}"
poll_interval_seconds = 30
poll_timeout_minutes = 10
timeout_seconds = 5
"#,
            appid = crate::fake_wechat::APPID,
            base = fake.base(),
            cover = repo_path("config/examples/cover.png").display(),
        )),
        ..Default::default()
    }
}

async fn spawn_wechat(mode: &str) -> (TestApp, FakeWechat) {
    let fake = FakeWechat::start().await;
    let t = spawn_app(options(&fake, mode)).await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    (t, fake)
}

/// Imports and approves a record with one image (the same bytes every time).
async fn approved_with_image(t: &TestApp, id: &str, title: &str) {
    std::fs::write(t.dir.path().join("photo.png"), PNG).unwrap();
    let body = format!(
        "{}closing = \"See [the centre](http://www.mepfeco.org.cn).\"\n[[images]]\nfile = \"photo.png\"\nalt = \"Delegates\"\n",
        small_record(id, title)
    );
    let id = t
        .import(&t.write_record(&format!("{id}.toml"), &body))
        .await;
    t.app
        .store
        .approve_record(&id, "approver", t.clock_now())
        .await
        .unwrap();
}

async fn wechat_rows(t: &TestApp) -> Vec<DeliveryRow> {
    t.app
        .store
        .deliveries(&DeliveryFilter {
            channel: Some(ChannelKind::Wechat),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Runs due work, moving the clock 31 s at a time, until every WeChat row is final.
async fn run_to_end(t: &TestApp) -> Vec<DeliveryRow> {
    for _ in 0..30 {
        t.app.run_pending(None).await.unwrap();
        let rows = wechat_rows(t).await;
        if rows
            .iter()
            .all(|r| matches!(r.status.as_str(), "sent" | "failed"))
        {
            return rows;
        }
        t.clock.advance(chrono::Duration::seconds(31));
    }
    panic!(
        "WeChat deliveries never finished: {:?}",
        wechat_rows(t).await
    );
}

#[tokio::test]
async fn approved_record_becomes_a_published_article() {
    let (t, fake) = spawn_wechat("publish").await;
    fake.with(|s| s.publishing_polls = 2);
    approved_with_image(&t, "w1", "Green Economic Development Belt roundtable").await;
    t.app.fire_now("weekday-morning").await.unwrap();

    // First pass: token, uploads, draft, submit, first poll → still publishing.
    t.app.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        row.recipient,
        format!("account:{}", crate::fake_wechat::APPID)
    );
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("retrying", 0),
        "publishing is a wait, not a failure: {row:?}"
    );
    assert!(
        row.last_error.as_deref().unwrap().contains("publishing"),
        "{row:?}"
    );

    let rows = run_to_end(&t).await;
    let row = &rows[0];
    assert_eq!(row.status, "sent", "{row:?}");
    assert!(row.message_id.as_deref().unwrap().starts_with("ARTICLE_"));

    let job = t.app.store.wechat_job(row.id).await.unwrap().unwrap();
    assert!(job.draft_media_id.is_some() && job.publish_id.is_some());
    assert_eq!(job.publish_status, Some(0));
    assert!(job
        .article_url
        .as_deref()
        .unwrap()
        .starts_with("https://mp.weixin.qq.com/s/"));

    fake.with(|s| {
        assert_eq!(s.count("/cgi-bin/stable_token"), 1);
        assert_eq!(s.count("/cgi-bin/media/uploadimg"), 1);
        assert_eq!(s.count("/cgi-bin/material/add_material"), 1);
        assert_eq!(s.count("/cgi-bin/draft/add"), 1);
        assert_eq!(s.count("/cgi-bin/freepublish/submit"), 1);
        assert_eq!(s.count("/cgi-bin/freepublish/get"), 3);
        // The draft was removed on publish; what was uploaded is kept in our call log.
        assert!(s.drafts.is_empty());
    });
}

#[tokio::test]
async fn article_content_follows_wechat_rules() {
    let (t, fake) = spawn_wechat("draft").await;
    let title =
        "澜湄合作绿色经济发展带圆桌对话：生物多样性与可持续基础设施 การประชุมโต๊ะกลมแม่โขง-ล้านช้าง";
    approved_with_image(&t, "w2", title).await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let rows = run_to_end(&t).await;
    assert_eq!(rows[0].status, "sent", "{:?}", rows[0]);
    assert!(rows[0].last_error.is_none());
    let draft = fake.with(|s| s.drafts.values().next().cloned().unwrap());
    let sent_title = draft["title"].as_str().unwrap();
    // Cut within 32 characters at a boundary: after the CJK, not inside the Thai word.
    assert_eq!(
        sent_title,
        "澜湄合作绿色经济发展带圆桌对话：生物多样性与可持续基础设施…"
    );
    assert!(title.starts_with(sent_title.trim_end_matches('…')));
    assert!(draft["author"].as_str().unwrap().chars().count() <= 8);
    assert!(draft["digest"].as_str().unwrap().chars().count() <= 120);
    let content = draft["content"].as_str().unwrap();
    assert!(content.contains(title), "the full title stays in the body");
    assert!(
        content.contains("การประชุมโต๊ะกลมแม่โขง-ล้านช้าง"),
        "Thai intact"
    );
    assert!(
        content.contains("src=\"http://mmbiz.qpic.cn/"),
        "images point at WeChat's uploads"
    );
    assert!(
        !content.contains("cid:") && !content.contains("<style") && !content.contains("<script")
    );
    assert!(content.contains("style=\""), "inline styles only");
    assert!(
        !content.contains("href=\"http://www.mepfeco.org.cn"),
        "outside links become notes"
    );
    assert!(
        content.contains("the centre<sup") && content.contains("[1] http://www.mepfeco.org.cn")
    );
    assert!(
        content.contains("lancang-mekongec"),
        "the contact block is there"
    );
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_call_retried() {
    let (t, fake) = spawn_wechat("draft").await;
    approved_with_image(&t, "w3", "Token test").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].status, "sent");
    // The token is revoked before the second bulletin's first call (another process
    // fetched a new one, §2.1): 40001, one refresh, the call retried.
    fake.with(|s| s.revoke_next = true);
    approved_with_image(&t, "w3b", "Token test two").await;
    t.clock.advance(chrono::Duration::seconds(5));
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let rows = wechat_rows(&t).await;
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    assert_eq!(
        fake.with(|s| s.count("/cgi-bin/stable_token")),
        2,
        "one refresh after 40001"
    );
    assert_eq!(t.app.wechat.as_ref().unwrap().token_refreshes(), 2);
}

#[tokio::test]
async fn concurrent_sends_share_one_token_fetch() {
    let (t, fake) = spawn_wechat("draft").await;
    fake.with(|s| s.token_delay = std::time::Duration::from_millis(300));
    approved_with_image(&t, "c1", "First").await;
    approved_with_image(&t, "c2", "Second").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(wechat_rows(&t).await.len(), 2);
    t.app.run_pending(None).await.unwrap();
    assert!(wechat_rows(&t).await.iter().all(|r| r.status == "sent"));
    assert_eq!(
        fake.with(|s| s.count("/cgi-bin/stable_token")),
        1,
        "both waited for the same refresh"
    );
}

#[tokio::test]
async fn busy_and_quota_errors_are_retried_with_backoff() {
    let (t, fake) = spawn_wechat("draft").await;
    approved_with_image(&t, "b1", "Busy").await;
    fake.with(|s| {
        s.faults.push(Fault {
            path: "/cgi-bin/draft/add",
            errcode: Some(-1),
            errmsg: "system error",
            http_status: None,
            after_effect: false,
            times: 1,
        });
        s.faults.push(Fault {
            path: "/cgi-bin/draft/add",
            errcode: Some(45009),
            errmsg: "reach max api daily quota limit",
            http_status: None,
            after_effect: false,
            times: 1,
        });
        s.faults.push(Fault {
            path: "/cgi-bin/draft/add",
            errcode: None,
            errmsg: "",
            http_status: Some(503),
            after_effect: false,
            times: 1,
        });
    });
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.last_code),
        ("retrying", Some(-1)),
        "{row:?}"
    );
    t.clock.advance(chrono::Duration::seconds(61));
    t.app.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.last_code),
        ("retrying", Some(45009)),
        "{row:?}"
    );
    let wait = row.next_attempt_at.unwrap() - t.clock_now();
    assert!(
        wait >= chrono::Duration::minutes(59),
        "45009 waits about an hour, not {wait}"
    );
    t.clock.advance(chrono::Duration::hours(2));
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].last_code, Some(503));
    let rows = run_to_end(&t).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("sent", 4),
        "{:?}",
        rows[0]
    );
    assert_eq!(fake.with(|s| s.count("/cgi-bin/draft/add")), 4);
    let metrics = t.app.metrics.render(t.app.store.as_ref()).await.unwrap();
    for code in ["-1", "45009"] {
        assert!(
            metrics.contains(&format!(
                "bulletin_wechat_errcodes_total{{errcode=\"{code}\"}} 1"
            )),
            "{code}: {metrics}"
        );
    }
    assert!(
        metrics.contains("bulletin_wechat_token_refreshes_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ip_not_whitelisted_fails_at_once_saying_which_ip() {
    let (t, fake) = spawn_wechat("draft").await;
    approved_with_image(&t, "ip", "Whitelist").await;
    fake.with(|s| {
        s.faults.push(Fault {
            path: "/cgi-bin/stable_token",
            errcode: Some(40164),
            errmsg: "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist",
            http_status: None,
            after_effect: false,
            times: 1,
        })
    });
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.last_code, row.attempts),
        ("failed", Some(40164), 1),
        "{row:?}"
    );
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("add 203.0.113.7 to the account's API IP whitelist"),
        "{row:?}"
    );
}

#[tokio::test]
async fn a_failed_publish_fails_the_delivery_with_the_status() {
    let (t, fake) = spawn_wechat("publish").await;
    fake.with(|s| {
        s.publishing_polls = 1;
        s.final_status = 3;
    });
    approved_with_image(&t, "pf", "Will fail").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let rows = run_to_end(&t).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].last_code),
        ("failed", Some(3)),
        "{:?}",
        rows[0]
    );
    assert!(rows[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("publishing failed"));
}

#[tokio::test]
async fn unverified_account_gets_an_actionable_error() {
    let (t, fake) = spawn_wechat("publish").await;
    fake.with(|s| s.verified = false);
    approved_with_image(&t, "uv", "Unverified").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let rows = run_to_end(&t).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].last_code),
        ("failed", Some(48001))
    );
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("wechat.mode = \"draft\""),
        "{:?}",
        rows[0]
    );
}

#[tokio::test]
async fn a_restart_between_draft_and_publish_reuses_the_draft() {
    let (t, fake) = spawn_wechat("publish").await;
    approved_with_image(&t, "rs", "Restart").await;
    fake.with(|s| {
        s.faults.push(Fault {
            path: "/cgi-bin/freepublish/submit",
            errcode: None,
            errmsg: "",
            http_status: Some(503),
            after_effect: false,
            times: 1,
        })
    });
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].status, "retrying");

    // A new process on the same store: empty token cache, fresh channel.
    let again = build_app(t.dir.path(), &options(&fake, "publish"), &t.clock).await;
    t.clock.advance(chrono::Duration::seconds(61));
    again.run_pending(None).await.unwrap();
    let rows = wechat_rows(&t).await;
    assert_eq!(rows[0].status, "sent", "{:?}", rows[0]);
    fake.with(|s| {
        assert_eq!(s.count("/cgi-bin/draft/add"), 1, "no second draft");
        assert_eq!(
            s.count("/cgi-bin/material/add_material"),
            1,
            "the cover was not uploaded again"
        );
        assert_eq!(s.count("/cgi-bin/freepublish/submit"), 2);
    });
}

#[tokio::test]
async fn a_lost_mass_send_reply_never_sends_twice() {
    let (t, fake) = spawn_wechat("mass_send").await;
    approved_with_image(&t, "ms", "Mass").await;
    // WeChat takes the send but the reply is lost (HTTP 503 after the effect).
    fake.with(|s| {
        s.faults.push(Fault {
            path: "/cgi-bin/message/mass/sendall",
            errcode: None,
            errmsg: "",
            http_status: Some(503),
            after_effect: true,
            times: 1,
        })
    });
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].status, "retrying");
    let rows = run_to_end(&t).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].last_code),
        ("sent", Some(45065)),
        "{:?}",
        rows[0]
    );
    fake.with(|s| {
        assert_eq!(s.mass_sends.len(), 1, "one mass send");
        assert_eq!(s.count("/cgi-bin/message/mass/sendall"), 2);
        assert_eq!(
            rows[0].message_id.as_deref(),
            Some(s.mass_sends.values().next().unwrap().to_string().as_str())
        );
    });
}

#[tokio::test]
async fn images_are_uploaded_once_across_runs() {
    let (t, fake) = spawn_wechat("draft").await;
    approved_with_image(&t, "i1", "One").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    run_to_end(&t).await;
    approved_with_image(&t, "i2", "Two").await;
    t.clock.advance(chrono::Duration::seconds(5));
    t.app.fire_now("weekday-morning").await.unwrap();
    let rows = run_to_end(&t).await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.status == "sent"));
    fake.with(|s| {
        assert_eq!(s.count("/cgi-bin/draft/add"), 2);
        assert_eq!(
            s.count("/cgi-bin/media/uploadimg"),
            1,
            "same image bytes: uploaded once"
        );
        assert_eq!(
            s.count("/cgi-bin/material/add_material"),
            1,
            "same cover: uploaded once"
        );
    });
}

/// The binary, as an operator runs it with trace logs: the AppSecret and the access token
/// appear in no output, and `deliveries --channel wechat` shows the ids WeChat returned.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_tokens_stay_out_of_logs_and_the_ledger_shows_wechat_ids() {
    let fake = FakeWechat::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fake, "publish");
    o.smtp_port = free_port();
    let cfg = dir.path().join("bulletin.toml");
    std::fs::write(&cfg, config_text(&dir.path().join("bulletin.db"), &o)).unwrap();
    let rec = dir.path().join("r.toml");
    std::fs::write(&rec, small_record("bin", "Binary run")).unwrap();
    let run = move |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(&cfg)
            .args(["--log-format", "json"])
            .args(args)
            .env("BULLETIN_WECHAT_SECRET", crate::fake_wechat::SECRET)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {all}");
        all
    };
    let rec_arg = rec.display().to_string();
    let mut logs = String::new();
    for args in [
        vec!["lists", "create", "partners"],
        vec!["import", rec_arg.as_str()],
        vec!["approve", "bin", "--by", "tester"],
        vec!["schedule", "fire", "weekday-morning"],
        vec!["serve", "--once"],
    ] {
        logs.push_str(
            &tokio::task::spawn_blocking({
                let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                let run = run.clone();
                move || run(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap(),
        );
    }
    let ledger = tokio::task::spawn_blocking(move || run(&["deliveries", "--channel", "wechat"]))
        .await
        .unwrap();
    assert!(
        ledger.contains("sent")
            && ledger.contains("article_id ARTICLE_")
            && ledger.contains("url https://mp.weixin.qq.com/s/"),
        "{ledger}"
    );
    assert!(
        logs.contains("WeChat access token refreshed"),
        "trace logs were captured"
    );
    assert!(
        !logs.contains(crate::fake_wechat::SECRET),
        "the AppSecret leaked"
    );
    assert!(
        !logs.contains("FakeFakeFake"),
        "an access token leaked into the logs"
    );
}

#[tokio::test]
async fn an_urgent_notice_reaches_followers_as_one_text_mass_send_within_the_quota() {
    let (t, fake) = spawn_wechat("draft").await;
    let req = |title: &str| {
        bulletin::notice::NoticeRequest::parse(
            title,
            "The **venue** has changed.",
            "urgent",
            &["partners".into()],
            "ops",
            None,
        )
        .unwrap()
        .with_channels(&["email".into(), "wechat".into()])
        .unwrap()
    };
    assert_eq!(t.app.notices.wechat_quota().await.unwrap().used, 0);
    let out = t
        .app
        .notices
        .send(&req("Session moved to room 3"))
        .await
        .unwrap();
    t.app.run_pending(None).await.unwrap();
    let rows = wechat_rows(&t).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].bulletin_id, rows[0].status.as_str()),
        (out.id, "sent"),
        "{:?}",
        rows[0]
    );
    fake.with(|s| {
        assert_eq!(s.mass_texts.len(), 1);
        assert!(
            s.mass_texts[0].starts_with("Session moved to room 3\n\nThe venue has changed."),
            "{:?}",
            s.mass_texts
        );
        assert_eq!(
            s.count("/cgi-bin/draft/add"),
            0,
            "a notice is a text, not an article"
        );
    });

    // The account's daily mass send is used: the next WeChat notice is refused with the reason.
    assert_eq!(t.app.notices.wechat_quota().await.unwrap().used, 1);
    let e = t
        .app
        .notices
        .send(&req("Another change"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("mass-send quota is used up: 1 of 1"), "{e}");
    assert_eq!(
        t.app.store.bulletins(10).await.unwrap().len(),
        1,
        "nothing was queued"
    );
}

/// Several instances on one store share one access token: a second fetch would
/// invalidate the first after the grace window (reference §2.1).
#[tokio::test]
async fn instances_on_one_store_share_the_access_token() {
    let (t, fake) = spawn_wechat("draft").await;
    approved_with_image(&t, "s1", "First instance").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    assert_eq!(fake.with(|s| s.count("/cgi-bin/stable_token")), 1);

    let other = build_app(t.dir.path(), &options(&fake, "draft"), &t.clock).await;
    approved_with_image(&t, "s2", "Second instance").await;
    t.clock.advance(chrono::Duration::seconds(5));
    other.fire_now("weekday-morning").await.unwrap();
    other.run_pending(None).await.unwrap();
    assert!(wechat_rows(&t).await.iter().all(|r| r.status == "sent"));
    assert_eq!(
        fake.with(|s| s.count("/cgi-bin/stable_token")),
        1,
        "the second instance reused the shared token"
    );
    assert_eq!(other.wechat.as_ref().unwrap().token_refreshes(), 0);
}
