//! The WeChat channel against the fake WeChat server: the publish path, tokens, errcodes,
//! resuming after a restart, uploads remembered by hash, and article limits.

use crate::fake_wechat::{FakeWechat, Fault, Lost, LostReply};
use crate::harness::*;
use bulletin::channel::Channel;
use bulletin::domain::ChannelKind;
use bulletin::domain::DeliveryStatus;
use bulletin::store::{DeliveryFilter, DeliveryRow};

/// A 1x1 PNG.
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// A 1x1 GIF (WeChat takes no GIF inside an article, §3.1).
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

pub(crate) fn options(fake: &FakeWechat, mode: &str) -> Options {
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
            .all(|r| matches!(r.status.as_str(), "sent" | "failed" | "unconfirmed"))
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
    assert_eq!(row.status, DeliveryStatus::Sent, "{row:?}");
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
    assert_eq!(rows[0].status, DeliveryStatus::Sent, "{:?}", rows[0]);
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
    assert_eq!(wechat_rows(&t).await[0].status, DeliveryStatus::Sent);
    // The token is revoked before the second bulletin's first call (another process
    // fetched a new one, §2.1): 40001, one refresh, the call retried.
    fake.with(|s| s.revoke_next = true);
    approved_with_image(&t, "w3b", "Token test two").await;
    t.clock.advance(chrono::Duration::seconds(5));
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let rows = wechat_rows(&t).await;
    assert!(
        rows.iter().all(|r| r.status == DeliveryStatus::Sent),
        "{rows:?}"
    );
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
    assert!(wechat_rows(&t)
        .await
        .iter()
        .all(|r| r.status == DeliveryStatus::Sent));
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
    // 45009 waits for the daily reset (midnight China time: 16:00 UTC here), no attempt spent.
    assert_eq!(row.attempts, 1, "{row:?}");
    let wait = row.next_attempt_at.unwrap() - t.clock_now();
    assert!(
        wait >= chrono::Duration::hours(15),
        "45009 waits for the quota reset, not {wait}"
    );
    t.clock.advance(chrono::Duration::hours(17));
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].last_code, Some(503));
    let rows = run_to_end(&t).await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("sent", 3),
        "the quota wait spent no attempt: {:?}",
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
    // WeChat answers "busy" (-1): it did not take the submit (an answer, not a lost one).
    fake.with(|s| {
        s.faults.push(Fault {
            path: "/cgi-bin/freepublish/submit",
            errcode: Some(-1),
            errmsg: "system error",
            http_status: None,
            after_effect: false,
            times: 1,
        })
    });
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].status, DeliveryStatus::Retrying);

    // A new process on the same store: empty token cache, fresh channel.
    let again = build_app(t.dir.path(), &options(&fake, "publish"), &t.clock).await;
    t.clock.advance(chrono::Duration::seconds(61));
    again.run_pending(None).await.unwrap();
    let rows = wechat_rows(&t).await;
    assert_eq!(rows[0].status, DeliveryStatus::Sent, "{:?}", rows[0]);
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
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.ambiguous),
        ("retrying", true),
        "flagged: the send may have gone out: {row:?}"
    );
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
    assert!(rows.iter().all(|r| r.status == DeliveryStatus::Sent));
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
        vec!["store", "init"],
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
    // Who sent it: the daemon that claimed the row, `host:pid/generation`.
    let host = hostname::get().unwrap().into_string().unwrap();
    assert!(
        ledger.contains("claimed by") && ledger.contains(&format!("{host}:")),
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
    assert!(wechat_rows(&t)
        .await
        .iter()
        .all(|r| r.status == DeliveryStatus::Sent));
    assert_eq!(
        fake.with(|s| s.count("/cgi-bin/stable_token")),
        1,
        "the second instance reused the shared token"
    );
    assert_eq!(other.wechat.as_ref().unwrap().token_refreshes(), 0);
}

// ---- Lost answers: WeChat did the work, the reply never came back (issue 18, item 10) ----

const SUBMIT: &str = "/cgi-bin/freepublish/submit";

/// Options with a 1 s client timeout, so that a slow answer is lost quickly.
fn quick_timeout(fake: &FakeWechat, mode: &str) -> Options {
    let mut o = options(fake, mode);
    o.wechat = o
        .wechat
        .map(|w| w.replace("timeout_seconds = 5", "timeout_seconds = 1"));
    o
}

async fn spawn_quick(mode: &str) -> (TestApp, FakeWechat) {
    let fake = FakeWechat::start().await;
    let t = spawn_app(quick_timeout(&fake, mode)).await;
    t.list_with("partners", &[("a@example.org", None)]).await;
    (t, fake)
}

fn lose(fake: &FakeWechat, path: &'static str, how: Lost, times: u32) {
    fake.with(|s| s.lost_replies.push(LostReply { path, how, times }));
}

/// The submit is carried out but its answer is lost: the row waits (ambiguous, no
/// attempt spent), then finds the article and never submits twice.
async fn lost_submit_is_reconciled(how: Lost) {
    let (t, fake) = spawn_quick("publish").await;
    approved_with_image(&t, "ls", "Lost submit").await;
    lose(&fake, SUBMIT, how, 1);
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.attempts, row.ambiguous),
        ("retrying", 0, true),
        "a lost submit answer is a wait, flagged as possibly published: {row:?}"
    );
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("may be published"),
        "{row:?}"
    );
    let rows = run_to_end(&t).await;
    assert_eq!(rows[0].status, DeliveryStatus::Sent, "{:?}", rows[0]);
    assert!(rows[0]
        .message_id
        .as_deref()
        .unwrap()
        .starts_with("ARTICLE_"));
    fake.with(|s| {
        assert_eq!(s.count(SUBMIT), 1, "submitted once");
        assert_eq!(s.published_titles(), vec!["Lost submit".to_string()]);
        assert_eq!(s.count("/cgi-bin/draft/add"), 1);
    });
    let job = t.app.store.wechat_job(rows[0].id).await.unwrap().unwrap();
    assert_eq!((job.publish_status, job.step), (Some(0), None));
    assert!(job
        .article_url
        .unwrap()
        .starts_with("https://mp.weixin.qq.com/s/"));
}

#[tokio::test]
async fn a_submit_answered_after_the_timeout_is_published_once() {
    lost_submit_is_reconciled(Lost::Slow(std::time::Duration::from_secs(3))).await;
}

#[tokio::test]
async fn a_submit_whose_connection_dropped_is_published_once() {
    lost_submit_is_reconciled(Lost::Dropped).await;
}

/// The daemon stops while freepublish/submit is in flight (the future is dropped: no
/// outcome is recorded, as after kill -9). A new process finds "submit started" with no
/// publish_id while WeChat is still publishing: it waits, submits nothing, then resolves.
#[tokio::test]
async fn an_abandoned_submit_with_the_publish_in_progress_waits_then_resolves() {
    let (t, fake) = spawn_wechat("publish").await;
    fake.with(|s| s.publishing_polls = 1_000);
    approved_with_image(&t, "ab", "Abandoned submit").await;
    lose(
        &fake,
        SUBMIT,
        Lost::Slow(std::time::Duration::from_secs(30)),
        1,
    );
    t.app.fire_now("weekday-morning").await.unwrap();
    tokio::select! {
        r = t.app.run_pending(None) => panic!("the pass should still be waiting for submit: {r:?}"),
        _ = async {
            while fake.with(|s| s.count(SUBMIT)) == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        } => {}
    }
    let row = &wechat_rows(&t).await[0];
    assert_eq!(row.status, DeliveryStatus::Sending, "{row:?}");
    let job = t.app.store.wechat_job(row.id).await.unwrap().unwrap();
    assert_eq!(
        job.step.as_deref(),
        Some("submit"),
        "recorded before the call"
    );
    assert!(job.publish_id.is_none());

    // A new process on the same store, after the lease of the dead one expired.
    let again = build_app(t.dir.path(), &options(&fake, "publish"), &t.clock).await;
    t.clock.advance(chrono::Duration::seconds(1801));
    again.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.attempts, row.ambiguous),
        ("retrying", 0, true),
        "{row:?}"
    );
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("still in the draft box"),
        "{row:?}"
    );
    for _ in 0..3 {
        t.clock.advance(chrono::Duration::seconds(31));
        again.run_pending(None).await.unwrap();
    }
    assert_eq!(wechat_rows(&t).await[0].status, DeliveryStatus::Retrying);
    assert_eq!(fake.with(|s| s.count(SUBMIT)), 1, "no second submit");

    fake.with(|s| s.finish_publishing());
    t.clock.advance(chrono::Duration::seconds(31));
    again.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(row.status, DeliveryStatus::Sent, "{row:?}");
    fake.with(|s| {
        assert_eq!(s.count(SUBMIT), 1);
        assert_eq!(s.published_titles().len(), 1);
    });
}

/// An earlier bulletin with the same title and digest is already published: after a lost
/// submit answer, its article is not taken for ours (no other delivery's article is).
#[tokio::test]
async fn a_lost_submit_never_adopts_another_bulletins_article() {
    let (t, fake) = spawn_wechat("publish").await;
    // Two records whose articles have the same title and digest (the summary).
    let same = |id: &'static str| {
        let t = &t;
        async move {
            let body = small_record(id, "Same title")
                .replace(&format!("Summary of {id}."), "The same summary.");
            let id = t
                .import(&t.write_record(&format!("{id}.toml"), &body))
                .await;
            t.app
                .store
                .approve_record(&id, "approver", t.clock_now())
                .await
                .unwrap();
        }
    };
    same("e1").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let first = run_to_end(&t).await[0].clone();
    assert_eq!(first.status, DeliveryStatus::Sent);

    fake.with(|s| s.publishing_polls = 1_000);
    same("e2").await;
    lose(&fake, SUBMIT, Lost::Dropped, 1);
    t.clock.advance(chrono::Duration::seconds(5));
    t.app.fire_now("weekday-morning").await.unwrap();
    for _ in 0..3 {
        t.app.run_pending(None).await.unwrap();
        t.clock.advance(chrono::Duration::seconds(31));
    }
    let rows = wechat_rows(&t).await;
    let second = rows.iter().find(|r| r.id != first.id).unwrap();
    assert_eq!(second.status, DeliveryStatus::Retrying, "{second:?}");
    fake.with(|s| s.finish_publishing());
    let rows = run_to_end(&t).await;
    let second = rows.iter().find(|r| r.id != first.id).unwrap();
    assert_eq!(second.status, DeliveryStatus::Sent, "{second:?}");
    assert_ne!(second.message_id, first.message_id, "its own article");
    assert_eq!(fake.with(|s| s.count(SUBMIT)), 2, "one submit per bulletin");
}

/// After a lost submit answer the draft leaves the draft box (deleted by an editor here)
/// and no article appears: once the settle time is over the row fails, flagged, saying
/// to check the back office; an operator's retry then makes a new draft and submits it.
#[tokio::test]
async fn a_draft_gone_without_an_article_ends_unconfirmed_and_a_retry_starts_over() {
    let (t, fake) = spawn_wechat("publish").await;
    fake.with(|s| s.publishing_polls = 1_000);
    approved_with_image(&t, "dg", "Draft gone").await;
    lose(&fake, SUBMIT, Lost::Dropped, 1);
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    fake.with(|s| s.drafts.clear());
    t.clock.advance(chrono::Duration::seconds(31));
    t.app.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("retrying", 0),
        "{row:?}"
    );
    assert!(row
        .last_error
        .as_deref()
        .unwrap()
        .contains("left the draft box"));
    t.clock.advance(chrono::Duration::minutes(61));
    let rows = run_to_end(&t).await;
    // It may be published: `unconfirmed` ("may have been delivered"), never `failed`.
    assert_eq!(
        (rows[0].status.as_str(), rows[0].ambiguous),
        ("unconfirmed", true),
        "{:?}",
        rows[0]
    );
    assert!(rows[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("check the WeChat back office"));
    assert_eq!(fake.with(|s| s.count(SUBMIT)), 1);

    fake.with(|s| s.publishing_polls = 0);
    t.app
        .store
        .requeue(
            None,
            Some(rows[0].id),
            &[bulletin::domain::DeliveryStatus::Unconfirmed],
            t.clock_now(),
        )
        .await
        .unwrap();
    let rows = run_to_end(&t).await;
    assert_eq!(rows[0].status, DeliveryStatus::Sent, "{:?}", rows[0]);
    fake.with(|s| {
        assert_eq!(s.count("/cgi-bin/draft/add"), 2, "a new draft");
        assert_eq!(s.count(SUBMIT), 2);
        assert_eq!(s.published_titles().len(), 1);
    });
}

/// WeChat did not take the submit (a gateway's 503: it may have, so the row waits); once
/// the settle time has passed with the draft still there and no article, it is
/// submitted again, exactly once.
#[tokio::test]
async fn a_draft_still_there_after_the_settle_time_is_submitted_again_once() {
    let (t, fake) = spawn_wechat("publish").await;
    approved_with_image(&t, "st", "Settle").await;
    fake.with(|s| {
        s.faults.push(Fault {
            path: SUBMIT,
            errcode: None,
            errmsg: "",
            http_status: Some(503),
            after_effect: false,
            times: 1,
        })
    });
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.attempts, row.ambiguous),
        ("retrying", 0, true),
        "{row:?}"
    );
    // Within the settle time (60 minutes by default): checks, no submit.
    for _ in 0..10 {
        t.clock.advance(chrono::Duration::minutes(5));
        t.app.run_pending(None).await.unwrap();
    }
    assert_eq!(fake.with(|s| s.count(SUBMIT)), 1);
    assert_eq!(wechat_rows(&t).await[0].status, DeliveryStatus::Retrying);
    t.clock.advance(chrono::Duration::minutes(11));
    let rows = run_to_end(&t).await;
    assert_eq!(rows[0].status, DeliveryStatus::Sent, "{:?}", rows[0]);
    fake.with(|s| {
        assert_eq!(s.count(SUBMIT), 2, "submitted again exactly once");
        assert_eq!(s.published_titles().len(), 1);
    });
}

/// draft/add is carried out, its answer lost: the next attempt finds the draft in the
/// draft box instead of making a second one.
#[tokio::test]
async fn a_lost_draft_add_answer_leaves_one_draft() {
    let (t, fake) = spawn_quick("draft").await;
    approved_with_image(&t, "ld", "Lost draft").await;
    lose(&fake, "/cgi-bin/draft/add", Lost::Dropped, 1);
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].status, DeliveryStatus::Retrying);
    let rows = run_to_end(&t).await;
    assert_eq!(rows[0].status, DeliveryStatus::Sent, "{:?}", rows[0]);
    fake.with(|s| {
        assert_eq!(s.drafts.len(), 1, "one draft, no orphan");
        assert_eq!(s.count("/cgi-bin/draft/add"), 1);
        assert_eq!(
            rows[0].message_id.as_deref(),
            s.drafts.keys().next().map(String::as_str)
        );
    });
}

/// add_material is carried out, its answer lost: the next attempt finds the cover among
/// the permanent images instead of uploading it again.
#[tokio::test]
async fn a_lost_cover_upload_answer_uploads_it_once() {
    let (t, fake) = spawn_quick("draft").await;
    approved_with_image(&t, "lc", "Lost cover").await;
    lose(
        &fake,
        "/cgi-bin/material/add_material",
        Lost::Slow(std::time::Duration::from_secs(3)),
        1,
    );
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].status, DeliveryStatus::Retrying);
    let rows = run_to_end(&t).await;
    assert_eq!(rows[0].status, DeliveryStatus::Sent, "{:?}", rows[0]);
    fake.with(|s| {
        assert_eq!(
            s.count("/cgi-bin/material/add_material"),
            1,
            "uploaded once"
        );
        assert_eq!(s.material_list.len(), 1);
        let draft = s.drafts.values().next().unwrap();
        assert_eq!(draft["thumb_media_id"], s.material_list[0].0.as_str());
    });
}

/// Two bulletins with the same image, delivered at the same time: one upload of each kind.
#[tokio::test]
async fn concurrent_bulletins_with_the_same_cover_upload_it_once() {
    let (t, fake) = spawn_wechat("draft").await;
    fake.with(|s| s.token_delay = std::time::Duration::from_millis(200));
    approved_with_image(&t, "u1", "First").await;
    approved_with_image(&t, "u2", "Second").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(wechat_rows(&t).await.len(), 2);
    t.app.run_pending(None).await.unwrap();
    assert!(wechat_rows(&t)
        .await
        .iter()
        .all(|r| r.status == DeliveryStatus::Sent));
    fake.with(|s| {
        assert_eq!(
            s.count("/cgi-bin/material/add_material"),
            1,
            "one cover upload"
        );
        assert_eq!(
            s.count("/cgi-bin/media/uploadimg"),
            1,
            "one body image upload"
        );
        assert_eq!(s.count("/cgi-bin/draft/add"), 2);
    });
}

/// Four bulletins due at once: the channel never has more calls at WeChat than the
/// deliveries it declares (`Channel::concurrency`, each making its calls in turn).
#[tokio::test]
async fn the_channel_never_makes_more_calls_at_once_than_it_declares() {
    let (t, fake) = spawn_wechat("publish").await;
    fake.with(|s| s.token_delay = std::time::Duration::from_millis(100));
    for i in 0..4 {
        approved_with_image(&t, &format!("cc{i}"), &format!("Concurrent {i}")).await;
    }
    t.app.fire_now("weekday-morning").await.unwrap();
    let rows = run_to_end(&t).await;
    assert!(
        rows.iter().all(|r| r.status == DeliveryStatus::Sent),
        "{rows:?}"
    );
    let declared = t.app.wechat.as_ref().unwrap().concurrency() as u32;
    let seen = fake.with(|s| s.max_in_flight);
    assert!(
        seen >= 1 && seen <= declared,
        "{seen} calls at once, {declared} declared"
    );
}

// ---- Quota (item 11) ----

#[tokio::test]
async fn no_mass_send_quota_waits_for_the_reset_without_spending_attempts() {
    let (t, fake) = spawn_wechat("mass_send").await;
    approved_with_image(&t, "q1", "Quota").await;
    fake.with(|s| {
        s.faults.push(Fault {
            path: "/cgi-bin/message/mass/sendall",
            errcode: Some(45028),
            errmsg: "has no masssend quota",
            http_status: None,
            after_effect: false,
            times: 1,
        })
    });
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let row = &wechat_rows(&t).await[0];
    assert_eq!(
        (row.status.as_str(), row.attempts, row.last_code),
        ("retrying", 0, Some(45028)),
        "{row:?}"
    );
    // The clock is Monday 2026-03-02 00:00 UTC (08:00 in China): the quota resets at
    // midnight China time, 16:00 UTC.
    assert_eq!(
        row.next_attempt_at.unwrap(),
        chrono::DateTime::parse_from_rfc3339("2026-03-02T16:00:00Z").unwrap()
    );
    t.clock.advance(chrono::Duration::hours(16));
    let rows = run_to_end(&t).await;
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 1));
}

fn wechat_notice(title: &str, key: Option<&str>) -> bulletin::notice::NoticeRequest {
    bulletin::notice::NoticeRequest::parse(
        title,
        "The **venue** has changed.",
        "urgent",
        &["partners".into()],
        "ops",
        key,
    )
    .unwrap()
    .with_channels(&["email".into(), "wechat".into()])
    .unwrap()
}

/// The quota is reserved when a notice is queued: a second notice queued before the
/// first is sent is refused at once, with the reason; two at the same time, one passes.
#[tokio::test]
async fn back_to_back_notices_cannot_both_take_the_one_mass_send() {
    let (t, _fake) = spawn_wechat("draft").await;
    t.app
        .notices
        .send(&wechat_notice("Room change", None))
        .await
        .unwrap();
    assert_eq!(t.app.notices.wechat_quota().await.unwrap().used, 1);
    let e = t
        .app
        .notices
        .send(&wechat_notice("Second change", None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("channels: the WeChat mass-send quota is used up: 1 of 1"),
        "{e}"
    );
    assert_eq!(t.app.store.bulletins(10).await.unwrap().len(), 1);

    // Two at once, on a fresh store: exactly one is queued.
    let (t, _fake) = spawn_wechat("draft").await;
    let (one, two) = (wechat_notice("One", None), wechat_notice("Two", None));
    let (a, b) = tokio::join!(t.app.notices.send(&one), t.app.notices.send(&two));
    assert_eq!(
        usize::from(a.is_ok()) + usize::from(b.is_ok()),
        1,
        "{a:?} {b:?}"
    );
}

#[tokio::test]
async fn the_same_notice_key_returns_the_first_id_after_the_quota_is_used() {
    let (t, _fake) = spawn_wechat("draft").await;
    let first = t
        .app
        .notices
        .send(&wechat_notice("Keyed", Some("incident-7")))
        .await
        .unwrap();
    t.app.run_pending(None).await.unwrap();
    let again = t
        .app
        .notices
        .send(&wechat_notice("Keyed", Some("incident-7")))
        .await
        .unwrap();
    assert_eq!((again.id, again.created), (first.id, false));
}

// ---- Item 12 ----

/// WeChat refuses the token, then the refreshed one: one forced refresh, and the call
/// goes through; refused again soon after, the error says what happened, not "check the
/// AppSecret", and force mode is not used again within 30 s (§2.2).
#[tokio::test]
async fn a_second_40001_forces_one_refresh_and_reports_accurately() {
    let (t, fake) = spawn_wechat("draft").await;
    let fault = |times| Fault {
        path: "/cgi-bin/draft/add",
        errcode: Some(40001),
        errmsg: "invalid credential, access_token is invalid or not latest",
        http_status: None,
        after_effect: false,
        times,
    };
    fake.with(|s| s.faults.push(fault(2)));
    approved_with_image(&t, "t1", "Token one").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    assert_eq!(wechat_rows(&t).await[0].status, DeliveryStatus::Sent);
    assert_eq!(fake.with(|s| s.force_refreshes), 1, "one forced refresh");

    // Refused twice again within 30 s of the forced refresh: no second one, an accurate error.
    fake.with(|s| s.faults.push(fault(2)));
    approved_with_image(&t, "t2", "Token two").await;
    t.clock.advance(chrono::Duration::seconds(5));
    t.app.fire_now("weekday-morning").await.unwrap();
    t.app.run_pending(None).await.unwrap();
    let rows = wechat_rows(&t).await;
    let row = rows
        .iter()
        .find(|r| r.status != DeliveryStatus::Sent)
        .unwrap();
    let e = row.last_error.as_deref().unwrap();
    assert_eq!(row.status, DeliveryStatus::Retrying, "{row:?}");
    assert!(
        e.contains("keeps refusing fresh access tokens") && !e.contains("check the AppSecret"),
        "{e}"
    );
    assert_eq!(
        fake.with(|s| s.force_refreshes),
        1,
        "forced refreshes are rationed: not twice within 30 s (§2.2)"
    );

    // A new process (no forced refresh yet) refused three times: refresh, forced refresh,
    // and the forced token refused too: the same accurate error.
    let again = build_app(t.dir.path(), &options(&fake, "draft"), &t.clock).await;
    fake.with(|s| s.faults.push(fault(3)));
    t.clock.advance(chrono::Duration::minutes(5));
    again.run_pending(None).await.unwrap();
    assert_eq!(fake.with(|s| s.force_refreshes), 2);
    let rows = wechat_rows(&t).await;
    let row = rows
        .iter()
        .find(|r| r.status != DeliveryStatus::Sent)
        .unwrap();
    assert_eq!(
        (row.status.as_str(), row.last_code),
        ("retrying", Some(40001)),
        "{row:?}"
    );
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("keeps refusing fresh access tokens"),
        "{row:?}"
    );
    assert_eq!(
        fake.with(|s| s.faults.iter().map(|f| f.times).sum::<u32>()),
        0
    );
}

/// `bulletin retry` of a failed publish submits the draft again, not just re-polls.
#[tokio::test]
async fn an_operator_retry_of_a_failed_publish_submits_again() {
    let (t, fake) = spawn_wechat("publish").await;
    fake.with(|s| s.final_status = 3);
    approved_with_image(&t, "rp", "Retry publish").await;
    t.app.fire_now("weekday-morning").await.unwrap();
    let rows = run_to_end(&t).await;
    assert_eq!(rows[0].status, DeliveryStatus::Failed);
    fake.with(|s| s.final_status = 0);
    let n = t
        .app
        .store
        .requeue(
            Some(rows[0].bulletin_id),
            None,
            &[bulletin::domain::DeliveryStatus::Failed],
            t.clock_now(),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let rows = run_to_end(&t).await;
    assert_eq!(rows[0].status, DeliveryStatus::Sent, "{:?}", rows[0]);
    fake.with(|s| {
        assert_eq!(s.count(SUBMIT), 2, "submitted again");
        assert_eq!(
            s.count("/cgi-bin/draft/add"),
            1,
            "the draft was still there"
        );
        assert_eq!(s.published_titles().len(), 1);
    });
}

/// Images WeChat would refuse are refused at import, naming the file and the field.
#[tokio::test]
async fn images_wechat_refuses_are_refused_at_import() {
    let (t, _fake) = spawn_wechat("draft").await;
    let try_import = |name: &str, bytes: Vec<u8>| {
        std::fs::write(t.dir.path().join(name), bytes).unwrap();
        let body = format!(
            "{}[[images]]\nfile = \"{name}\"\nalt = \"Delegates\"\n",
            small_record("img", "Images")
        );
        t.write_record("img.toml", &body)
    };
    let e = t
        .app
        .import_record_file(&try_import("anim.gif", GIF.to_vec()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("images[1].file") && e.contains("anim.gif") && e.contains("image/gif"),
        "{e}"
    );
    // Exactly 1 MiB: uploadimg takes under 1 MB (§3.1).
    let mut big = PNG.to_vec();
    big.resize(1_048_576, 0);
    let e = t
        .app
        .import_record_file(&try_import("big.png", big.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("images[1].file") && e.contains("big.png") && e.contains("1048576 bytes"),
        "{e}"
    );
    big.truncate(1_048_575);
    t.app
        .import_record_file(&try_import("ok.png", big))
        .await
        .expect("one byte under 1 MiB is taken");
}

/// A record imported before WeChat was set up is refused when approved (admin API and
/// CLI share the check), naming the image, instead of failing at send time.
#[tokio::test]
async fn a_record_imported_before_wechat_was_set_up_is_refused_at_approval() {
    let t = spawn_app(Options::default()).await;
    std::fs::write(t.dir.path().join("anim.gif"), GIF).unwrap();
    let body = format!(
        "{}[[images]]\nfile = \"anim.gif\"\nalt = \"Delegates\"\n",
        small_record("early", "Imported early")
    );
    let id = t.import(&t.write_record("early.toml", &body)).await;

    let fake = FakeWechat::start().await;
    let with_wechat = TestApp {
        app: build_app(t.dir.path(), &options(&fake, "draft"), &t.clock).await,
        clock: t.clock.clone(),
        dir: t.dir,
    };
    let http = with_wechat.start_http().await;
    let resp = http
        .post(&format!("/api/records/{id}/approve"))
        .json(&serde_json::json!({"by": "editor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("images[1].file") && text.contains("anim.gif") && text.contains("image/gif"),
        "{text}"
    );
    let rec = with_wechat.app.store.record(&id).await.unwrap().unwrap();
    assert!(rec.approved_by.is_none(), "not approved");
}
