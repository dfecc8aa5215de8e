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
    assert!(page.contains("unknown delivery status `lost`"), "{page}");
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
    // The delivered message comes back later as a soft bounce (a DSN naming its
    // Message-ID: the mailbox full, given up), through the ingest path; the row stays
    // `sent`, so the progress below is unchanged.
    let press = t
        .app
        .store
        .deliveries(&bulletin::store::DeliveryFilter {
            recipient: Some("press@example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .clone();
    let dsn = crate::imap_mailbox::dsn(&press.message_id.clone().unwrap(), "press@example.com")
        .replace("5.1.1", "4.2.2")
        .replace("550", "452")
        .replace("no such user", "mailbox full");
    let bounce = t
        .app
        .ops()
        .ingest_bounce(dsn.as_bytes(), bulletin::store::BounceSource::Ingest, None)
        .await
        .unwrap()
        .recorded;
    assert_eq!(bounce.delivery_id, Some(press.id));
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
    // The session cookie is SameSite=Strict: the redirect that ends a sign-in posted from
    // another site (this file) does not carry it. The browser keeps it, and opening the
    // dashboard itself, as a person does next, does.
    let (profile, signin_url) = (dom_dir.clone(), url.clone());
    tokio::task::spawn_blocking(move || chromium(&["--dump-dom", &signin_url], &profile))
        .await
        .unwrap();
    let url = format!("{}/dashboard", http.admin);
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
    // The bounce: time, kind, recipient, code, diagnostic, the bulletin it matched, and
    // a link to the raw message.
    let bounces = &dom[dom.find("id=\"bounces\"").expect("a bounces section")..];
    let bounces = &bounces[..bounces.find("</section>").unwrap()];
    let b = &bounces[bounces
        .find(&format!("id=\"bounce-{}\"", bounce.id))
        .unwrap_or_else(|| panic!("bounce {} not shown: {bounces}", bounce.id))..];
    let b = &b[..b.find("</tr>").unwrap()];
    for want in [
        "2026-03-02",
        ">soft<",
        "press@example.com",
        "4.2.2",
        "mailbox full",
        &format!("(delivery {})", press.id),
        &format!("href=\"/dashboard/bounces/{}/raw\"", bounce.id),
    ] {
        assert!(b.contains(want), "{want} not in {b}");
    }
    assert!(
        !bounces.contains("<form"),
        "the bounces section is read-only"
    );
    // The raw message, as text; the filter by kind.
    let raw = http
        .get(&format!("/dashboard/bounces/{}/raw", bounce.id))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(
        raw.headers()["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(raw.bytes().await.unwrap(), dsn.as_bytes());
    let page = |q: &'static str| {
        let r = http.get(&format!("/dashboard?bounce_kind={q}"));
        async move { r.send().await.unwrap().text().await.unwrap() }
    };
    let only_hard = page("hard").await;
    assert!(only_hard.contains("No bounce received."), "{only_hard}");
    assert!(page("soft")
        .await
        .contains(&format!("id=\"bounce-{}\"", bounce.id)));
    let no_cookie = no_redirects()
        .get(format!(
            "{}/dashboard/bounces/{}/raw",
            http.admin, bounce.id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(no_cookie.status(), 303, "signed in only");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let shot_dir = dir.path().join("profile-dom");
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

/// A test app whose `[admin]` table has `lines` (e.g. `public_url`).
async fn spawn_with_admin(lines: &str) -> TestApp {
    use bulletin::clock::ManualClock;
    use chrono::TimeZone;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap());
    let text = format!(
        "{}\n[admin]\n{lines}\n",
        config_text(&dir.path().join("bulletin.db"), &Options::default())
    );
    let env = |n: &str| (n == "BULLETIN_ADMIN_TOKEN").then(|| ADMIN_TOKEN.to_string());
    let config = bulletin::config::Config::parse(&text, Path::new("test.toml"), &env).unwrap();
    let app = bulletin::app::App::build_with_clock(config, std::sync::Arc::new(clock.clone()))
        .await
        .unwrap();
    TestApp { app, clock, dir }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The headers every HTML page must carry (issue 18, item 9).
fn assert_security_headers(what: &str, r: &reqwest::Response) {
    let h = r.headers();
    let get = |n: &str| {
        h.get(n)
            .unwrap_or_else(|| panic!("{what}: no {n} header"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    let csp = get("content-security-policy");
    for part in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "style-src 'unsafe-inline'",
    ] {
        assert!(csp.contains(part), "{what}: CSP `{csp}` lacks {part}");
    }
    assert!(!csp.contains("script-src"), "{what}: no script may run");
}

#[tokio::test]
async fn every_html_page_carries_the_security_headers() {
    let t = spawn_app(Options::default()).await;
    let list_id = t.list_with("partners", &[("ana@example.org", None)]).await;
    let record = t.import_seed_approved().await;
    let sub = t.app.store.subscribers_page(list_id, 0, 10).await.unwrap()[0].id;
    let token = t.app.signer.token(list_id, sub, "ana@example.org");
    let http = t.start_http().await;
    let c = no_redirects();
    let admin = &http.admin;
    let public = &http.public;

    let mut pages: Vec<(String, reqwest::Response)> = Vec::new();
    pages.push((
        "login page".into(),
        c.get(format!("{admin}/login")).send().await.unwrap(),
    ));
    pages.push((
        "login refused".into(),
        c.post(format!("{admin}/login"))
            .form(&[("token", "wrong-token-wrong-token")])
            .send()
            .await
            .unwrap(),
    ));
    pages.push((
        "dashboard".into(),
        http.get("/dashboard").send().await.unwrap(),
    ));
    pages.push((
        "dashboard redirect".into(),
        c.get(format!("{admin}/dashboard")).send().await.unwrap(),
    ));
    pages.push((
        "preview".into(),
        http.get(&format!("/api/records/{record}/preview"))
            .send()
            .await
            .unwrap(),
    ));
    pages.push((
        "API JSON".into(),
        http.get("/api/records").send().await.unwrap(),
    ));
    pages.push((
        "unsubscribe confirmation".into(),
        c.get(format!("{public}/unsubscribe/{token}"))
            .send()
            .await
            .unwrap(),
    ));
    pages.push((
        "unsubscribe invalid".into(),
        c.get(format!("{public}/unsubscribe/forged.1.2"))
            .send()
            .await
            .unwrap(),
    ));
    pages.push((
        "unsubscribe done".into(),
        c.post(format!("{public}/unsubscribe/{token}"))
            .form(&[("List-Unsubscribe", "One-Click")])
            .send()
            .await
            .unwrap(),
    ));
    let expected = [
        ("login page", 200),
        ("login refused", 401),
        ("dashboard", 200),
        ("dashboard redirect", 303),
        ("preview", 200),
        ("API JSON", 200),
        ("unsubscribe confirmation", 200),
        ("unsubscribe invalid", 400),
        ("unsubscribe done", 200),
    ];
    for ((what, r), (want, status)) in pages.iter().zip(expected) {
        assert_eq!(what, want);
        assert_eq!(r.status(), status, "{what}");
        assert_security_headers(what, r);
    }
}

/// The session cookie of a sign-in, and of a sign-out.
async fn session_cookies(t: &TestApp) -> (String, String) {
    let http = t.start_http().await;
    let c = no_redirects();
    let r = c
        .post(format!("{}/login", http.admin))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let login = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let r = c
        .post(format!("{}/logout", http.admin))
        .send()
        .await
        .unwrap();
    let logout = r.headers()["set-cookie"].to_str().unwrap().to_string();
    (login, logout)
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_the_admin_url_is_https() {
    let https = spawn_with_admin("public_url = \"https://admin.example.org/\"").await;
    let (login, logout) = session_cookies(&https).await;
    for c in [&login, &logout] {
        assert!(c.split("; ").any(|a| a == "Secure"), "{c}");
        assert!(c.contains("HttpOnly"), "{c}");
    }
    let http = spawn_with_admin("public_url = \"http://127.0.0.1:8080\"").await;
    let plain = spawn_app(Options::default()).await;
    for t in [&http, &plain] {
        let (login, logout) = session_cookies(t).await;
        for c in [&login, &logout] {
            assert!(!c.contains("Secure"), "{c}");
            assert!(c.contains("HttpOnly"), "{c}");
        }
    }
    // Anything but an http(s) URL is refused, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[admin]\npublic_url = \"admin.example.org\"\n",
        config_text(&dir.path().join("bulletin.db"), &Options::default())
    );
    let e = bulletin::config::Config::parse(&text, Path::new("test.toml"), &|_: &str| None)
        .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("admin.public_url"), "{e}");
}

#[tokio::test]
async fn failed_sign_ins_back_off_per_address() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    let c = no_redirects();
    let other = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let login = format!("{}/login", http.admin);
    let attempt = |client: &reqwest::Client, token: &str| {
        client
            .post(&login)
            .form(&[("token", token.to_string())])
            .send()
    };
    // The free failures: 401 each.
    for i in 0..bulletin::http::FREE_FAILURES {
        let r = attempt(&c, "wrong-token-wrong-token").await.unwrap();
        assert_eq!(r.status(), 401, "failure {}", i + 1);
    }
    // One more locks the address out; then even the right token gets 429 + Retry-After,
    // on the form and on the API alike.
    assert_eq!(
        attempt(&c, "wrong-token-wrong-token")
            .await
            .unwrap()
            .status(),
        401
    );
    let r = attempt(&c, ADMIN_TOKEN).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
    let r = http.get("/api/records").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let r = c
        .get(format!("{}/dashboard", http.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "a bearer header on the dashboard is checked too"
    );
    // Another address is not affected.
    assert_eq!(attempt(&other, ADMIN_TOKEN).await.unwrap().status(), 303);
    // Once the lock-out has passed the right token works and clears the count.
    t.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(attempt(&c, ADMIN_TOKEN).await.unwrap().status(), 303);
    for _ in 0..bulletin::http::FREE_FAILURES {
        assert_eq!(
            attempt(&c, "wrong-token-wrong-token")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    // Wrong bearer tokens count too (API and dashboard), and the lock-out grows.
    let r = http
        .client
        .get(format!("{}/api/records", http.admin))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    t.clock.advance(chrono::Duration::seconds(2));
    let r = c
        .get(format!("{}/dashboard", http.admin))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    t.clock.advance(chrono::Duration::seconds(4));
    assert_eq!(
        attempt(&c, "wrong-token-wrong-token")
            .await
            .unwrap()
            .status(),
        401
    );
    let r = attempt(&c, ADMIN_TOKEN).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "8");
}
