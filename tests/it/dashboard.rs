//! The dashboard: signing in (bearer header or login form → HttpOnly cookie) through real
//! HTTP, and the page as a real browser (headless Chromium) renders it: a bulletin's
//! progress and a failure with the server's answer. The screenshot is kept under target/.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A bulletin to two recipients: one refused by the server (550), one delivered.
async fn one_sent_one_failed() -> (TestApp, SmtpSink) {
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
    t.list_with(
        "partners",
        &[("gone@example.org", None), ("press@example.com", None)],
    )
    .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().failed, 2);
    drop(hard);
    let sink = SmtpSink::start_on(port, &[]);
    let press = t
        .app
        .store
        .deliveries(&bulletin::store::DeliveryFilter {
            recipient: Some("press@example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id;
    t.app
        .store
        .requeue(
            None,
            Some(press),
            &[bulletin::domain::DeliveryStatus::Failed],
            t.clock_now(),
        )
        .await
        .unwrap();
    assert_eq!(t.app.run_pending(None).await.unwrap().sent, 1);
    (t, sink)
}

#[tokio::test]
async fn dashboard_sign_in_by_header_or_cookie_only() {
    let (t, _sink) = one_sent_one_failed().await;
    let http = t.start_http().await;
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let dash = format!("{}/dashboard", http.admin);

    // Neither header nor cookie: sent to the login form. A token in the query is ignored.
    for url in [dash.clone(), format!("{dash}?token={ADMIN_TOKEN}")] {
        let r = no_redirects.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 303, "{url}");
        assert_eq!(r.headers()["location"], "/login");
    }
    // A wrong token at the login form: 401, no cookie.
    let r = no_redirects
        .post(format!("{}/login", http.admin))
        .form(&[("token", "not-the-token-at-all")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("not valid"));

    // The right one: an HttpOnly session cookie that is not the token.
    let r = no_redirects
        .post(format!("{}/login", http.admin))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.contains(ADMIN_TOKEN), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let page = no_redirects
        .get(&dash)
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("no such user"));
    // A tampered cookie is not a session.
    let r = no_redirects
        .get(&dash)
        .header("cookie", format!("{pair}0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // The bearer header works too, and the search finds a recipient's rows.
    let page = http
        .get("/dashboard?recipient=press@example.com&status=sent")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let search = &page[page.find("id=\"search\"").unwrap()..];
    assert!(search.contains("press@example.com"), "{search}");
    assert!(!search.contains("gone@example.org"), "{search}");
    let page = http
        .get("/dashboard?status=lost")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("unknown DeliveryStatus `lost`"), "{page}");
}

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: .ci/run and tests/run install Debian's `chromium` package \
         (apt-get install -y chromium)"
    );
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=10000",
        "--window-size=1280,1400",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    cmd.output().expect("run chromium")
}

#[tokio::test]
async fn a_real_browser_signs_in_and_sees_progress_and_failures() {
    let (t, _sink) = one_sent_one_failed().await;
    let http = t.start_http().await;
    // The browser signs in as a person would: the login form, posted (here by a page
    // that submits it on load, since headless Chromium has no keyboard).
    let dir = tempfile::tempdir().unwrap();
    let signin = dir.path().join("signin.html");
    std::fs::write(
        &signin,
        format!(
            r#"<!DOCTYPE html><form id="f" method="post" action="{}/login">
<input name="token" value="{ADMIN_TOKEN}"></form>
<script>document.getElementById("f").submit();</script>"#,
            http.admin
        ),
    )
    .unwrap();
    let url = format!("file://{}", signin.display());

    let admin = http.admin.clone();
    let dom_dir = dir.path().join("profile-dom");
    let url2 = url.clone();
    let out = tokio::task::spawn_blocking(move || chromium(&["--dump-dom", &url2], &dom_dir))
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("bulletin dashboard"),
        "not signed in to {admin}: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The bulletin's progress: one sent, one failed, none remaining.
    let row = &dom[dom.find("id=\"bulletin-1\"").expect("bulletin row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("1 sent"), "{row}");
    assert!(row.contains("1 failed"), "{row}");
    assert!(row.contains("0 remaining of 2"), "{row}");
    assert!(row.contains("width: 100%"), "{row}");
    // The failure, with the server's answer.
    let failures = &dom[dom.find("id=\"failures\"").unwrap()..];
    let failures = &failures[..failures.find("</section>").unwrap()];
    assert!(failures.contains("gone@example.org"), "{failures}");
    assert!(
        failures.contains("550") && failures.contains("no such user"),
        "{failures}"
    );
    assert!(!failures.contains("press@example.com"), "{failures}");
    // The schedule and its next firing.
    assert!(dom.contains("weekday-morning"));

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let shot_dir = dir.path().join("profile-shot");
    let arg = format!("--screenshot={}", shot.display());
    let out = tokio::task::spawn_blocking(move || chromium(&[&arg, &url], &shot_dir))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}): {}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 10_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}
