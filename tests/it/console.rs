//! The operator console (issue 17, pages): every form handler through real HTTP —
//! refused cross-site, refused without the session's CSRF token, and done with it — and
//! the daily flows in real headless Chromium driven over the DevTools pipe (`cdp.rs`):
//! sign in, upload and approve a record, send a notice and follow its progress, pause and
//! resume, upload a CSV. Screenshots of each page at 1280 and 420 px wide are kept under
//! target/, and no page scrolls sideways at 420 px.

use crate::cdp::Browser;
use crate::harness::*;
use std::path::PathBuf;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in browser, as plain HTTP: its session cookie, and the CSRF token its pages carry.
struct Session {
    admin: String,
    cookie: String,
    csrf: String,
    c: reqwest::Client,
}

impl Session {
    async fn sign_in(http: &Http) -> Session {
        let c = no_redirects();
        let r = c
            .post(format!("{}/login", http.admin))
            .form(&[("token", ADMIN_TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let mut s = Session {
            admin: http.admin.clone(),
            cookie,
            csrf: String::new(),
            c,
        };
        let page = s.page("/console/records").await;
        s.csrf = csrf_of(&page);
        s
    }

    async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        r.text().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.c
            .get(format!("{}{path}", self.admin))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A form POST from another site, with this session's cookie, as a browser sends it.
    fn post_cross_site(&self, path: &str) -> reqwest::RequestBuilder {
        self.c
            .post(format!("{}{path}", self.admin))
            .header("cookie", &self.cookie)
            .header("origin", "http://evil.example")
            .header("sec-fetch-site", "cross-site")
    }

    /// A same-origin form POST, as a browser sends it (Origin and Sec-Fetch-Site).
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.c
            .post(format!("{}{path}", self.admin))
            .header("cookie", &self.cookie)
            .header("origin", &self.admin)
            .header("sec-fetch-site", "same-origin")
    }
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// An app with a list of three, the seed record approved and fired: bulletin 1, queued.
async fn with_bulletin() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start();
    let t = spawn_app(Options {
        smtp_port: sink.port,
        ..Default::default()
    })
    .await;
    t.list_with(
        "partners",
        &[
            ("ana@example.org", None),
            ("bo@example.org", None),
            ("chen@partner.net", None),
        ],
    )
    .await;
    t.import_seed_approved().await;
    t.app.fire_now("weekday-morning").await.unwrap();
    (t, sink)
}

#[tokio::test]
async fn a_console_form_is_refused_cross_site_or_without_the_csrf_token() {
    let (t, _sink) = with_bulletin().await;
    let http = t.start_http().await;
    let s = Session::sign_in(&http).await;
    let state = || async { t.app.ops().bulletin(1).await.unwrap().state };
    assert_eq!(state().await, "sending");

    // Not signed in: a page sends the browser to the login form; a POST changes nothing.
    let r = no_redirects()
        .get(format!("{}/console/bulletins/1", http.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let r = no_redirects()
        .post(format!("{}/console/bulletins/1", http.admin))
        .form(&[("action", "pause"), ("csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(state().await, "sending");

    // A cross-site form POST that carries the cookie (and even the right token) is refused.
    let form = [("action", "pause"), ("csrf", s.csrf.as_str())];
    let r = s
        .post_cross_site("/console/bulletins/1")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("sent from another site"));
    let r =
        s.c.post(format!("{}/console/bulletins/1", http.admin))
            .header("cookie", &s.cookie)
            .header("origin", "http://evil.example")
            .form(&form)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(state().await, "sending");

    // Same origin without the token, or with another session's, is refused too.
    for csrf in ["", "0123456789abcdef"] {
        let r = s
            .post("/console/bulletins/1")
            .form(&[("action", "pause"), ("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "csrf {csrf:?}");
        assert!(r.text().await.unwrap().contains("security token"));
    }
    assert_eq!(state().await, "sending");

    // The confirmation page carries the action; its form, posted, pauses; then resumes.
    let confirm = s.page("/console/bulletins/1/confirm?action=pause").await;
    assert!(confirm.contains("Pause bulletin 1?"), "{confirm}");
    assert!(confirm.contains("name=\"action\" value=\"pause\""));
    let r = s
        .post("/console/bulletins/1")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/bulletins/1");
    assert_eq!(state().await, "paused");
    let page = s.page("/console/bulletins/1").await;
    assert!(page.contains("id=\"resume\"") && !page.contains("id=\"pause\""));
    let r = s
        .post("/console/bulletins/1")
        .form(&[("action", "resume"), ("csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(state().await, "sending");
}

#[tokio::test]
async fn the_bulletin_page_shows_progress_failures_and_a_searchable_paged_ledger() {
    let (t, _sink) = with_bulletin().await;
    let http = t.start_http().await;
    let s = Session::sign_in(&http).await;
    let page = s.page("/console/bulletins/1").await;
    assert!(page.contains("0 sent"), "{page}");
    assert!(page.contains("3 remaining, of 3"), "{page}");
    t.app.run_pending(None).await.unwrap();
    let page = s.page("/console/bulletins/1").await;
    assert!(page.contains("3 sent"), "{page}");
    assert!(page.contains("0 remaining, of 3"), "{page}");
    assert!(page.contains("style=\"width: 100%\""), "{page}");

    let ledger = |p: &str| {
        let l = &p[p.find("id=\"ledger\"").unwrap()..];
        l.to_string()
    };
    // A domain finds that domain only; a substring anywhere in the address.
    let l = ledger(&s.page("/console/bulletins/1?q=@example.org").await);
    assert!(
        l.contains("ana@example.org") && l.contains("bo@example.org"),
        "{l}"
    );
    assert!(!l.contains("chen@partner.net"), "{l}");
    let l = ledger(&s.page("/console/bulletins/1?q=HEN%40").await);
    assert!(l.contains("chen@partner.net") && !l.contains("ana@"), "{l}");
    // `%` and `_` are letters in a search, not wildcards.
    let l = ledger(&s.page("/console/bulletins/1?q=%25").await);
    assert!(l.contains("No row matches."), "{l}");
    let l = ledger(&s.page("/console/bulletins/1?status=lost").await);
    assert!(l.contains("unknown delivery status `lost`"), "{l}");
    assert!(l.contains("Page 1 of 1"), "{l}");
}

#[tokio::test]
async fn records_are_uploaded_refused_by_line_and_field_and_approved_by_the_signed_in_user() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    let s = Session::sign_in(&http).await;
    let upload = |name: &'static str, text: String, csrf: String| {
        let form = reqwest::multipart::Form::new().text("csrf", csrf).part(
            "file",
            reqwest::multipart::Part::bytes(text.into_bytes()).file_name(name),
        );
        s.post("/console/records/upload").multipart(form).send()
    };
    // A file with a mistake: the same message the CLI gives, with line and field.
    let bad =
        small_record("console-1", "First").replace("held_on = 2026-02-27", "held_on = \"soon\"");
    let r = upload("bad.toml", bad, s.csrf.clone()).await.unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("bad.toml:5") && body.contains("held_on"),
        "{body}"
    );
    assert!(t.app.ops().record("console-1").await.is_err());
    // Without the token: refused, nothing stored.
    let r = upload("a.toml", small_record("console-1", "First"), String::new())
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(t.app.ops().record("console-1").await.is_err());
    // A good file: a draft, listed first with its preview, then approved by the form.
    let r = upload("a.toml", small_record("console-1", "First"), s.csrf.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("record console-1: stored as a new draft"),
        "{page}"
    );
    t.import_seed_approved().await;
    let page = s.page("/console/records").await;
    let draft = page.find("id=\"record-console-1\"").unwrap();
    let approved = page.find("id=\"record-lmc-2020").unwrap();
    assert!(draft < approved, "drafts come first");
    assert!(page.contains("<iframe sandbox"), "{page}");
    assert!(page.contains("weekday-morning"), "{page}");
    let r = s
        .post("/console/records/console-1/approve")
        .form(&[("csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let rec = t.app.ops().record("console-1").await.unwrap();
    assert_eq!(rec.state.to_string(), "approved");
    assert_eq!(rec.approved_by.as_deref(), Some("admin-token"));
}

#[tokio::test]
async fn a_notice_is_previewed_confirmed_with_its_reach_sent_once_and_shown_plainly_when_repeated()
{
    let (t, _sink) = with_bulletin().await;
    let http = t.start_http().await;
    let s = Session::sign_in(&http).await;
    let fields = |step: &'static str| {
        vec![
            ("csrf", s.csrf.clone()),
            ("step", step.to_string()),
            ("title", "Venue change".to_string()),
            (
                "body",
                "Tomorrow's session moves to **Room 4**.".to_string(),
            ),
            ("severity", "urgent".to_string()),
            ("lists", "partners".to_string()),
        ]
    };
    let r = s
        .post("/console/notice")
        .form(&fields("preview"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("srcdoc=") && page.contains("Room 4"),
        "{page}"
    );
    let r = s
        .post("/console/notice")
        .form(&fields("confirm"))
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("<dd id=\"recipients\">3 active"), "{page}");
    assert!(page.contains("id=\"send-button\""));
    // A field the operation refuses: the form again, naming it.
    let mut bad = fields("confirm");
    bad[2].1 = String::new();
    let r = s.post("/console/notice").form(&bad).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("title"));

    let r = s
        .post("/console/notice")
        .form(&fields("send"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let first = r.headers()["location"].to_str().unwrap().to_string();
    assert!(first.ends_with("?notice=created"), "{first}");
    let r = s
        .post("/console/notice")
        .form(&fields("send"))
        .send()
        .await
        .unwrap();
    let again = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(again, first.replace("created", "repeat"));
    let page = s.page(&again).await;
    let id = first
        .trim_start_matches("/console/bulletins/")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    assert!(
        page.contains(&format!("already been sent as notice {id}")),
        "{page}"
    );
    // Cross-site, the send step is refused like any other.
    let r = s
        .post_cross_site("/console/notice")
        .form(&fields("send"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn subscribers_are_searched_added_marked_removed_imported_and_exported() {
    let t = spawn_app(Options::default()).await;
    t.list_with(
        "partners",
        &[("ana@example.org", None), ("chen@partner.net", None)],
    )
    .await;
    let http = t.start_http().await;
    let s = Session::sign_in(&http).await;
    let page = s.page("/console/lists/partners?q=@partner.net").await;
    let subs = &page[page.find("id=\"subscribers\"").unwrap()..];
    assert!(
        subs.contains("chen@partner.net") && !subs.contains("ana@example.org"),
        "{subs}"
    );

    let post = |pairs: Vec<(&'static str, &'static str)>| {
        let mut f: Vec<(&str, String)> = vec![("csrf", s.csrf.clone())];
        f.extend(pairs.into_iter().map(|(k, v)| (k, v.to_string())));
        s.post("/console/lists/partners").form(&f).send()
    };
    let r = post(vec![
        ("action", "add"),
        ("email", "dara@example.org"),
        ("name", "Dara"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("dara@example.org: added."));
    let r = post(vec![
        ("action", "status"),
        ("email", "dara@example.org"),
        ("status", "unsubscribed"),
    ])
    .await
    .unwrap();
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("dara@example.org: now unsubscribed."));
    let r = post(vec![("action", "add"), ("email", "not-an-address")])
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = post(vec![("action", "remove"), ("email", "ana@example.org")])
        .await
        .unwrap();
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("ana@example.org: removed."));
    let list = t.app.ops().list("partners").await.unwrap();
    assert_eq!((list.active, list.unsubscribed), (1, 1));

    // A CSV with one bad line: the rest imported, the line reported by number.
    let csv = "email,name\nlan@example.org,Lan\nnot an address,X\nminh@example.org,Minh\n";
    let form = reqwest::multipart::Form::new()
        .text("csrf", s.csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("people.csv"),
        );
    let r = s
        .post("/console/lists/partners/import")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("people.csv: 2 added, 0 updated, 0 unchanged, 1 refused."),
        "{page}"
    );
    assert!(page.contains("line 3:"), "{page}");

    let r = s.get("/console/lists/partners/export").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    assert!(
        csv.starts_with("email,name,language,status,status_changed_at\n"),
        "{csv}"
    );
    assert!(
        csv.contains("dara@example.org,Dara,,unsubscribed,"),
        "{csv}"
    );
    assert!(csv.contains("minh@example.org,Minh"), "{csv}");
    assert!(!csv.contains("ana@example.org"), "{csv}");
}

#[tokio::test]
async fn a_schedule_is_fired_from_its_confirmation_page() {
    let t = spawn_app(Options::default()).await;
    t.list_with("partners", &[("ana@example.org", None)]).await;
    t.import_seed_approved().await;
    let http = t.start_http().await;
    let s = Session::sign_in(&http).await;
    let page = s.page("/console/schedules").await;
    assert!(
        page.contains("weekday-morning") && page.contains("never"),
        "{page}"
    );
    let confirm = s.page("/console/schedules/weekday-morning/fire").await;
    assert!(confirm.contains("Fire schedule weekday-morning now?"));
    let r = s
        .post("/console/schedules/weekday-morning/fire")
        .form(&[("csrf", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(t.app.ops().bulletins(10).await.unwrap().is_empty());
    let r = s
        .post("/console/schedules/weekday-morning/fire")
        .form(&[("csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("weekday-morning fired: bulletin(s) 1 with 1 deliveries queued."),
        "{page}"
    );
}

/// Where the screenshots go: target/tmp/console/.
fn shots() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `f` (which drives the browser, blocking) off the runtime, so the app's servers
/// keep answering meanwhile.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Takes screenshots of `path` at 1280 and 420 px and checks that the narrow one does
/// not scroll sideways.
fn both_widths(b: &mut Browser, admin: &str, path: &str, name: &str) {
    for width in [1280, 420] {
        b.viewport(width, 900);
        b.goto(&format!("{admin}{path}"));
        let (scroll, inner) = b.widths();
        assert!(
            scroll <= inner,
            "{path} at {width} px scrolls sideways: {scroll} px of content in {inner} px"
        );
        b.screenshot(&shots().join(format!("{name}-{width}.png")));
    }
    b.viewport(1280, 900);
}

#[tokio::test]
async fn in_a_real_browser_an_operator_does_a_days_work_and_every_page_fits_420px() {
    let (t, _sink) = with_bulletin().await;
    let http = t.start_http().await;
    let dir = tempfile::tempdir().unwrap();
    let record = t.write_record("new.toml", &small_record("browser-1", "Browser session"));
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "email,name\nlan@example.org,Lan\nbroken,X\n").unwrap();
    let admin = http.admin.clone();
    let profile = dir.path().join("profile");

    // Named users: an administrator who does the day's work, a viewer who only looks.
    for (name, role) in [("lan", "admin"), ("vic", "viewer")] {
        let pw = secrecy::SecretString::from(PASSWORD.to_string());
        t.app
            .ops()
            .add_user(
                &bulletin::domain::Actor::bootstrap_admin(),
                bulletin::ops::users::AddUserInput {
                    name,
                    role,
                    password: &pw,
                },
            )
            .await
            .unwrap();
    }

    let (b, notice_url) = blocking(move || {
        let mut b = Browser::start(&profile);
        sign_in(&mut b, &admin, "lan");
        b.goto(&format!("{admin}/console"));
        let text = b.text();
        assert!(text.contains("lan (admin)"), "{text}");

        // Upload a record, see it first with its previews, approve it.
        b.choose_file("#upload input[type=file]", &record);
        b.click("#upload button[type=submit]");
        let text = b.text();
        assert!(
            text.contains("record browser-1: stored as a new draft"),
            "{text}"
        );
        // The previews are sandboxed srcdoc frames (Chromium isolates sandboxed frames
        // in processes of their own, so they are not in this page's frame tree).
        let frames = b.eval(
            "Array.from(document.querySelectorAll('#record-browser-1 iframe')).map(f => [f.hasAttribute('sandbox'), f.getAttribute('sandbox'), f.srcdoc.includes('Browser session')])",
        );
        assert_eq!(frames, serde_json::json!([[true, "", true]]), "the draft's e-mail preview");
        b.click("#approve-browser-1");
        let text = b.text();
        assert!(text.contains("approved by lan"), "{text}");

        // Pause and resume bulletin 1, each through its confirmation page.
        b.goto(&format!("{admin}/console/bulletins/1"));
        b.click("#pause");
        assert!(b.text().contains("Pause bulletin 1?"));
        b.click("#confirm-button");
        assert_eq!(
            b.eval("document.getElementById('state').textContent"),
            "paused"
        );
        b.click("#resume");
        b.click("#confirm-button");
        assert_eq!(
            b.eval("document.getElementById('state').textContent"),
            "sending"
        );

        // A notice: preview, confirm with its reach, send; then its own page.
        b.goto(&format!("{admin}/console/notice"));
        b.fill("#title", "Venue change");
        b.fill("#body", "Tomorrow's session moves to **Room 4**.");
        b.eval("document.querySelector('input[name=lists][value=partners]').checked = true");
        b.click("#preview-button");
        assert!(b.has("#preview iframe"));
        b.click("#next-button");
        let text = b.text();
        assert!(text.contains("3 active subscriber(s)"), "{text}");
        b.click("#send-button");
        let text = b.text();
        assert!(text.contains("is queued. Its progress is below."), "{text}");
        assert!(text.contains("3 remaining, of 3"), "{text}");
        let url = b.eval("location.pathname").as_str().unwrap().to_string();

        // A CSV upload with its per-line report.
        b.goto(&format!("{admin}/console/lists/partners"));
        b.choose_file("#import input[type=file]", &csv);
        b.click("#import button[type=submit]");
        let text = b.text();
        assert!(
            text.contains("people.csv: 1 added, 0 updated, 0 unchanged, 1 refused."),
            "{text}"
        );
        assert!(text.contains("line 3:"), "{text}");
        (b, url)
    })
    .await;

    // The daemon's work, then the notice's page shows it done.
    t.app.run_pending(None).await.unwrap();
    let admin = http.admin.clone();
    blocking(move || {
        let mut b = b;
        b.goto(&format!("{admin}{notice_url}"));
        let text = b.text();
        assert!(text.contains("3 sent"), "{text}");
        assert!(text.contains("0 remaining, of 3"), "{text}");
        for (path, name) in [
            ("/console/records", "records"),
            ("/console/bulletins", "bulletins"),
            (notice_url.as_str(), "bulletin"),
            ("/console/notice", "notice"),
            ("/console/lists", "lists"),
            ("/console/lists/partners", "list"),
            ("/console/schedules", "schedules"),
            ("/console/bulletins/1/confirm?action=retry", "confirm"),
        ] {
            both_widths(&mut b, &admin, path, name);
        }
        both_widths(&mut b, &admin, "/console/audit", "audit");
        // Every action of the day is in the audit log under the real name.
        b.goto(&format!("{admin}/console/audit?actor=lan"));
        let text = b.text();
        for action in ["record.import", "record.approve", "bulletin.pause", "bulletin.resume", "notice.send", "list.import"] {
            assert!(text.contains(action), "{action} not in the audit log: {text}");
        }

        // Signing out (a POST with the CSRF token) ends the session.
        b.click("#signed-in + form button");
        assert!(b.has("#login"), "not at the login form after signing out");
        b.goto(&format!("{admin}/console/records"));
        assert!(b.has("#login"), "the session outlived signing out");

        // A viewer sees every page but no action button, and the server refuses a forged one.
        sign_in(&mut b, &admin, "vic");
        for path in [
            "/console/records",
            notice_url.as_str(),
            "/console/lists/partners",
            "/console/schedules",
            "/console/notice",
        ] {
            b.goto(&format!("{admin}{path}"));
            let posts = b.eval("document.querySelectorAll('form[method=post]').length");
            assert_eq!(posts, 1, "{path}: a viewer sees only the sign-out form");
            let buttons = b.eval("Array.from(document.querySelectorAll('main button')).map(b => b.textContent)");
            let buttons = buttons.as_array().unwrap();
            assert!(
                buttons.iter().all(|t| t == "Search"),
                "{path}: a viewer sees action buttons {buttons:?}"
            );
        }
        b.goto(&format!("{admin}/console/records"));
        // A pause form the viewer builds by hand, with their own CSRF token: refused.
        b.eval(
            "(() => { const f = document.createElement('form'); f.id = 'forged'; f.method = 'post'; \
             f.action = '/console/bulletins/1'; \
             f.innerHTML = '<input name=action value=pause><input name=csrf><button>go</button>'; \
             f.elements.csrf.value = document.querySelector('input[name=csrf]').value; \
             document.body.append(f); return true; })()",
        );
        b.click("#forged button");
        let text = b.text();
        assert!(text.contains("vic (role viewer) may not operate."), "{text}");
        eprintln!("console screenshots: {}", shots().display());
    })
    .await;
}

const PASSWORD: &str = "correct horse battery staple";

/// Signs `name` in through the login form.
fn sign_in(b: &mut Browser, admin: &str, name: &str) {
    b.goto(&format!("{admin}/login"));
    b.fill("#login input[name=name]", name);
    b.fill("#login input[name=password]", PASSWORD);
    b.click("#login button[type=submit]");
    let text = b.text();
    assert!(!text.contains("Sign in"), "{name} not signed in: {text}");
}
